package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/tasker-systems/tasker/queue"
	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

// rescue settles the attempts of steps whose worker stopped renewing the lease (it crashed, was
// killed, or lost the database): each counts as a failed attempt, recorded with the vanished
// worker's ID, and is retried under the step's policy or fails for good when none is left.
func (w *workers) rescue(ctx context.Context) {
	e := w.e
	expired, err := e.store.ExpiredSteps(ctx, store.ExpiredStepsParams{Limit: 100})
	if err != nil {
		if ctx.Err() == nil {
			e.log.Error(err, "look for expired leases")
		}
		return
	}
	for i := range expired {
		ex := &expired[i]
		st := &ex.Step
		msg := fmt.Sprintf("worker %s stopped renewing its lease (crashed, killed or cut off)", st.LeaseOwner)
		p := Classify(st, Called{Return: Return{Err: errors.New(msg), Class: ClassRetryable}}, nil, e.cfg.MaxPayloadBytes)
		if p.Kind == store.OutcomePermanent || p.Kind == store.OutcomeRetry {
			var se Failure
			_ = json.Unmarshal(p.Error, &se)
			se.Kind = "lease_expired"
			p.Error, _ = json.Marshal(se)
		}
		p.TaskID, p.StepID, p.WorkerID, p.Attempt, p.Namespace = st.TaskID, st.ID, st.LeaseOwner, st.Attempts, ex.Namespace
		enq := e.NewEnqueuer()
		p.Enqueuer, p.LeaseExpired = enq, true
		res, err := e.store.RecordOutcome(ctx, p)
		if err == nil {
			enq.Flush(ctx)
		}
		if err != nil {
			if !errors.Is(err, store.ErrConflict) && ctx.Err() == nil {
				e.log.Error(err, "rescue step", "step", st.Name, "task", st.TaskID)
			}
			continue
		}
		e.log.Info("rescued step whose lease expired", "task", st.TaskID, "step", st.Name, "attempt", st.Attempts,
			"worker", st.LeaseOwner, "outcome", map[store.OutcomeKind]string{store.OutcomeRetry: "retry", store.OutcomePermanent: "error"}[p.Kind])
		if p.Kind == store.OutcomeRetry {
			w.wakeAfter(ex.Namespace, p.RetryDelay)
		}
		if res.Settled {
			e.waiters.Notify(st.TaskID)
		}
	}
}

// sweep publishes again the messages of steps that waited enqueued for longer than
// Config.RepublishAfter: with a queue outside the database, a message can be lost between a
// commit and its publish (a crash, a broker outage). A duplicate is dropped at its claim. With a
// queue.ReadyCounter it holds back a namespace whose queue has messages waiting: the steps behind a
// backlog have their messages in it, and re-publishing them every RepublishAfter would only grow it.
func (w *workers) sweep(ctx context.Context) {
	e := w.e
	pub, ok := e.queue.(queue.Publisher)
	if !ok {
		return
	}
	stale, err := e.store.StaleSteps(ctx, store.StaleStepsParams{OlderThan: e.cfg.RepublishAfter, Limit: 500})
	if err != nil {
		if ctx.Err() == nil {
			e.log.Error(err, "look for stale steps")
		}
		return
	}
	// One publish per namespace; a namespace whose queue has a backlog is held back (see
	// queue.ReadyCounter): its steps come up again after another RepublishAfter.
	var order []string
	byNS := map[string][]store.StepRef{}
	for _, st := range stale {
		if _, ok := byNS[st.Namespace]; !ok {
			order = append(order, st.Namespace)
		}
		byNS[st.Namespace] = append(byNS[st.Namespace], st.Ref)
	}
	rc, counts := e.queue.(queue.ReadyCounter)
	for _, ns := range order {
		refs := byNS[ns]
		if counts {
			n, err := rc.ReadyCount(ctx, ns)
			if err == nil && n > 0 && w.holdBack(ns, n) {
				e.log.V(1).Info("holding back re-publishing while the queue has a backlog", "namespace", ns, "ready", n, "steps", len(refs))
				continue
			}
			if err != nil && ctx.Err() == nil {
				e.log.Error(err, "count the messages ready in the queue; re-publishing anyway", "namespace", ns)
			}
		}
		w.heldMu.Lock()
		delete(w.holds, ns)
		w.heldMu.Unlock()
		payloads, err := e.stepPayloads(ns, refs)
		if err == nil {
			err = pub.Publish(ctx, ns, payloads, 0)
		}
		if err != nil {
			if ctx.Err() == nil {
				e.log.Error(err, "re-publish step messages", "namespace", ns, "steps", len(refs))
			}
			continue
		}
		for _, ref := range refs {
			e.log.Info("re-published the message of a step that waited too long", "step", ref.StepID, "task", ref.TaskID)
		}
	}
}

// listenStartWait bounds how long RunWorkers waits for the store's announcements before it starts
// handlers.
const listenStartWait = 2 * time.Second

// hold is the sweeper's hold-back of one namespace: since when, and when it last found a backlog.
type hold struct{ since, seen time.Time }

// maxHoldBack bounds, in RepublishAfter periods, how long the sweeper holds back a namespace whose
// queue always has a backlog (a queue saturated for good), so that a lost message still goes out.
const maxHoldBack = 10

// holdBack reports whether the sweeper may hold back ns's re-publishing for its backlog: it may,
// unless it has done so for maxHoldBack RepublishAfter periods in a row.
//
// A hold not renewed for two RepublishAfter periods (the backlog drained, or no step went stale
// since) is over: the next backlog starts a new one.
func (w *workers) holdBack(ns string, ready int) bool {
	w.heldMu.Lock()
	defer w.heldMu.Unlock()
	now := time.Now()
	h, ok := w.holds[ns]
	if !ok || now.Sub(h.seen) > 2*w.e.cfg.RepublishAfter {
		w.holds[ns] = hold{since: now, seen: now}
		return true
	}
	w.holds[ns] = hold{since: h.since, seen: now}
	since := h.since
	if now.Sub(since) < maxHoldBack*w.e.cfg.RepublishAfter {
		return true
	}
	w.e.log.Info("the queue has had a backlog for too long; re-publishing anyway", "namespace", ns, "ready", ready,
		"since", since)
	return false
}

// listenEvents follows the store's announcements (store.EventListener) while the workers run: a
// task cancelled by another process stops its handlers here at once, rather than at their next
// heartbeat; and while this engine leads, a task created in a caller's transaction has its first
// steps published as soon as that transaction commits (the engine that created it cannot see the
// commit). An announcement lost leaves the work to the heartbeats and to the sweeper.
//
// listening is closed at the first EventListening.
func (w *workers) listenEvents(ctx context.Context, el store.EventListener, listening chan<- struct{}) {
	var once sync.Once
	e := w.e
	_, publishes := e.queue.(queue.Publisher)
	created := make(chan uuid.UUID, 1024)
	var wg sync.WaitGroup
	if publishes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case id := <-created:
					w.publishTask(ctx, id)
				}
			}
		}()
	}
	err := el.ListenEvents(ctx, func(ev store.Event) {
		switch ev.Kind {
		case store.EventListening:
			once.Do(func() { close(listening) })
		case store.EventTaskCancelled:
			e.runs.CancelTask(ev.TaskID)
			e.waiters.Notify(ev.TaskID)
		case store.EventTaskCreated:
			if !publishes || !w.leading.Load() {
				return
			}
			select {
			case created <- ev.TaskID:
			default:
				e.log.Info("too many creation announcements at once; the sweeper will publish this task's steps", "task", ev.TaskID)
			}
		}
	})
	if err != nil && ctx.Err() == nil {
		e.log.Error(err, "listen for the store's announcements; cancellations will arrive with heartbeats, and the sweeper will publish the steps of tasks created in callers' transactions")
	}
	wg.Wait()
}

// publishTask publishes the messages of a task's enqueued steps.
func (w *workers) publishTask(ctx context.Context, id uuid.UUID) {
	e := w.e
	pub := e.queue.(queue.Publisher)
	task, err := e.store.GetTask(ctx, id)
	var steps []store.Step
	if err == nil {
		steps, err = e.store.GetSteps(ctx, id)
	}
	if err != nil {
		if ctx.Err() == nil {
			e.log.Error(err, "read a committed task to publish its steps; the sweeper will", "task", id)
		}
		return
	}
	var refs []store.StepRef
	for _, s := range steps {
		if s.State == statemachine.StepEnqueued {
			refs = append(refs, store.StepRef{TaskID: id, StepID: s.ID, TaskName: task.Name, Version: task.Version, Name: s.TemplateStep, Handler: s.Handler})
		}
	}
	if len(refs) == 0 {
		return
	}
	payloads, err := e.stepPayloads(task.Namespace, refs)
	if err == nil {
		err = pub.Publish(ctx, task.Namespace, payloads, 0)
	}
	if err != nil {
		if ctx.Err() == nil {
			e.log.Error(err, "publish the steps of a committed task; the sweeper will publish them again", "task", id)
		}
		return
	}
	e.log.V(1).Info("published the first steps of a task created in a caller's transaction", "task", id, "steps", len(refs))
}

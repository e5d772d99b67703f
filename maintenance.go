package tasker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/tasker-systems/tasker/queue"
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
		p := w.classify(st, handlerOutcome{err: errors.New(msg)}, nil)
		if p.Kind == store.OutcomePermanent || p.Kind == store.OutcomeRetry {
			var se StepFailure
			_ = json.Unmarshal(p.Error, &se)
			se.Kind = "lease_expired"
			p.Error, _ = json.Marshal(se)
		}
		p.TaskID, p.StepID, p.WorkerID, p.Attempt, p.Namespace = st.TaskID, st.ID, st.LeaseOwner, st.Attempts, ex.Namespace
		enq := e.enqueuerFor()
		p.Enqueuer, p.LeaseExpired = enq, true
		res, err := e.store.RecordOutcome(ctx, p)
		if err == nil {
			enq.flush(ctx)
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
			e.waiters.notify(st.TaskID)
		}
	}
}

// sweep publishes again the messages of steps that waited enqueued for longer than
// Config.RepublishAfter: with a queue outside the database, a message can be lost between a
// commit and its publish (a crash, a broker outage). A duplicate is dropped at its claim.
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
	for _, st := range stale {
		payloads, err := stepPayloads([]store.StepRef{st.Ref})
		if err == nil {
			err = pub.Publish(ctx, st.Namespace, payloads, 0)
		}
		if err != nil {
			if ctx.Err() == nil {
				e.log.Error(err, "re-publish step message", "step", st.Ref.StepID)
			}
			continue
		}
		e.log.Info("re-published the message of a step that waited too long", "step", st.Ref.StepID, "task", st.Ref.TaskID)
	}
}

package engine

import (
	"context"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/tasker-systems/tasker/queue"
	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

// listenStartWait bounds how long RunWorkers waits for the store's announcements before it starts
// handlers.
const listenStartWait = 2 * time.Second

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
			if w.leading.Load() {
				// A cancellation or a move to error, perhaps committed in a caller's transaction
				// (CancelTaskTx), which its engine could not follow: the leader wakes the parent.
				e.wakeParent(ctx, ev.TaskID, nil) // child.go
			}
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
	var refs, scheduled []store.StepRef
	var start time.Time
	for _, s := range steps {
		ref := store.StepRef{TaskID: id, StepID: s.ID, TaskName: task.Name, Version: task.Version, Name: s.TemplateStep, Handler: s.Handler}
		switch {
		case s.State == statemachine.StepEnqueued:
			refs = append(refs, ref)
		case s.State == statemachine.StepWaitingForRetry && s.Attempts == 0 && s.NextRetryAt != nil:
			// A scheduled task's root (TaskRequest.RunAt): its retry timer, delayed until the start.
			ref.Retry = true
			scheduled, start = append(scheduled, ref), *s.NextRetryAt
		}
	}
	if len(refs) == 0 && len(scheduled) == 0 {
		return
	}
	for _, g := range []struct {
		refs  []store.StepRef
		delay time.Duration
	}{{refs, 0}, {scheduled, max(start.Sub(e.cfg.Clock.Now()), 0)}} {
		if len(g.refs) == 0 || err != nil {
			continue
		}
		if dl, ok := e.queue.(queue.DelayLimiter); ok && dl.MaxDelay() > 0 && g.delay > dl.MaxDelay() {
			continue // the sweeper publishes them once due
		}
		var payloads [][]byte
		if payloads, err = e.stepPayloads(task.Namespace, g.refs); err == nil {
			err = pub.Publish(ctx, task.Namespace, payloads, g.delay)
		}
	}
	if err != nil {
		if ctx.Err() == nil {
			e.log.Error(err, "publish the steps of a committed task; the sweeper will publish them again", "task", id)
		}
		return
	}
	e.log.V(1).Info("published the first steps of a task created in a caller's transaction", "task", id, "steps", len(refs))
}

package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/tasker-systems/tasker/store"
)

// ExhaustedBatch is how many blocked tasks one pass of the retries-exhausted writer reads at
// most; the rest wait for the next pass (those written drop out of the read).
const ExhaustedBatch = 100

// deadLetterExhausted writes the dead-letter entry of each task blocked by a step that used all its
// attempts (store.ExhaustedTasks): one entry per task and blocking, with reason
// max_retries_exceeded. The task stays in blocked_by_failures: an entry never requeues anything,
// and an operator's step fix (RetryStep, ResolveStep, CompleteStep) resumes it. Each write is a
// compare-and-set on the state and transition measured, and the store keeps one pending entry per
// task, so two engines (or a pass racing an operator) write at most one; a lost race is skipped.
func (w *workers) deadLetterExhausted(ctx context.Context) error {
	e := w.e
	tasks, err := e.store.ExhaustedTasks(ctx, store.ExhaustedTasksParams{Limit: ExhaustedBatch})
	if err != nil {
		if ctx.Err() == nil {
			e.log.Error(err, "look for tasks whose retries are exhausted")
		}
		return fmt.Errorf("look for tasks whose retries are exhausted: %w", err)
	}
	var failed error
	for i := range tasks {
		a := &tasks[i]
		d, err := e.store.AddDeadLetter(ctx, store.AddDeadLetterParams{TaskID: a.ID, From: a.State, FromSortKey: a.StateSortKey,
			Entry: store.NewDeadLetter{ID: uuid.Must(uuid.NewV7()), Reason: store.ReasonMaxRetriesExceeded,
				Detail: map[string]any{"writer": "retries_exhausted", "engine": e.cfg.WorkerID, "blocked_since": a.StateSince}}})
		switch {
		case errors.Is(err, store.ErrDeadLetterOpen), errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrNotFound):
			// Another writer was first, the task moved on since it was read, or it is gone.
			continue
		case err != nil:
			if ctx.Err() != nil {
				return nil
			}
			e.log.Error(err, "dead-letter a task whose retries are exhausted", "task", a.ID)
			failed = fmt.Errorf("dead-letter task %s: %w", a.ID, err)
			continue
		}
		e.tel.deadLettered(ctx, a.Namespace, store.ReasonMaxRetriesExceeded)
		e.log.Info("dead-lettered a task whose retries are exhausted", "task", a.ID, "namespace", a.Namespace,
			"name", a.Name, "entry", d.ID, "blocked_for", a.StateAge)
	}
	return failed
}

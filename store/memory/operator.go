package memory

import (
	"context"
	"fmt"
	"time"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

// CancelTask cancels a task and every step that has not finished; running handlers learn of it
// through their heartbeat (or at once, in the engine that cancels). It returns store.ErrConflict
// when the task is already terminal.
func (s *Store) CancelTask(ctx context.Context, p store.CancelTaskParams) (*store.OutcomeResult, error) {
	var res *store.OutcomeResult
	err := s.write(ctx, func(tx *txn) error {
		t, ok := s.tasks[p.TaskID]
		if !ok {
			return fmt.Errorf("task %s: %w", p.TaskID, store.ErrNotFound)
		}
		c := countersOf(t)
		if c.state.Terminal() {
			return fmt.Errorf("cancel task %s: it is %s: %w", p.TaskID, c.state, store.ErrConflict)
		}
		var moves []stepMove
		for _, st := range t.steps {
			switch st.s.State {
			case statemachine.StepComplete, statemachine.StepResolvedManually, statemachine.StepCancelled:
				continue
			}
			moves = append(moves, stepMove{st, st.s.State})
			tx.setStepState(st, statemachine.StepCancelled)
			set(tx, &st.s.LeaseOwner, "")
			set(tx, &st.s.LeaseExpiresAt, nil)
			set(tx, &st.s.NextRetryAt, nil)
			set(tx, &st.s.UpdatedAt, tx.now)
		}
		meta := map[string]any{"reason": p.Reason}
		if err := tx.writeStepTransitions(moves, statemachine.StepEventCancel, statemachine.StepCancelled, meta); err != nil {
			return err
		}
		if _, err := tx.addCounters(t, 0, -len(moves), -c.active, -c.failed, -c.isolated); err != nil {
			return err
		}
		hops, err := taskPath(c.state, statemachine.TaskEventCancel)
		if err != nil {
			return err
		}
		if err := tx.moveTask(t, c.state, hops, meta); err != nil {
			return err
		}
		res = &store.OutcomeResult{TaskID: p.TaskID, TaskState: statemachine.TaskCancelled, Settled: true}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.announce(store.Event{Kind: store.EventTaskCancelled, TaskID: p.TaskID})
	return res, nil
}

// OperatorAction applies an operator's fix to a step in error: retry resets it for a fresh set of
// attempts, resolve marks it resolved_manually, complete completes it with the given result. When
// no failed step is left, the task resumes at once: the steps that became ready while it was
// blocked are enqueued and the steps waiting for a retry are re-armed. It returns
// store.ErrConflict when the step is not in error or the task has finished.
func (s *Store) OperatorAction(ctx context.Context, p store.OperatorParams) (*store.OutcomeResult, error) {
	var res *store.OutcomeResult
	err := s.write(ctx, func(tx *txn) error {
		var err error
		res, err = tx.operatorAction(p)
		return err
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

func (tx *txn) operatorAction(p store.OperatorParams) (*store.OutcomeResult, error) {
	st, ok := tx.s.steps[p.StepID]
	if !ok {
		return nil, fmt.Errorf("step %s: %w", p.StepID, store.ErrNotFound)
	}
	t := st.task
	taskID := t.t.ID
	before := countersOf(t)
	if before.state.Terminal() {
		return nil, fmt.Errorf("%s step %s: task is %s: %w", p.Action, p.StepID, before.state, store.ErrConflict)
	}
	var newState statemachine.StepState
	switch p.Action {
	case store.OperatorRetry:
		newState = statemachine.StepEnqueued
	case store.OperatorResolve:
		newState = statemachine.StepResolvedManually
	case store.OperatorComplete:
		newState = statemachine.StepComplete
	default:
		return nil, fmt.Errorf("unknown operator action %q", p.Action)
	}
	if st.s.State != statemachine.StepError {
		return nil, fmt.Errorf("%s step %s: it is not in error: %w", p.Action, p.StepID, store.ErrConflict)
	}
	strategy, group := st.s.FailureStrategy, st.s.BatchGroup
	tx.setStepState(st, newState)
	set(tx, &st.s.UpdatedAt, tx.now)
	if newState == statemachine.StepEnqueued {
		set(tx, &st.s.Attempts, 0)
		set(tx, &st.s.CompletedAt, nil)
	} else {
		set(tx, &st.s.CompletedAt, ptr(tx.now))
	}
	if newState == statemachine.StepComplete {
		result, err := jsonb(p.Result)
		if err != nil {
			return nil, fmt.Errorf("%s step %s: %w", p.Action, p.StepID, err)
		}
		set(tx, &st.s.Result, result)
	}
	dIsolated := 0
	if strategy == "isolate" && before.isolated > 0 {
		dIsolated = -1
	}
	meta := map[string]any{"operator": p.Operator, "reason": p.Reason}
	move := []stepMove{{st, statemachine.StepError}}
	// Once this fix leaves no failed step that blocks the task, the task may run again.
	resumes := (before.failed-1)-(before.isolated+dIsolated) == 0
	dUnfinished, dActive := 0, 0
	switch p.Action {
	case store.OperatorRetry:
		if err := tx.writeStepTransitions(move, statemachine.StepEventReset, statemachine.StepPending, meta); err != nil {
			return nil, err
		}
		if err := tx.writeStepTransitions([]stepMove{{st, statemachine.StepPending}}, statemachine.StepEventEnqueue, statemachine.StepEnqueued, nil); err != nil {
			return nil, err
		}
		dActive = 1
		tx.enqueue(p.Enqueuer, p.Namespace, []store.StepRef{{TaskID: taskID, StepID: p.StepID}}, 0)
	case store.OperatorResolve, store.OperatorComplete:
		ev := statemachine.StepEventResolveManually
		if p.Action == store.OperatorComplete {
			ev = statemachine.StepEventCompleteManually
		}
		if err := tx.writeStepTransitions(move, ev, newState, meta); err != nil {
			return nil, err
		}
		ready, err := tx.releaseChildren(st, resumes)
		if err != nil {
			return nil, fmt.Errorf("release children of %s: %w", p.StepID, err)
		}
		if err := tx.enqueuePending(t, p.Namespace, ready, p.Enqueuer); err != nil {
			return nil, err
		}
		dUnfinished, dActive = -1, len(ready)
		if group != nil {
			// The fixed worker's slot goes to a held sibling.
			next := tx.unholdNext(t, *group)
			if resumes {
				if err := tx.enqueuePending(t, p.Namespace, next, p.Enqueuer); err != nil {
					return nil, err
				}
				dActive += len(next)
			} else {
				for _, n := range next {
					tx.setStepState(n, statemachine.StepPending)
				}
			}
		}
	}
	if resumes && before.state == statemachine.TaskBlockedByFailures {
		n, err := tx.rearm(t, p.Namespace, p.Enqueuer)
		if err != nil {
			return nil, err
		}
		dActive += n
	}
	c, err := tx.addCounters(t, 0, dUnfinished, dActive, -1, dIsolated)
	if err != nil {
		return nil, err
	}
	state, err := tx.settle(t, c, meta)
	if err != nil {
		return nil, err
	}
	return &store.OutcomeResult{TaskID: taskID, TaskState: state, Settled: cameToRest(before, state, c)}, nil
}

// rearm restarts a task that was blocked: pending steps whose parents all finished while it was
// blocked are enqueued, and steps waiting for a retry get their timer message again. It returns
// the number of steps enqueued.
func (tx *txn) rearm(t *taskRow, ns string, q store.Enqueuer) (int, error) {
	var ready []*stepRow
	for _, st := range t.steps {
		if st.s.State == statemachine.StepPending && st.parentsUnfinished == 0 && !st.held {
			tx.setStepState(st, statemachine.StepEnqueued)
			set(tx, &st.s.UpdatedAt, tx.now)
			ready = append(ready, st)
		}
	}
	if err := tx.enqueuePending(t, ns, ready, q); err != nil {
		return 0, err
	}
	for _, st := range t.steps {
		if st.s.State != statemachine.StepWaitingForRetry || st.s.NextRetryAt == nil {
			continue
		}
		delay := max(st.s.NextRetryAt.Sub(tx.now).Round(time.Millisecond), 0)
		tx.enqueue(q, ns, []store.StepRef{{TaskID: t.t.ID, StepID: st.s.ID, Retry: true}}, delay)
	}
	return len(ready), nil
}

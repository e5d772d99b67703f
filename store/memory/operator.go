package memory

import (
	"context"
	"fmt"
	"time"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
	"github.com/tasker-systems/tasker/store/internal/params"
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
		plan, err := statemachine.PlanCancel(countersOf(t).TaskCounters, p.Reason)
		if err != nil {
			return params.Conflict(fmt.Sprintf("cancel task %s", p.TaskID), err)
		}
		moves, err := tx.cancelSteps(t, statemachine.Cancels, plan.Meta)
		if err != nil {
			return err
		}
		if err := tx.settle(t, plan.Delta(len(moves)), plan.Path, plan.Meta); err != nil {
			return err
		}
		res = &store.OutcomeResult{TaskID: p.TaskID, TaskState: plan.State, Settled: plan.Settled}
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
	plan, err := statemachine.PlanOperator(params.Operator(p.Action), countersOf(t).TaskCounters, params.FixedStep(st.s), p.Operator, p.Reason)
	if err != nil {
		return nil, params.Conflict(fmt.Sprintf("%s step %s", p.Action, p.StepID), err)
	}
	if st.s.State != statemachine.StepError {
		return nil, fmt.Errorf("%s step %s: it is not in error: %w", p.Action, p.StepID, store.ErrConflict)
	}
	tx.setStepState(st, plan.Target)
	set(tx, &st.s.UpdatedAt, tx.now)
	if plan.EnqueueSelf {
		set(tx, &st.s.Attempts, 0)
		set(tx, &st.s.CompletedAt, nil)
	} else {
		set(tx, &st.s.CompletedAt, ptr(tx.now))
	}
	if plan.Target == statemachine.StepComplete {
		result, err := jsonb(p.Result)
		if err != nil {
			return nil, fmt.Errorf("%s step %s: %w", p.Action, p.StepID, err)
		}
		set(tx, &st.s.Result, result)
	}
	for _, h := range plan.Path {
		if err := tx.writeStepTransitions([]stepMove{{st, h.From}}, h.Event, h.To, h.Meta); err != nil {
			return nil, err
		}
	}
	if plan.EnqueueSelf {
		tx.enqueue(p.Enqueuer, p.Namespace, []store.StepRef{{TaskID: taskID, StepID: p.StepID}}, 0)
	}
	var ready []*stepRow // the other steps the fix enqueues, in the order their transitions are written
	if plan.ReleasesChildren {
		children, err := tx.releaseChildren(st, plan.Resumes)
		if err != nil {
			return nil, fmt.Errorf("release children of %s: %w", p.StepID, err)
		}
		ready = append(ready, children...)
	}
	if plan.UnholdsSibling {
		for _, n := range tx.unholdNext(t, *st.s.BatchGroup) {
			if plan.Resumes {
				ready = append(ready, n)
			} else {
				tx.setStepState(n, statemachine.StepPending)
			}
		}
	}
	if plan.Rearm {
		ready = append(ready, tx.rearm(t, p.Namespace, p.Enqueuer)...)
	}
	if err := tx.enqueuePending(t, p.Namespace, ready, p.Enqueuer); err != nil {
		return nil, err
	}
	d, settlement, err := plan.Apply(len(ready))
	if err != nil {
		return nil, fmt.Errorf("settle task %s: %w", taskID, err)
	}
	if err := tx.settle(t, d, settlement.Path, plan.Meta); err != nil {
		return nil, err
	}
	return &store.OutcomeResult{TaskID: taskID, TaskState: settlement.State, Settled: settlement.Settled}, nil
}

// rearm restarts a task that was blocked: pending steps whose parents all finished while it was
// blocked move to enqueued (the caller records and sends them), and steps waiting for a retry get
// their timer message again. It returns the steps it enqueued.
func (tx *txn) rearm(t *taskRow, ns string, q store.Enqueuer) []*stepRow {
	var ready []*stepRow
	for _, st := range t.steps {
		if statemachine.JoinReady(st.s.State, st.parentsUnfinished, st.held) {
			tx.setStepState(st, statemachine.StepEnqueued)
			set(tx, &st.s.UpdatedAt, tx.now)
			ready = append(ready, st)
		}
	}
	for _, st := range t.steps {
		if st.s.State != statemachine.StepWaitingForRetry || st.s.NextRetryAt == nil {
			continue
		}
		delay := max(st.s.NextRetryAt.Sub(tx.now).Round(time.Millisecond), 0)
		tx.enqueue(q, ns, []store.StepRef{{TaskID: t.t.ID, StepID: st.s.ID, Retry: true}}, delay)
	}
	return ready
}

// cancelSteps cancels the steps of t whose state cancels says go, releasing their leases, and
// writes their transitions; CancelTask and FailTask share it.
func (tx *txn) cancelSteps(t *taskRow, cancels func(statemachine.StepState) bool, meta map[string]any) ([]stepMove, error) {
	var moves []stepMove
	for _, st := range t.steps {
		if !cancels(st.s.State) {
			continue
		}
		moves = append(moves, stepMove{st, st.s.State})
		tx.setStepState(st, statemachine.StepCancelled)
		set(tx, &st.s.LeaseOwner, "")
		set(tx, &st.s.LeaseExpiresAt, nil)
		set(tx, &st.s.NextRetryAt, nil)
		set(tx, &st.s.UpdatedAt, tx.now)
	}
	return moves, tx.writeStepTransitions(moves, statemachine.StepEventCancel, statemachine.StepCancelled, meta)
}

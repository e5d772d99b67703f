package memory

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
	"github.com/tasker-systems/tasker/store/internal/params"
)

// holds reports whether a worker holds the step for the given attempt.
func holds(st *stepRow, workerID string, attempt int) bool {
	return st.s.State == statemachine.StepInProgress && st.s.LeaseOwner != "" && st.s.LeaseOwner == workerID &&
		st.s.Attempts == attempt
}

// heldAt is holds with attempt 0 meaning any attempt, as heartbeats take it.
func heldAt(st *stepRow, workerID string, attempt int) bool {
	return st.s.State == statemachine.StepInProgress && st.s.LeaseOwner != "" && st.s.LeaseOwner == workerID &&
		(attempt == 0 || st.s.Attempts == attempt)
}

// ClaimStep moves an enqueued step to in_progress for one more attempt, with a lease, and loads
// what its handler needs. It returns store.ErrConflict when the step is not enqueued (a duplicate
// delivery, a cancelled task, or no such step): the message should be dropped.
func (s *Store) ClaimStep(ctx context.Context, p store.ClaimStepParams) (*store.ClaimedStep, error) {
	var out *store.ClaimedStep
	err := s.write(ctx, func(tx *txn) error {
		var err error
		out, err = tx.claim(p, "")
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// claim is ClaimStep inside an operation; after, unless "", is the step whose outcome hands this
// one over, named in its start transition.
func (tx *txn) claim(p store.ClaimStepParams, after string) (*store.ClaimedStep, error) {
	st, ok := tx.s.steps[p.StepID]
	if !ok || st.s.State != statemachine.StepEnqueued {
		return nil, fmt.Errorf("claim step %s: %w", p.StepID, store.ErrConflict)
	}
	tx.setStepState(st, statemachine.StepInProgress)
	set(tx, &st.s.Attempts, st.s.Attempts+1)
	set(tx, &st.s.LeaseOwner, p.WorkerID)
	set(tx, &st.s.LeaseExpiresAt, ptr(tx.live.Add(millis(p.Lease))))
	set(tx, &st.s.StartedAt, ptr(tx.now))
	set(tx, &st.s.UpdatedAt, tx.now)
	m := map[string]any{"worker_id": p.WorkerID, "attempt": st.s.Attempts}
	if after != "" {
		m["after"] = after
	}
	meta := mustJSONB(m)
	if err := tx.stepTransition(st, statemachine.StepEnqueued, statemachine.StepInProgress, statemachine.StepEventStart, meta); err != nil {
		return nil, err
	}
	return &store.ClaimedStep{Step: cloneStep(&st.s), Task: cloneTask(&st.task.t), Results: ancestorResults(st, p.Ancestors)}, nil
}

// ancestorResults returns the results of the named steps of st's task, or, when names is nil, of
// every ancestor through the task's edges; only finished steps with a result count.
func ancestorResults(st *stepRow, names []string) map[string]json.RawMessage {
	results := map[string]json.RawMessage{}
	add := func(a *stepRow) {
		if a.s.State.Finished() && a.s.Result != nil {
			results[a.s.Name] = cloneRaw(a.s.Result)
		}
	}
	if names != nil {
		for _, name := range names {
			if a, ok := st.task.byName[name]; ok {
				add(a)
			}
		}
		return results
	}
	seen := map[*stepRow]bool{}
	stack := slices.Clone(st.parents)
	for len(stack) > 0 {
		a := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[a] {
			continue
		}
		seen[a] = true
		add(a)
		stack = append(stack, a.parents...)
	}
	return results
}

// PromoteRetry moves a step whose backoff has elapsed from waiting_for_retry to enqueued and
// wakes its task. It returns store.ErrNotDue when the backoff has not elapsed (within 5ms), and
// store.ErrConflict when the step is not waiting or its task is blocked or finished (an operator
// fix re-sends it).
func (s *Store) PromoteRetry(ctx context.Context, p store.PromoteRetryParams) error {
	return s.write(ctx, func(tx *txn) error { return tx.promoteRetry(p) })
}

// promoteRetry is PromoteRetry inside an operation. Every refusal comes before the first change.
func (tx *txn) promoteRetry(p store.PromoteRetryParams) error {
	st, ok := tx.s.steps[p.StepID]
	if !ok {
		return fmt.Errorf("step %s: %w", p.StepID, store.ErrNotFound)
	}
	t := st.task
	plan, err := statemachine.PlanPromote(countersOf(t).TaskCounters)
	if err != nil {
		return params.Conflict(fmt.Sprintf("promote retry of %s", p.StepID), err)
	}
	if st.s.State != statemachine.StepWaitingForRetry {
		return fmt.Errorf("promote retry of %s: %w", p.StepID, store.ErrConflict)
	}
	if st.s.NextRetryAt == nil {
		return fmt.Errorf("promote retry of %s: no retry time", p.StepID)
	}
	if st.s.NextRetryAt.After(tx.now.Add(5 * time.Millisecond)) {
		return fmt.Errorf("promote retry of %s: %w", p.StepID, store.ErrNotDue)
	}
	tx.setStepState(st, plan.Step.To)
	set(tx, &st.s.NextRetryAt, nil)
	set(tx, &st.s.UpdatedAt, tx.now)
	if err := tx.writeStepTransitions([]stepMove{{st, plan.Step.From}}, plan.Step.Event, plan.Step.To, plan.Meta); err != nil {
		return err
	}
	return tx.settle(t, plan.Delta, plan.Path, nil)
}

// Heartbeat extends the lease of a step its worker still holds and returns the step's state; when
// the worker no longer holds it (cancelled, rescued, or claimed since by another worker), it
// returns the current state and store.ErrConflict.
func (s *Store) Heartbeat(ctx context.Context, p store.HeartbeatParams) (statemachine.StepState, error) {
	var state statemachine.StepState
	var held bool
	err := s.write(ctx, func(tx *txn) error {
		st, ok := s.steps[p.StepID]
		if !ok {
			return fmt.Errorf("step %s: %w", p.StepID, store.ErrNotFound)
		}
		state = st.s.State
		held = heldAt(st, p.WorkerID, p.Attempt)
		if held {
			set(tx, &st.s.LeaseExpiresAt, ptr(tx.live.Add(millis(p.Lease))))
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return state, params.Conflict(fmt.Sprintf("heartbeat %s", p.StepID), statemachine.HeartbeatVerdict(state, held))
}

// ReleaseStep gives an in-progress step back to the queue (enqueued) without spending the attempt,
// as a graceful shutdown does for handlers it had to cut off.
func (s *Store) ReleaseStep(ctx context.Context, p store.ReleaseStepParams) error {
	return s.write(ctx, func(tx *txn) error { return tx.releaseStep(p) })
}

// releaseStep is ReleaseStep inside an operation; a step not held at p's attempt is left as it
// is, and store.ErrConflict returned.
func (tx *txn) releaseStep(p store.ReleaseStepParams) error {
	st, ok := tx.s.steps[p.StepID]
	if !ok || !holds(st, p.WorkerID, p.Attempt) {
		return fmt.Errorf("release step %s: %w", p.StepID, store.ErrConflict)
	}
	tx.setStepState(st, statemachine.StepEnqueued)
	set(tx, &st.s.Attempts, st.s.Attempts-1)
	set(tx, &st.s.LeaseOwner, "")
	set(tx, &st.s.LeaseExpiresAt, nil)
	set(tx, &st.s.UpdatedAt, tx.now)
	if err := checkStep(st); err != nil {
		return err
	}
	if err := tx.writeStepTransitions([]stepMove{{st, statemachine.StepInProgress}},
		statemachine.StepEventRelease, statemachine.StepEnqueued,
		map[string]any{"worker_id": p.WorkerID, "attempt": p.Attempt, "reason": p.Reason}); err != nil {
		return err
	}
	t := &st.task.t
	tx.enqueue(p.Enqueuer, p.Namespace, []store.StepRef{{TaskID: t.ID, StepID: st.s.ID, TaskName: t.Name, Version: t.Version,
		Name: st.s.TemplateStep, Handler: st.s.Handler}}, p.Delay)
	return nil
}

package postgres

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

// RecordOutcome records an attempt's outcome with a compare-and-set on the attempt the worker
// holds, releases and enqueues the dependents it makes ready, updates the task's counters and
// settles the task, all in one transaction (with p.BeforeCommit, e.g. the message's ack). It
// returns store.ErrConflict when the worker no longer holds the step (cancelled, rescued).
func (s *Store) RecordOutcome(ctx context.Context, p store.OutcomeParams) (*store.OutcomeResult, error) {
	var res *store.OutcomeResult
	err := s.withRetry(ctx, func(tx pgx.Tx) error {
		var err error
		res, err = s.recordOutcome(ctx, tx, p)
		return err
	})
	return res, err
}

func (s *Store) recordOutcome(ctx context.Context, tx pgx.Tx, p store.OutcomeParams) (*store.OutcomeResult, error) {
	before, err := s.lockTask(ctx, tx, p.TaskID)
	if err != nil {
		return nil, err
	}
	var (
		to    statemachine.StepState
		event statemachine.StepEvent
	)
	switch p.Kind {
	case store.OutcomeSuccess:
		to, event = statemachine.StepComplete, statemachine.StepEventComplete
	case store.OutcomeRetry:
		to, event = statemachine.StepWaitingForRetry, statemachine.StepEventFailRetryable
	case store.OutcomePermanent:
		to, event = statemachine.StepError, statemachine.StepEventFailPermanent
	default:
		return nil, fmt.Errorf("record outcome: unknown kind %d", p.Kind)
	}
	var result, lastErr any
	if p.Kind == store.OutcomeSuccess {
		result = rawOrNull(p.Result)
	} else {
		lastErr = rawOrNull(p.Error)
	}
	tag, err := tx.Exec(ctx, s.q(`
		UPDATE {s}.steps
		   SET state = $4, result = coalesce($5, result), last_error = coalesce($6, last_error),
		       next_retry_at = CASE WHEN $4 = 'waiting_for_retry' THEN now() + $7 * interval '1 millisecond' END,
		       lease_owner = NULL, lease_expires_at = NULL, updated_at = now(),
		       completed_at = CASE WHEN $4 = 'complete' THEN now() ELSE completed_at END
		 WHERE step_id = $1 AND state = 'in_progress' AND lease_owner = $2 AND attempts = $3`),
		p.StepID, p.WorkerID, p.Attempt, string(to), result, lastErr, p.RetryDelay.Milliseconds())
	if err != nil {
		return nil, fmt.Errorf("record outcome of %s: %w", p.StepID, err)
	}
	if tag.RowsAffected() == 0 {
		return nil, fmt.Errorf("record outcome of %s attempt %d: %w", p.StepID, p.Attempt, store.ErrConflict)
	}
	meta := map[string]any{"worker_id": p.WorkerID, "attempt": p.Attempt}
	if len(p.Error) > 0 {
		meta["error"] = json.RawMessage(p.Error)
	}
	if p.Kind == store.OutcomeRetry {
		meta["retry_in_ms"] = p.RetryDelay.Milliseconds()
	}
	if err := s.writeStepTransitions(ctx, tx, []stepMove{{p.StepID, statemachine.StepInProgress}}, event, to, meta); err != nil {
		return nil, err
	}

	var dUnfinished, dActive, dFailed int
	released := 0
	switch p.Kind {
	case store.OutcomeSuccess:
		n, err := s.releaseChildren(ctx, tx, p.TaskID, p.StepID, p.Namespace, runnable(before.state), p.Enqueuer)
		if err != nil {
			return nil, err
		}
		released = n
		dUnfinished, dActive = -1, n-1
	case store.OutcomeRetry:
		dActive = -1
		if p.Enqueuer != nil {
			ref := []store.StepRef{{TaskID: p.TaskID, StepID: p.StepID, Retry: true}}
			if err := p.Enqueuer.EnqueueTx(ctx, tx, p.Namespace, ref, p.RetryDelay); err != nil {
				return nil, fmt.Errorf("enqueue retry of %s: %w", p.StepID, err)
			}
		}
	case store.OutcomePermanent:
		dActive, dFailed = -1, 1
	}
	c, err := s.addCounters(ctx, tx, p.TaskID, dUnfinished, dActive, dFailed)
	if err != nil {
		return nil, err
	}
	state, err := s.settle(ctx, tx, p.TaskID, c, map[string]any{"step": p.StepID.String(), "worker_id": p.WorkerID})
	if err != nil {
		return nil, err
	}
	if p.BeforeCommit != nil {
		if err := p.BeforeCommit(ctx, tx); err != nil {
			return nil, err
		}
	}
	return &store.OutcomeResult{TaskID: p.TaskID, TaskState: state, Released: released,
		Settled: state != before.state && state.Settled()}, nil
}

// runnable reports whether a task in this state may start steps.
func runnable(st statemachine.TaskState) bool {
	return !st.Terminal() && st != statemachine.TaskBlockedByFailures
}

func rawOrNull(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// releaseChildren counts a finished parent off each child's unfinished parents (one row per
// child: a join costs O(1) per parent) and enqueues the children that become ready, unless the
// task is blocked or finished, in which case they wait in pending for an operator fix. It returns
// how many it enqueued.
func (s *Store) releaseChildren(ctx context.Context, tx pgx.Tx, taskID, stepID uuid.UUID, ns string, canEnqueue bool, q store.Enqueuer) (int, error) {
	rows, err := tx.Query(ctx, s.q(`
		UPDATE {s}.steps c
		   SET parents_unfinished = c.parents_unfinished - 1,
		       state = CASE WHEN c.parents_unfinished = 1 AND c.state = 'pending' AND $2 THEN 'enqueued' ELSE c.state END,
		       updated_at = now()
		  FROM {s}.edges e
		 WHERE e.from_step_id = $1 AND c.step_id = e.to_step_id
		RETURNING c.step_id, c.state = 'enqueued' AND c.parents_unfinished = 0`), stepID, canEnqueue)
	if err != nil {
		return 0, fmt.Errorf("release children of %s: %w", stepID, err)
	}
	var ready []uuid.UUID
	for rows.Next() {
		var id uuid.UUID
		var now bool
		if err := rows.Scan(&id, &now); err != nil {
			rows.Close()
			return 0, err
		}
		if now {
			ready = append(ready, id)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("release children of %s: %w", stepID, err)
	}
	return len(ready), s.enqueuePending(ctx, tx, taskID, ns, ready, q)
}

// enqueuePending records pending → enqueued for steps already set to enqueued and sends them.
func (s *Store) enqueuePending(ctx context.Context, tx pgx.Tx, taskID uuid.UUID, ns string, ids []uuid.UUID, q store.Enqueuer) error {
	if len(ids) == 0 {
		return nil
	}
	moves := make([]stepMove, len(ids))
	refs := make([]store.StepRef, len(ids))
	for i, id := range ids {
		moves[i] = stepMove{id, statemachine.StepPending}
		refs[i] = store.StepRef{TaskID: taskID, StepID: id}
	}
	if err := s.writeStepTransitions(ctx, tx, moves, statemachine.StepEventEnqueue, statemachine.StepEnqueued, nil); err != nil {
		return err
	}
	if q == nil {
		return nil
	}
	if err := q.EnqueueTx(ctx, tx, ns, refs, 0); err != nil {
		return fmt.Errorf("enqueue ready steps: %w", err)
	}
	return nil
}

package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
	"github.com/tasker-systems/tasker/store/internal/params"
)

// CancelTask cancels a task and every step that has not finished; running handlers learn of it
// through their heartbeat (or at once, in the engine that cancels). It returns store.ErrConflict
// when the task is already terminal.
func (s *Store) CancelTask(ctx context.Context, p store.CancelTaskParams) (*store.OutcomeResult, error) {
	var res *store.OutcomeResult
	err := s.withRetry(ctx, func(tx pgx.Tx) error {
		var err error
		res, err = s.cancelTask(ctx, tx, p)
		return err
	})
	return res, err
}

func (s *Store) cancelTask(ctx context.Context, tx pgx.Tx, p store.CancelTaskParams) (*store.OutcomeResult, error) {
	var res *store.OutcomeResult
	err := func() error {
		c, err := s.lockTask(ctx, tx, p.TaskID)
		if err != nil {
			return err
		}
		plan, err := statemachine.PlanCancel(c.TaskCounters, p.Reason)
		if err != nil {
			return params.Conflict(fmt.Sprintf("cancel task %s", p.TaskID), err)
		}
		// The steps statemachine.Cancels moves: those not terminal.
		rows, err := tx.Query(ctx, s.q(`
			WITH old AS (
				SELECT step_id, state FROM {s}.steps
				 WHERE task_id = $1 AND state NOT IN ('complete', 'resolved_manually', 'cancelled')
				 FOR UPDATE
			)
			UPDATE {s}.steps st
			   SET state = 'cancelled', lease_owner = NULL, lease_expires_at = NULL, next_retry_at = NULL, updated_at = now()
			  FROM old WHERE st.step_id = old.step_id
			RETURNING st.step_id, old.state`), p.TaskID)
		if err != nil {
			return fmt.Errorf("cancel steps of %s: %w", p.TaskID, err)
		}
		var moves []stepMove
		for rows.Next() {
			var m stepMove
			if err := rows.Scan(&m.id, &m.from); err != nil {
				rows.Close()
				return err
			}
			moves = append(moves, m)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if err := s.writeStepTransitions(ctx, tx, p.TaskID, moves, statemachine.StepEventCancel, statemachine.StepCancelled, plan.Meta); err != nil {
			return err
		}
		if err := s.settle(ctx, tx, p.TaskID, plan.Delta(len(moves)), plan.Path, plan.Meta); err != nil {
			return err
		}
		if err := s.notify(ctx, tx, eventCancelled, p.TaskID); err != nil {
			return fmt.Errorf("announce the cancellation of %s: %w", p.TaskID, err)
		}
		res = &store.OutcomeResult{TaskID: p.TaskID, TaskState: plan.State, Settled: plan.Settled}
		return nil
	}()
	return res, err
}

// OperatorAction applies an operator's fix to a step in error: retry resets it for a fresh set of
// attempts, resolve marks it resolved_manually, complete completes it with the given result. When
// no failed step is left, the task resumes at once: the steps that became ready while it was
// blocked are enqueued and the steps waiting for a retry are re-armed. It returns
// store.ErrConflict when the step is not in error or the task has finished.
func (s *Store) OperatorAction(ctx context.Context, p store.OperatorParams) (*store.OutcomeResult, error) {
	var res *store.OutcomeResult
	err := s.withRetry(ctx, func(tx pgx.Tx) error {
		var err error
		res, err = s.operatorAction(ctx, tx, p)
		return err
	})
	return res, err
}

func (s *Store) operatorAction(ctx context.Context, tx pgx.Tx, p store.OperatorParams) (*store.OutcomeResult, error) {
	var taskID uuid.UUID
	if err := tx.QueryRow(ctx, s.q(`SELECT task_id FROM {s}.steps WHERE step_id = $1`), p.StepID).Scan(&taskID); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("step %s: %w", p.StepID, store.ErrNotFound)
		}
		return nil, err
	}
	before, err := s.lockTask(ctx, tx, taskID)
	if err != nil {
		return nil, err
	}
	if before.State.Terminal() {
		return nil, fmt.Errorf("%s step %s: task is %s: %w", p.Action, p.StepID, before.State, store.ErrConflict)
	}
	newState, err := statemachine.OperatorTarget(params.Operator(p.Action))
	if err != nil {
		return nil, err
	}
	var fixed store.Step
	err = tx.QueryRow(ctx, s.q(`
		UPDATE {s}.steps
		   SET state = $2::text, updated_at = now(),
		       attempts = CASE WHEN $2 = 'enqueued' THEN 0 ELSE attempts END,
		       result = CASE WHEN $2 = 'complete' THEN $3::jsonb ELSE result END,
		       completed_at = CASE WHEN $2 = 'enqueued' THEN NULL ELSE now() END
		 WHERE step_id = $1 AND state = 'error'
		RETURNING coalesce(failure_strategy, ''), batch_group`), p.StepID, string(newState), rawOrNull(p.Result)).
		Scan(&fixed.FailureStrategy, &fixed.BatchGroup)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%s step %s: it is not in error: %w", p.Action, p.StepID, store.ErrConflict)
	}
	if err != nil {
		return nil, fmt.Errorf("%s step %s: %w", p.Action, p.StepID, err)
	}
	plan, err := statemachine.PlanOperator(params.Operator(p.Action), before.TaskCounters, params.FixedStep(fixed), p.Operator, p.Reason)
	if err != nil {
		return nil, params.Conflict(fmt.Sprintf("%s step %s", p.Action, p.StepID), err)
	}
	for _, h := range plan.Path {
		if err := s.writeStepTransitions(ctx, tx, taskID, []stepMove{{p.StepID, h.From}}, h.Event, h.To, h.Meta); err != nil {
			return nil, err
		}
	}
	enqueued := 0
	if plan.EnqueueSelf && p.Enqueuer != nil {
		if err := p.Enqueuer.EnqueueTx(ctx, tx, p.Namespace, []store.StepRef{{TaskID: taskID, StepID: p.StepID}}, 0); err != nil {
			return nil, err
		}
	}
	if plan.ReleasesChildren {
		n, err := s.releaseChildren(ctx, tx, taskID, p.StepID, p.Namespace, plan.Resumes, p.Enqueuer)
		if err != nil {
			return nil, err
		}
		enqueued += n
	}
	if plan.UnholdsSibling {
		// The fixed worker's slot goes to a held sibling.
		next, err := s.unholdNext(ctx, tx, *fixed.BatchGroup)
		if err != nil {
			return nil, err
		}
		if plan.Resumes {
			if err := s.enqueuePending(ctx, tx, taskID, p.Namespace, next, p.Enqueuer); err != nil {
				return nil, err
			}
			enqueued += len(next)
		} else if len(next) > 0 {
			if _, err := tx.Exec(ctx, s.q(demoteSQL), releasedIDs(next)); err != nil {
				return nil, err
			}
		}
	}
	if plan.Rearm {
		n, err := s.rearm(ctx, tx, taskID, p.Namespace, p.Enqueuer)
		if err != nil {
			return nil, err
		}
		enqueued += n
	}
	d, settlement, err := plan.Apply(enqueued)
	if err != nil {
		return nil, fmt.Errorf("settle task %s: %w", taskID, err)
	}
	if err := s.settle(ctx, tx, taskID, d, settlement.Path, plan.Meta); err != nil {
		return nil, err
	}
	if p.AnnounceCommit {
		if err := s.notify(ctx, tx, eventCreated, taskID); err != nil {
			return nil, fmt.Errorf("announce the commit of an operator action on %s: %w", taskID, err)
		}
	}
	return &store.OutcomeResult{TaskID: taskID, TaskState: settlement.State, Settled: settlement.Settled}, nil
}

// rearm restarts a task that was blocked: pending steps whose parents all finished while it was
// blocked are enqueued, and steps waiting for a retry get their timer message again. It returns
// the number of steps enqueued.
func (s *Store) rearm(ctx context.Context, tx pgx.Tx, taskID uuid.UUID, ns string, q store.Enqueuer) (int, error) {
	rows, err := tx.Query(ctx, s.q(`
		UPDATE {s}.steps SET state = 'enqueued', transition_seq = transition_seq + 1, updated_at = now() -- enqueuePending's transition
		 WHERE task_id = $1 AND state = 'pending' AND parents_unfinished = 0 AND NOT held -- statemachine.JoinReady
		RETURNING step_id, true, template_step, handler`), taskID)
	if err != nil {
		return 0, fmt.Errorf("re-arm task %s: %w", taskID, err)
	}
	ready, err := scanReleasedRows(rows)
	if err != nil {
		return 0, fmt.Errorf("re-arm task %s: %w", taskID, err)
	}
	if err := s.enqueuePending(ctx, tx, taskID, ns, ready, q); err != nil {
		return 0, err
	}
	rows, err = tx.Query(ctx, s.q(`
		SELECT step_id, greatest(0, (extract(epoch FROM next_retry_at - now()) * 1000)::bigint) FROM {s}.steps
		 WHERE task_id = $1 AND state = 'waiting_for_retry'`), taskID)
	if err != nil {
		return 0, fmt.Errorf("re-arm retries of %s: %w", taskID, err)
	}
	type waiting struct {
		id    uuid.UUID
		delay time.Duration
	}
	var ws []waiting
	for rows.Next() {
		var w waiting
		var ms int64
		if err := rows.Scan(&w.id, &ms); err != nil {
			rows.Close()
			return 0, err
		}
		w.delay = millis(ms)
		ws = append(ws, w)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	if q != nil {
		for _, w := range ws {
			if err := q.EnqueueTx(ctx, tx, ns, []store.StepRef{{TaskID: taskID, StepID: w.id, Retry: true}}, w.delay); err != nil {
				return 0, err
			}
		}
	}
	return len(ready), nil
}

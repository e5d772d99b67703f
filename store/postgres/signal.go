package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

var _ store.Signaler = (*Store)(nil)

// signalStepSQL stores the signal $3 in the checkpoint of step $2 of task $1 unless it holds one,
// and makes the step due now when it is parked (waiting_for_retry with an error record of kind
// "parked"; an ordinary retry keeps its backoff), for a step not finished.
// It returns the step, its state before, whether the signal was stored and whether it was woken,
// and what its retry timer names.
const signalStepSQL = `
		WITH old AS (
			SELECT step_id, state, coalesce(checkpoint ? '` + store.SignalKey + `', false) AS had,
			       state = 'waiting_for_retry' AND coalesce(last_error->>'kind' = 'parked', false) AS parked
			  FROM {s}.steps WHERE task_id = $1 AND name = $2
			   FOR UPDATE
		)
		UPDATE {s}.steps s
		   SET checkpoint = CASE WHEN old.had OR $4 THEN s.checkpoint
		                         ELSE jsonb_set(CASE WHEN jsonb_typeof(s.checkpoint) = 'object' THEN s.checkpoint ELSE '{}'::jsonb END,
		                                        '{` + store.SignalKey + `}', $3::jsonb) END,
		       next_retry_at = CASE WHEN old.parked THEN least(s.next_retry_at, now()) ELSE s.next_retry_at END,
		       updated_at = now()
		  FROM old
		 WHERE s.step_id = old.step_id AND s.state NOT IN ('complete', 'error', 'cancelled', 'resolved_manually')
		RETURNING s.step_id, old.state, NOT old.had AND NOT $4, old.parked, s.template_step, s.handler,
		          (SELECT t.name FROM {s}.tasks t WHERE t.task_id = s.task_id),
		          (SELECT t.version FROM {s}.tasks t WHERE t.task_id = s.task_id)`

// SignalStep implements store.Signaler in one transaction: the signal's write, the wake-up and
// its retry timer (on the store's own queue, through p.Enqueuer, which notifies the workers at
// commit).
func (s *Store) SignalStep(ctx context.Context, p store.SignalStepParams) (*store.SignalStepResult, error) {
	var res *store.SignalStepResult
	err := s.withRetry(ctx, func(tx pgx.Tx) error {
		res = &store.SignalStepResult{}
		var state string
		ref := store.StepRef{TaskID: p.TaskID, Retry: true}
		signal := string(p.Signal)
		if p.WakeOnly {
			signal = "null"
		}
		err := tx.QueryRow(ctx, s.q(signalStepSQL), p.TaskID, p.Step, signal, p.WakeOnly).Scan(
			&res.StepID, &state, &res.Stored, &res.Woken, &ref.Name, &ref.Handler, &ref.TaskName, &ref.Version)
		if errors.Is(err, pgx.ErrNoRows) {
			return s.signalRefused(ctx, tx, p)
		}
		if err != nil {
			return fmt.Errorf("signal step %q of task %s: %w", p.Step, p.TaskID, err)
		}
		res.State = statemachine.StepState(state)
		if res.Woken && p.Enqueuer != nil {
			ref.StepID = res.StepID
			if err := p.Enqueuer.EnqueueTx(ctx, tx, p.Namespace, []store.StepRef{ref}, 0); err != nil {
				return fmt.Errorf("signal step %q of task %s: wake it: %w", p.Step, p.TaskID, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// signalRefused says why signalStepSQL found no step to signal: none of that name (ErrNotFound),
// or a finished one (ErrConflict).
func (s *Store) signalRefused(ctx context.Context, tx pgx.Tx, p store.SignalStepParams) error {
	var id uuid.UUID
	var state string
	err := tx.QueryRow(ctx, s.q(`SELECT step_id, state FROM {s}.steps WHERE task_id = $1 AND name = $2`), p.TaskID, p.Step).Scan(&id, &state)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("signal step %q of task %s: %w", p.Step, p.TaskID, store.ErrNotFound)
	}
	if err != nil {
		return err
	}
	return fmt.Errorf("signal step %q of task %s: the step is %s: %w", p.Step, p.TaskID, state, store.ErrConflict)
}

package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
	"github.com/tasker-systems/tasker/store/internal/params"
)

func millis(ms int64) time.Duration { return time.Duration(ms) * time.Millisecond }

// claimSQL moves the enqueued step $1 to in_progress for worker $2 with a lease of $3 ms, records
// the start transition (with "after": $4, the step whose outcome handed it over, unless NULL) at
// the step's bumped transition_seq, and returns the step followed by that transition_seq.
const claimSQL = `
		WITH claimed AS (
			UPDATE {s}.steps
			   SET state = 'in_progress', attempts = attempts + 1, lease_owner = $2,
			       lease_expires_at = now() + $3 * interval '1 millisecond', started_at = now(), updated_at = now(),
			       transition_seq = transition_seq + 1
			 WHERE step_id = $1 AND (state = 'enqueued') IS TRUE -- stateFilter (claims.go)
			RETURNING ` + stepColumns + `, transition_seq
		), ins AS (
			INSERT INTO {s}.step_transitions (step_id, task_id, from_state, to_state, event, metadata, sort_key, created_at)
			SELECT c.step_id, c.task_id, 'enqueued', 'in_progress', 'start',
			       jsonb_build_object('worker_id', $2::text, 'attempt', c.attempts)
			       || CASE WHEN $4::text IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('after', $4::text) END,
			       c.transition_seq, clock_timestamp()
			  FROM claimed c
		)
		SELECT * FROM claimed`

// claimTaskSQL loads the task of step $1.
const claimTaskSQL = `SELECT ` + taskColumns + ` FROM {s}.tasks WHERE task_id = (SELECT task_id FROM {s}.steps WHERE step_id = $1)`

// claimNamedResultsSQL loads the results of the steps named $2 in the task of step $1.
const claimNamedResultsSQL = `SELECT name, result FROM {s}.steps
			WHERE task_id = (SELECT task_id FROM {s}.steps WHERE step_id = $1) AND name = ANY($2)
			  AND (state IN ('complete', 'resolved_manually')) IS TRUE AND result IS NOT NULL`

// claimAncestorResultsSQL loads the results of every ancestor of step $1, along the task's edges.
const claimAncestorResultsSQL = `
			WITH RECURSIVE anc(step_id) AS (
				SELECT from_step_id FROM {s}.edges WHERE to_step_id = $1
				UNION
				SELECT e.from_step_id FROM {s}.edges e JOIN anc a ON e.to_step_id = a.step_id
			)
			SELECT st.name, st.result
			  FROM anc CROSS JOIN LATERAL (SELECT name, result, state FROM {s}.steps WHERE step_id = anc.step_id OFFSET 0) st -- byKey (claims.go)
			 WHERE (st.state IN ('complete', 'resolved_manually')) IS TRUE AND st.result IS NOT NULL`

// scanResults reads name/result rows into a map.
func scanResults(rows pgx.Rows) (map[string]json.RawMessage, error) {
	defer rows.Close()
	results := map[string]json.RawMessage{}
	for rows.Next() {
		var name string
		var res json.RawMessage
		if err := rows.Scan(&name, &res); err != nil {
			return nil, err
		}
		results[name] = res
	}
	return results, rows.Err()
}

// ClaimStep moves an enqueued step to in_progress for one more attempt, with a lease, and loads
// what its handler needs, in one round trip. It returns store.ErrConflict when the step is not
// enqueued (a duplicate delivery, a cancelled task): the message should be dropped.
func (s *Store) ClaimStep(ctx context.Context, p store.ClaimStepParams) (*store.ClaimedStep, error) {
	b := &pgx.Batch{}
	b.Queue(keyedPlans) // for the batch's implicit transaction
	c := s.queueClaim(b, p.StepID, p.WorkerID, p.Lease, nil, p.Ancestors)
	var br pgx.BatchResults
	if conn := limitConn(ctx); conn != nil {
		br = conn.SendBatch(ctx, b) // under a limit's lock, on its connection (LockLimit)
	} else {
		br = s.pool.SendBatch(ctx, b)
	}
	if err := br.Close(); err != nil {
		return nil, err
	}
	if !c.found {
		return nil, fmt.Errorf("claim step %s: %w", p.StepID, store.ErrConflict)
	}
	return &c.claimed, nil
}

// claim is what queueClaim's statements fill in when their batch runs.
type claim struct {
	claimed store.ClaimedStep
	found   bool // the step was enqueued, and is now claimed
}

// queueClaim queues into b the claim of step for worker (claimSQL, with after the handing step
// for ClaimNext, or nil) and the loads its handler needs: the task and the results of ancestors
// (nil: every ancestor along the edges; empty: none, and no query).
func (s *Store) queueClaim(b *pgx.Batch, step uuid.UUID, worker string, lease time.Duration, after any, ancestors []string) *claim {
	return s.queueClaimLoading(b, step, worker, lease, after, ancestors, true)
}

// queueClaimLoading is queueClaim, loading the task only with loadTask (a caller that has its row
// fills claimed.Task itself).
func (s *Store) queueClaimLoading(b *pgx.Batch, step uuid.UUID, worker string, lease time.Duration, after any, ancestors []string, loadTask bool) *claim {
	c := &claim{claimed: store.ClaimedStep{Results: map[string]json.RawMessage{}}}
	b.Queue(s.q(claimSQL), pgID(step), worker, lease.Milliseconds(), after).QueryRow(func(row pgx.Row) error {
		var seq int32
		st, err := scanStepWith(row, &seq)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // not enqueued: c.found stays false
		}
		if err != nil {
			return fmt.Errorf("claim step %s: %w", step, err)
		}
		c.claimed.Step, c.found = *st, true
		return nil
	})
	if !loadTask {
		return c.loadResults(s, b, step, ancestors)
	}
	b.Queue(s.q(claimTaskSQL), pgID(step)).QueryRow(func(row pgx.Row) error {
		task, err := scanTask(row)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // an unknown step: not found, as above
		}
		if err != nil {
			return fmt.Errorf("claim step %s: load task: %w", step, err)
		}
		c.claimed.Task = *task
		return nil
	})
	return c.loadResults(s, b, step, ancestors)
}

// loadResults queues the load of the results of step's ancestors (ancestors as queueClaim takes
// them) into c.
func (c *claim) loadResults(s *Store, b *pgx.Batch, step uuid.UUID, ancestors []string) *claim {
	if ancestors != nil && len(ancestors) == 0 {
		return c // a root step has no results to load
	}
	var results *pgx.QueuedQuery
	if ancestors != nil {
		results = b.Queue(s.q(claimNamedResultsSQL), pgID(step), ancestors)
	} else {
		results = b.Queue(s.q(claimAncestorResultsSQL), pgID(step))
	}
	results.Query(func(rows pgx.Rows) error {
		res, err := scanResults(rows)
		if err != nil {
			return fmt.Errorf("claim step %s: load results: %w", step, err)
		}
		c.claimed.Results = res
		return nil
	})
	return c
}

// PromoteRetry moves a step whose backoff has elapsed from waiting_for_retry to enqueued and
// wakes its task. It returns store.ErrNotDue when its backoff has not elapsed, and
// store.ErrConflict when the step is not waiting or its task is blocked or finished (an operator
// fix re-sends it).
func (s *Store) PromoteRetry(ctx context.Context, p store.PromoteRetryParams) error {
	return s.withRetry(ctx, func(tx pgx.Tx) error { return s.promoteRetry(ctx, tx, p) })
}

// promoteRetry is PromoteRetry in tx. Every refusal (not found, refused by the planner, not
// waiting, not due) comes before the first write.
func (s *Store) promoteRetry(ctx context.Context, tx pgx.Tx, p store.PromoteRetryParams) error {
	var taskID uuid.UUID
	if err := tx.QueryRow(ctx, s.q(`SELECT task_id FROM {s}.steps WHERE step_id = $1`), p.StepID).Scan(&taskID); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("step %s: %w", p.StepID, store.ErrNotFound)
		}
		return err
	}
	c, err := s.lockTask(ctx, tx, taskID)
	if err != nil {
		return err
	}
	plan, err := statemachine.PlanPromote(c.TaskCounters)
	if err != nil {
		return params.Conflict(fmt.Sprintf("promote retry of %s", p.StepID), err)
	}
	var due bool
	err = tx.QueryRow(ctx, s.q(`
		SELECT next_retry_at <= now() + interval '5 milliseconds' FROM {s}.steps
		 WHERE step_id = $1 AND state = $2 FOR UPDATE`), p.StepID, string(plan.Step.From)).Scan(&due)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("promote retry of %s: %w", p.StepID, store.ErrConflict)
	}
	if err != nil {
		return err
	}
	if !due {
		return fmt.Errorf("promote retry of %s: %w", p.StepID, store.ErrNotDue)
	}
	if _, err := tx.Exec(ctx, s.q(`
		UPDATE {s}.steps SET state = $2, next_retry_at = NULL, updated_at = now()
		 WHERE step_id = $1`), p.StepID, string(plan.Step.To)); err != nil {
		return err
	}
	if err := s.writeStepTransitions(ctx, tx, taskID, []stepMove{{p.StepID, plan.Step.From}}, plan.Step.Event, plan.Step.To, plan.Meta); err != nil {
		return err
	}
	return s.settle(ctx, tx, taskID, plan.Delta, plan.Path, nil)
}

// Heartbeat extends the lease of a step its worker still holds and returns the step's state; when
// the worker no longer holds it (cancelled, rescued, or claimed since by another worker), it
// returns the current state and store.ErrConflict.
func (s *Store) Heartbeat(ctx context.Context, p store.HeartbeatParams) (statemachine.StepState, error) {
	var state statemachine.StepState
	var held bool
	err := s.pool.QueryRow(ctx, s.q(`
		WITH ext AS (
			UPDATE {s}.steps SET lease_expires_at = now() + $3 * interval '1 millisecond'
			 WHERE step_id = $1 AND (state = 'in_progress') IS TRUE AND lease_owner = $2 AND ($4 = 0 OR attempts = $4)
			RETURNING state
		)
		SELECT state, true FROM ext
		UNION ALL
		SELECT state, false FROM {s}.steps WHERE step_id = $1 AND NOT EXISTS (SELECT 1 FROM ext)`),
		p.StepID, p.WorkerID, p.Lease.Milliseconds(), p.Attempt).Scan(&state, &held)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("step %s: %w", p.StepID, store.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("heartbeat %s: %w", p.StepID, err)
	}
	return state, params.Conflict(fmt.Sprintf("heartbeat %s", p.StepID), statemachine.HeartbeatVerdict(state, held))
}

// ReleaseStep gives an in-progress step back to the queue (enqueued) without spending the attempt,
// as a graceful shutdown does for handlers it had to cut off.
func (s *Store) ReleaseStep(ctx context.Context, p store.ReleaseStepParams) error {
	return s.withRetry(ctx, func(tx pgx.Tx) error { return s.releaseStep(ctx, tx, p) })
}

// releaseStep is ReleaseStep in tx; a step not held at p's attempt is left as it is, and
// store.ErrConflict returned.
func (s *Store) releaseStep(ctx context.Context, tx pgx.Tx, p store.ReleaseStepParams) error {
	ref := store.StepRef{StepID: p.StepID}
	err := tx.QueryRow(ctx, s.q(`
		UPDATE {s}.steps st SET state = 'enqueued', attempts = st.attempts - 1, lease_owner = NULL,
		       lease_expires_at = NULL, updated_at = now()
		  FROM {s}.tasks t
		 WHERE st.step_id = $1 AND (st.state = 'in_progress') IS TRUE AND st.lease_owner = $2 AND st.attempts = $3
		   AND t.task_id = st.task_id
		RETURNING st.task_id, t.name, t.version, st.template_step, st.handler`),
		p.StepID, p.WorkerID, p.Attempt).Scan(&ref.TaskID, &ref.TaskName, &ref.Version, &ref.Name, &ref.Handler)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("release step %s: %w", p.StepID, store.ErrConflict)
	}
	if err != nil {
		return err
	}
	if err := s.writeStepTransitions(ctx, tx, ref.TaskID, []stepMove{{p.StepID, statemachine.StepInProgress}},
		statemachine.StepEventRelease, statemachine.StepEnqueued,
		map[string]any{"worker_id": p.WorkerID, "attempt": p.Attempt, "reason": p.Reason}); err != nil {
		return err
	}
	if p.Enqueuer == nil {
		return nil
	}
	if err := p.Enqueuer.EnqueueTx(ctx, tx, p.Namespace, []store.StepRef{ref}, p.Delay); err != nil {
		return fmt.Errorf("enqueue released step %s: %w", p.StepID, err)
	}
	return nil
}

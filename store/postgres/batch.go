package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/tasker/store"
	"github.com/tasker-systems/tasker/store/internal/params"
)

// This file is the rest of the batched seam (store.BatchStore); RecordOutcomes is in
// outcomes.go. recordOne is the single-step path of one outcome in a batch, which the tasks of an
// outcome with a Spawn take.

// recordOne applies one outcome under a savepoint and reports its status; an error other than
// the outcome's own conflict fails the whole batch.
func (s *Store) recordOne(ctx context.Context, tx pgx.Tx, o store.Outcome, pub *params.Publisher) (store.OutcomeRecord, error) {
	rec := store.OutcomeRecord{StepID: o.StepID}
	sp, err := tx.Begin(ctx)
	if err != nil {
		return rec, err
	}
	mark := pub.Mark()
	p := params.Single(o, pub)
	r, err := s.recordOutcome(ctx, sp, p, o.Plan, true) // the batch's own transaction
	if err == nil {
		if err := sp.Commit(ctx); err != nil {
			return rec, err
		}
		rec.Status, rec.TaskState, rec.Settled, rec.Released = store.Recorded, r.TaskState, r.Settled, r.Released
		return rec, nil
	}
	pub.Rewind(mark)
	if rbErr := sp.Rollback(ctx); rbErr != nil {
		return rec, errors.Join(err, rbErr)
	}
	rec.Status, err = params.Status(err, func() (bool, error) { return s.landed(ctx, tx, p, o) })
	return rec, err
}

// landed reports whether the step's latest transition is o itself: the same move with the same
// metadata (worker, attempt, error), as a commit whose answer was lost leaves it. A rescue of the
// same attempt writes another error, so it does not count.
func (s *Store) landed(ctx context.Context, tx pgx.Tx, p store.OutcomeParams, o store.Outcome) (bool, error) {
	_, _, meta, err := stepWrites(p, o.Plan)
	if err != nil {
		return false, err
	}
	var landed bool
	err = tx.QueryRow(ctx, s.q(`
		SELECT EXISTS (SELECT 1 FROM {s}.steps st JOIN {s}.step_transitions t ON t.step_id = st.step_id AND t.sort_key = st.transition_seq
		                WHERE st.step_id = $1 AND t.from_state = $2 AND t.to_state = $3 AND t.event = $4
		                  AND t.metadata = $5::jsonb)`),
		o.StepID, string(o.Plan.Step.From), string(o.Plan.Step.To), string(o.Plan.Step.Event), meta).Scan(&landed)
	if err != nil {
		return false, fmt.Errorf("record outcome of %s: look for its transition: %w", o.StepID, err)
	}
	return landed, nil
}

// heartbeatManySQL extends, for worker $1, the leases ($5 ms) of the steps in $2 held at their
// attempts $3 (0: any), and the visibility of their messages $4 (0: none) in the store's own
// queue; it returns every step's state and whether it was held, in $2's order.
const heartbeatManySQL = `
		WITH v AS (
			SELECT * FROM unnest($2::uuid[], $3::int[], $4::bigint[]) WITH ORDINALITY AS v(step_id, attempt, msg_id, ord)
		), ext AS (
			UPDATE {s}.steps s SET lease_expires_at = now() + $5 * interval '1 millisecond'
			  FROM v
			 WHERE s.step_id = v.step_id AND s.state = 'in_progress' AND s.lease_owner = $1
			   AND (v.attempt = 0 OR s.attempts = v.attempt)
			RETURNING s.step_id, s.attempts
		), held AS (
			-- ext is looked up hashed (IN): a CTE joined to a CTE is a nested loop reading the
			-- inner one again for every outer row, quadratic in the batch.
			SELECT v.*, CASE WHEN v.attempt = 0 THEN v.step_id IN (SELECT step_id FROM ext)
			                 ELSE (v.step_id, v.attempt) IN (SELECT step_id, attempts FROM ext) END AS held
			  FROM v
		), msg AS (
			UPDATE {s}.queue_messages q SET vt = now() + $5 * interval '1 millisecond'
			  FROM held h WHERE h.held AND h.msg_id <> 0 AND q.msg_id = h.msg_id
		)
		SELECT h.step_id, coalesce(s.state, ''), h.held
		  FROM held h LEFT JOIN {s}.steps s USING (step_id)
		 ORDER BY h.ord`

// HeartbeatMany extends the held leases (and their messages' visibility) in one statement.
func (s *Store) HeartbeatMany(ctx context.Context, p store.HeartbeatManyParams) ([]store.HeartbeatRecord, error) {
	if len(p.Steps) == 0 {
		return nil, nil
	}
	ids := make([]uuid.UUID, len(p.Steps))
	attempts := make([]int32, len(p.Steps))
	msgs := make([]int64, len(p.Steps))
	for i, st := range p.Steps {
		ids[i], attempts[i], msgs[i] = st.StepID, int32(st.Attempt), st.MessageID
	}
	rows, err := s.pool.Query(ctx, s.q(heartbeatManySQL), p.WorkerID, ids, attempts, msgs, p.Lease.Milliseconds())
	if err != nil {
		return nil, fmt.Errorf("heartbeat %d steps: %w", len(p.Steps), err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.HeartbeatRecord, error) {
		var r store.HeartbeatRecord
		err := row.Scan(&r.StepID, &r.State, &r.Held)
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("heartbeat %d steps: %w", len(p.Steps), err)
	}
	return out, nil
}

// ReleaseSteps gives the steps back in one transaction, each with ReleaseStep's statements; a step
// no longer held fails its compare-and-set before it writes anything, so it needs no savepoint.
func (s *Store) ReleaseSteps(ctx context.Context, p store.ReleaseStepsParams) ([]store.ReleaseRecord, error) {
	if len(p.Steps) == 0 {
		return nil, nil
	}
	var out []store.ReleaseRecord
	err := s.withRetry(ctx, func(tx pgx.Tx) error {
		var err error
		out, err = params.ReleaseEach(p, func(r store.ReleaseStepParams) error { return s.releaseStep(ctx, tx, r) })
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// PromoteRetries promotes the steps in one transaction, with PromoteRetry's statements for each,
// after locking their tasks in task_id order (no deadlock between two promoters); a refused step
// is refused before anything of it is written, so it needs no savepoint.
func (s *Store) PromoteRetries(ctx context.Context, p store.PromoteRetriesParams) ([]store.PromoteRecord, error) {
	if len(p.Steps) == 0 {
		return nil, nil
	}
	var out []store.PromoteRecord
	err := s.withRetry(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, s.q(`
			SELECT 1 FROM {s}.tasks WHERE task_id IN (SELECT task_id FROM {s}.steps WHERE step_id = ANY($1))
			 ORDER BY task_id FOR NO KEY UPDATE`), p.Steps); err != nil {
			return fmt.Errorf("promote retries: lock tasks: %w", err)
		}
		out = make([]store.PromoteRecord, len(p.Steps))
		for i, id := range p.Steps {
			err := s.promoteRetry(ctx, tx, store.PromoteRetryParams{StepID: id})
			if err != nil && !params.PromoteRefused(err) {
				return err
			}
			out[i] = store.PromoteRecord{StepID: id, Err: err}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

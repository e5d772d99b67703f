package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
	"github.com/tasker-systems/tasker/store/internal/params"
)

// RecordOutcome records an attempt's outcome with a compare-and-set on the attempt the worker
// holds, releases and enqueues the dependents it makes ready, updates the task's counters and
// settles the task, all in one transaction (with p.BeforeCommit, e.g. the message's ack). It
// returns store.ErrConflict when the worker no longer holds the step (cancelled, rescued).
func (s *Store) RecordOutcome(ctx context.Context, p store.OutcomeParams) (*store.OutcomeResult, error) {
	if be, ok := p.Enqueuer.(store.BatchEnqueuer); ok && p.Spawn == nil && p.BeforeCommit == nil {
		if can, _ := be.EnqueueBatch(&pgx.Batch{}, p.Namespace, nil, 0); can {
			var res *store.OutcomeResult
			var err error
			for i := 0; i < 5; i++ {
				res, err = s.recordOutcomePipelined(ctx, p, be)
				if err == nil || !retryable(err) {
					break
				}
			}
			return res, unstorable(err)
		}
	}
	var res *store.OutcomeResult
	plan, err := statemachine.PlanOutcome(params.Attempt(p))
	if err != nil {
		return nil, err
	}
	s.shapes.forget(p.TaskID) // this path does not follow the counters (speculate.go)
	err = s.withRetry(ctx, func(tx pgx.Tx) error {
		var err error
		res, err = s.recordOutcome(ctx, tx, p, plan, true)
		return err
	})
	return res, unstorable(err)
}

// unstorable marks the errors with which PostgreSQL refuses an outcome's data for good (classes 22,
// data exception, and 54, program limit exceeded, such as an index row too large) as
// store.ErrUnstorable. A division by zero is not one: it is how the batch statements' row-count
// checks fail (enqueueTransitionsCheckedSQL, settleTasksSQL), which no outcome's data causes.
func unstorable(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code != pgDivisionByZero && (strings.HasPrefix(pgErr.Code, "22") || strings.HasPrefix(pgErr.Code, "54")) {
		return fmt.Errorf("%w: %w", store.ErrUnstorable, err)
	}
	return err
}

// pgDivisionByZero is PostgreSQL's division_by_zero.
const pgDivisionByZero = "22012"

// recordOutcome pipelines its statements: batch A locks the task, moves the step, records its
// transition and releases its children; batch B records the children's enqueueing and updates the
// task's counters; then the queue send, the task's settling (only when its state changes) and the
// commit. A success in a chain costs five round trips. plan is p's, from the planner.
//
// With keyed (a transaction of the store's own), its statements run under keyedPlans, as on the
// pipelined path, so that a connection's cached plans of them are the keyed ones whichever path
// planned them first; the spawning of new steps, which joins sets of thousands of rows, runs under
// the database's own settings (defaultPlans) and the settings come back after it. Not in a
// caller's transaction (RecordOutcomeTx), whose settings stay the caller's.
func (s *Store) recordOutcome(ctx context.Context, tx pgx.Tx, p store.OutcomeParams, plan statemachine.OutcomePlan, keyed bool) (*store.OutcomeResult, error) {
	result, lastErr, metaJSON, err := stepWrites(p, plan)
	if err != nil {
		return nil, err
	}
	a := &pgx.Batch{}
	if keyed {
		a.Queue(keyedPlans)
	}
	s.queueOutcomeStep(a, p, plan, result, lastErr, metaJSON)
	pipelineRelease := plan.ReleasesChildren && p.Spawn == nil
	if pipelineRelease {
		a.Queue(s.q(s.releaseSQL), pgID(p.StepID), nil)
	}
	br := tx.SendBatch(ctx, a)
	if keyed {
		if _, err := br.Exec(); err != nil {
			br.Close()
			return nil, fmt.Errorf("record outcome of %s: %w", p.StepID, err)
		}
	}
	before, st, err := scanOutcomeStep(br, p)
	if err != nil {
		br.Close()
		return nil, err
	}
	var ready []released
	if pipelineRelease {
		if ready, err = scanReleased(br); err != nil {
			br.Close()
			return nil, fmt.Errorf("release children of %s: %w", p.StepID, err)
		}
	}
	if err := br.Close(); err != nil {
		return nil, err
	}
	spawned := 0
	if plan.ReleasesChildren && p.Spawn != nil {
		if keyed {
			if _, err := tx.Exec(ctx, defaultPlans); err != nil {
				return nil, err
			}
		}
		if spawned, err = s.spawn(ctx, tx, p.TaskID, p.StepID, p.Spawn); err != nil {
			return nil, err
		}
		if keyed {
			if _, err := tx.Exec(ctx, keyedPlans); err != nil {
				return nil, err
			}
		}
		rows, err := tx.Query(ctx, s.q(s.releaseSQL), p.StepID, nil)
		if err != nil {
			return nil, fmt.Errorf("release children of %s: %w", p.StepID, err)
		}
		if ready, err = scanReleasedRows(rows); err != nil {
			return nil, fmt.Errorf("release children of %s: %w", p.StepID, err)
		}
	}
	if plan.UnholdsSibling(st.batchGroup != nil) {
		next, err := s.unholdNext(ctx, tx, *st.batchGroup)
		if err != nil {
			return nil, err
		}
		ready = append(ready, next...)
	}
	eff, err := plan.Apply(p.StepID.String(), before.TaskCounters, spawned, len(ready))
	if err != nil {
		return nil, fmt.Errorf("settle task %s: %w", p.TaskID, err)
	}
	if !eff.EnqueueReleased && len(ready) > 0 {
		if _, err := tx.Exec(ctx, s.q(demoteSQL), releasedIDs(ready)); err != nil {
			return nil, err
		}
		ready = nil
	}

	// Batch B.
	if err := s.writeStepTransitionsAndCounters(ctx, tx, p.TaskID, releasedIDs(ready), eff.Delta); err != nil {
		return nil, err
	}
	if p.Enqueuer != nil {
		if len(ready) > 0 {
			if err := p.Enqueuer.EnqueueTx(ctx, tx, p.Namespace, readyRefs(p.TaskID, before, ready), -p.PriorityCredit); err != nil {
				return nil, fmt.Errorf("enqueue ready steps: %w", err)
			}
		}
		if eff.EnqueueRetry {
			if err := p.Enqueuer.EnqueueTx(ctx, tx, p.Namespace, st.retryRef(p, before), p.RetryDelay); err != nil {
				return nil, fmt.Errorf("enqueue retry of %s: %w", p.StepID, err)
			}
		}
	}
	if err := s.moveTask(ctx, tx, p.TaskID, eff.Path, eff.TaskMeta); err != nil {
		return nil, err
	}
	if p.BeforeCommit != nil {
		if err := p.BeforeCommit(ctx, tx); err != nil {
			return nil, err
		}
	}
	return &store.OutcomeResult{TaskID: p.TaskID, TaskState: eff.State, Released: eff.Released, Settled: eff.Settled}, nil
}

// demoteSQL puts the released steps $1 back in pending: their task cannot run, and an operator's
// fix re-arms them. The release bumped their transition_seq for an enqueue transition that is now
// not written, so the bump is taken back.
const demoteSQL = `UPDATE {s}.steps SET state = 'pending', transition_seq = transition_seq - 1 WHERE step_id = ANY($1) AND (state = 'enqueued') IS TRUE`

// outcomeStepSQL moves step $1 from in_progress for worker $2's attempt $3 (and, with $8, an
// expired lease) to $4 with its result $5 or error $6 (a retry after $7 ms), and records its
// transition ($9 event, $10 metadata, $11 from) at the sort key its row's bump gives: no
// transition is written unless the compare-and-set moved the step.
const outcomeStepSQL = `
		WITH st AS (
			UPDATE {s}.steps
			   SET state = $4::text, result = coalesce($5, result), last_error = coalesce($6, last_error),
			       next_retry_at = CASE WHEN $4 = 'waiting_for_retry' THEN now() + $7 * interval '1 millisecond' END,
			       lease_owner = NULL, lease_expires_at = NULL, updated_at = now(),
			       completed_at = CASE WHEN $4 = 'complete' THEN now() ELSE completed_at END,
			       transition_seq = transition_seq + 1
			 WHERE step_id = $1 AND (state = 'in_progress') IS TRUE AND lease_owner = $2 AND attempts = $3 -- stateFilter (claims.go)
			   AND (NOT $8 OR lease_expires_at < now())
			RETURNING task_id, transition_seq, template_step, handler, batch_group
		), tr AS (
			INSERT INTO {s}.step_transitions (step_id, task_id, from_state, to_state, event, metadata, sort_key, created_at)
			SELECT $1, task_id, $11, $4, $9, $10, transition_seq, clock_timestamp() FROM st
		)
		SELECT template_step, handler, batch_group FROM st`

// stepMovedCheckedSQL is outcomeStepSQL that fails (a division by zero) unless it moved the step.
var stepMovedCheckedSQL = strings.Replace(outcomeStepSQL, "SELECT template_step, handler, batch_group FROM st",
	"SELECT 1 / (SELECT count(*)::int FROM st)", 1)

// queueOutcomeStep adds to b the statements that lock the task, and move the step with a
// compare-and-set on the attempt its worker holds and record its transition; scanOutcomeStep
// reads their results.
func (s *Store) queueOutcomeStep(b *pgx.Batch, p store.OutcomeParams, plan statemachine.OutcomePlan, result, lastErr any, metaJSON []byte) {
	b.Queue(s.q(`SELECT `+counterColumns+` FROM {s}.tasks WHERE task_id = $1 FOR NO KEY UPDATE`), pgID(p.TaskID))
	// The step's transition goes in the same statement, at the sort key its row's bump gives: no
	// transition is written unless the compare-and-set moved the step.
	b.Queue(s.q(outcomeStepSQL),
		pgID(p.StepID), p.WorkerID, p.Attempt, string(plan.Step.To), result, lastErr, p.RetryDelay.Milliseconds(), p.LeaseExpired,
		string(plan.Step.Event), metaJSON, string(plan.Step.From))
}

// outcomeStepRow is what the outcome's step update returns.
type outcomeStepRow struct {
	templateStep, handler string
	batchGroup            *uuid.UUID
}

// retryRef is the message of the step's retry.
func (st outcomeStepRow) retryRef(p store.OutcomeParams, before counters) []store.StepRef {
	return []store.StepRef{{TaskID: p.TaskID, StepID: p.StepID, Retry: true, TaskName: before.name, Version: before.version, Name: st.templateStep, Handler: st.handler}}
}

// scanOutcomeStep reads the results of queueOutcomeStep's statements: the task's counters before
// the outcome, and the step. It does not close br.
func scanOutcomeStep(br pgx.BatchResults, p store.OutcomeParams) (counters, outcomeStepRow, error) {
	var before counters
	var st outcomeStepRow
	err := br.QueryRow().Scan(before.dest()...)
	if errors.Is(err, pgx.ErrNoRows) {
		return before, st, fmt.Errorf("task %s: %w", p.TaskID, store.ErrNotFound)
	}
	if err != nil {
		return before, st, fmt.Errorf("record outcome of %s: lock task: %w", p.StepID, err)
	}
	err = br.QueryRow().Scan(&st.templateStep, &st.handler, &st.batchGroup)
	if errors.Is(err, pgx.ErrNoRows) {
		return before, st, fmt.Errorf("record outcome of %s attempt %d: %w", p.StepID, p.Attempt, store.ErrConflict)
	}
	if err != nil {
		return before, st, fmt.Errorf("record outcome of %s: %w", p.StepID, err)
	}
	return before, st, nil
}

// readyRefs are the messages of the released steps.
func readyRefs(taskID uuid.UUID, before counters, ready []released) []store.StepRef {
	refs := make([]store.StepRef, len(ready))
	for i, r := range ready {
		refs[i] = store.StepRef{TaskID: taskID, StepID: r.id, TaskName: before.name, Version: before.version, Name: r.name, Handler: r.handler}
	}
	return refs
}

// writeStepTransitionsAndCounters records pending → enqueued for the released steps and applies
// the planned change to the counters, in one round trip.
func (s *Store) writeStepTransitionsAndCounters(ctx context.Context, tx pgx.Tx, taskID uuid.UUID, ready []uuid.UUID, d statemachine.CounterDelta) error {
	b := &pgx.Batch{}
	if len(ready) > 0 {
		b.Queue(s.q(enqueueTransitionsSQL), pgIDs(ready))
	}
	s.queueAddCounters(b, taskID, d)
	br := tx.SendBatch(ctx, b)
	if len(ready) > 0 {
		tag, err := br.Exec()
		if err == nil && int(tag.RowsAffected()) != len(ready) {
			err = fmt.Errorf("wrote %d of %d", tag.RowsAffected(), len(ready))
		}
		if err != nil {
			br.Close()
			return fmt.Errorf("record enqueue transitions: %w", err)
		}
	}
	if _, err := br.Exec(); err != nil {
		br.Close()
		return fmt.Errorf("update task counters: %w", err)
	}
	return br.Close()
}

// enqueueTransitionsSQL records pending → enqueued for the steps in $1, which a release (or an
// unhold, or a re-arm) moved to enqueued in this transaction and whose transition_seq it bumped:
// each transition takes its step's transition_seq as its sort key. A step no longer enqueued is
// not written, which the callers' row counts catch.
const enqueueTransitionsSQL = `
		INSERT INTO {s}.step_transitions (step_id, task_id, from_state, to_state, event, sort_key, created_at)
		SELECT step_id, task_id, 'pending', 'enqueued', 'enqueue', transition_seq, clock_timestamp()
		  FROM {s}.steps WHERE step_id = ANY($1) AND (state = 'enqueued') IS TRUE -- stateFilter (claims.go)
		`

// enqueueTransitionsCheckedSQL is enqueueTransitionsSQL for a pipelined batch whose COMMIT is sent
// with it: it fails on the server (a division by zero) unless it wrote $2 rows, so that the
// transaction rolls back, where a check in the client would come after the commit.
const enqueueTransitionsCheckedSQL = `
		WITH ins AS (` + enqueueTransitionsSQL + `
			RETURNING 1
		)
		SELECT 1 / (CASE WHEN (SELECT count(*) FROM ins) = $2 THEN 1 ELSE 0 END)`

// releaseChildrenSQL counts the finished step $1 off each child's unfinished parents and moves the
// children that become ready (statemachine.JoinReady) to enqueued (unless $2 is false), returning
// every child with whether it became ready. One row per child: a join costs O(1) per parent.
const releaseChildrenSQL = `
		UPDATE {s}.steps c
		   SET parents_unfinished = c.parents_unfinished - 1,
		       state = CASE WHEN c.parents_unfinished = 1 AND c.state = 'pending' AND NOT c.held
		                         AND coalesce($2::bool, true)
		                    THEN 'enqueued' ELSE c.state END,
		       -- the enqueue transition's place (enqueueTransitionsSQL), taken back by demoteSQL
		       transition_seq = CASE WHEN c.parents_unfinished = 1 AND c.state = 'pending' AND NOT c.held
		                                  AND coalesce($2::bool, true)
		                             THEN c.transition_seq + 1 ELSE c.transition_seq END,
		       updated_at = now()
		  FROM {s}.edges e
		 WHERE e.from_step_id = $1 AND c.step_id = e.to_step_id
		RETURNING c.step_id, c.state = 'enqueued' AND c.parents_unfinished = 0, c.template_step, c.handler`

// released is a child made ready by its last parent.
type released struct {
	id      uuid.UUID
	name    string // the template step
	handler string
}

func releasedIDs(rs []released) []uuid.UUID {
	ids := make([]uuid.UUID, len(rs))
	for i, r := range rs {
		ids[i] = r.id
	}
	return ids
}

func scanReleasedRows(rows pgx.Rows) ([]released, error) {
	defer rows.Close()
	var ready []released
	for rows.Next() {
		var r released
		var now bool
		if err := rows.Scan(&r.id, &now, &r.name, &r.handler); err != nil {
			return nil, err
		}
		if now {
			ready = append(ready, r)
		}
	}
	return ready, rows.Err()
}

func scanReleased(br pgx.BatchResults) ([]released, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	return scanReleasedRows(rows)
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
	rows, err := tx.Query(ctx, s.q(s.releaseSQL), stepID, canEnqueue)
	if err != nil {
		return 0, fmt.Errorf("release children of %s: %w", stepID, err)
	}
	ready, err := scanReleasedRows(rows)
	if err != nil {
		return 0, fmt.Errorf("release children of %s: %w", stepID, err)
	}
	return len(ready), s.enqueuePending(ctx, tx, taskID, ns, ready, q)
}

// enqueuePending records pending → enqueued for steps already set to enqueued, with their
// transition_seq bumped (releaseChildrenSQL, unholdNext, rearm), and sends them.
func (s *Store) enqueuePending(ctx context.Context, tx pgx.Tx, taskID uuid.UUID, ns string, ready []released, q store.Enqueuer) error {
	if len(ready) == 0 {
		return nil
	}
	refs := make([]store.StepRef, len(ready))
	for i, r := range ready {
		refs[i] = store.StepRef{TaskID: taskID, StepID: r.id, Name: r.name, Handler: r.handler}
	}
	tag, err := tx.Exec(ctx, s.q(enqueueTransitionsSQL), releasedIDs(ready))
	if err != nil {
		return fmt.Errorf("record enqueue transitions: %w", err)
	}
	if int(tag.RowsAffected()) != len(ready) {
		return fmt.Errorf("record enqueue transitions: wrote %d of %d", tag.RowsAffected(), len(ready))
	}
	if q == nil {
		return nil
	}
	if err := q.EnqueueTx(ctx, tx, ns, refs, 0); err != nil {
		return fmt.Errorf("enqueue ready steps: %w", err)
	}
	return nil
}

// unholdNext lets the first held worker of a batch go (enqueued if its parents are done), as a
// sibling frees its slot. It returns the worker when it became ready.
func (s *Store) unholdNext(ctx context.Context, tx querier, group uuid.UUID) ([]released, error) {
	rows, err := tx.Query(ctx, s.q(`
		UPDATE {s}.steps
		   SET held = false,
		       state = CASE WHEN parents_unfinished = 0 AND state = 'pending' THEN 'enqueued' ELSE state END, -- statemachine.JoinReady
		       transition_seq = CASE WHEN parents_unfinished = 0 AND state = 'pending' THEN transition_seq + 1 ELSE transition_seq END,
		       updated_at = now()
		 WHERE step_id = (SELECT step_id FROM {s}.steps WHERE batch_group = $1 AND held ORDER BY name LIMIT 1)
		RETURNING step_id, state = 'enqueued', template_step, handler`), group)
	if err != nil {
		return nil, fmt.Errorf("release a held batch worker: %w", err)
	}
	next, err := scanReleasedRows(rows)
	if err != nil {
		return nil, fmt.Errorf("release a held batch worker: %w", err)
	}
	return next, nil
}

// planOutcome plans the step's side of an outcome, with its result or error and its transition's
// metadata as the statements take them.
func planOutcome(p store.OutcomeParams) (plan statemachine.OutcomePlan, result, lastErr any, meta []byte, err error) {
	if plan, err = statemachine.PlanOutcome(params.Attempt(p)); err != nil {
		return plan, nil, nil, nil, err
	}
	result, lastErr, meta, err = stepWrites(p, plan)
	return plan, result, lastErr, meta, err
}

// stepWrites returns what plan writes on p's step: its result or error, and its transition's
// metadata, as the statements take them.
func stepWrites(p store.OutcomeParams, plan statemachine.OutcomePlan) (result, lastErr any, meta []byte, err error) {
	if plan.KeepsResult {
		result = rawOrNull(p.Result)
	} else {
		lastErr = rawOrNull(p.Error)
	}
	meta, err = json.Marshal(plan.Meta)
	return result, lastErr, meta, err
}

// recordOutcomePipelined is the hot path: the whole outcome in two round trips on one
// connection. The first batch opens the transaction, locks the task, moves the step, records its
// transition and releases its children; the second records the children's enqueueing, updates the
// counters, sends the queue messages, settles the task when its state changes, and commits.
func (s *Store) recordOutcomePipelined(ctx context.Context, p store.OutcomeParams, be store.BatchEnqueuer) (*store.OutcomeResult, error) {
	plan, result, lastErr, metaJSON, err := planOutcome(p)
	if err != nil {
		return nil, err
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("record outcome of %s: %w", p.StepID, err)
	}
	defer conn.Release()
	if res, ok, err := s.recordOutcomeOneTrip(ctx, conn, p, be, plan, result, lastErr, metaJSON); err != nil || ok {
		return res, err // speculate.go
	}
	open := false
	fail := func(err error) (*store.OutcomeResult, error) {
		if open {
			_, _ = conn.Exec(context.WithoutCancel(ctx), "ROLLBACK")
		}
		return nil, err
	}

	a := &pgx.Batch{}
	a.Queue("BEGIN")
	a.Queue(keyedPlans)
	s.queueOutcomeStep(a, p, plan, result, lastErr, metaJSON)
	if plan.ReleasesChildren {
		a.Queue(s.q(s.releaseSQL), pgID(p.StepID), nil)
	}
	br := conn.SendBatch(ctx, a)
	if _, err := br.Exec(); err != nil {
		br.Close()
		return fail(fmt.Errorf("record outcome of %s: begin: %w", p.StepID, err))
	}
	open = true
	if _, err := br.Exec(); err != nil {
		br.Close()
		return fail(fmt.Errorf("record outcome of %s: %w", p.StepID, err))
	}
	before, st, err := scanOutcomeStep(br, p)
	if err != nil {
		br.Close()
		return fail(err)
	}
	var ready []released
	if plan.ReleasesChildren {
		if ready, err = scanReleased(br); err != nil {
			br.Close()
			return fail(fmt.Errorf("release children of %s: %w", p.StepID, err))
		}
	}
	if err := br.Close(); err != nil {
		return fail(err)
	}
	if plan.UnholdsSibling(st.batchGroup != nil) {
		next, err := s.unholdNext(ctx, conn, *st.batchGroup)
		if err != nil {
			return fail(err)
		}
		ready = append(ready, next...)
	}
	eff, err := plan.Apply(p.StepID.String(), before.TaskCounters, 0, len(ready))
	if err != nil {
		return fail(fmt.Errorf("settle task %s: %w", p.TaskID, err))
	}
	if !eff.EnqueueReleased && len(ready) > 0 {
		if _, err := conn.Exec(ctx, s.q(demoteSQL), releasedIDs(ready)); err != nil {
			return fail(err)
		}
		ready = nil
	}

	b := &pgx.Batch{}
	next, err := s.queueOutcomeEffects(b, p, be, before, st, ready, eff, false)
	if err != nil {
		return fail(err)
	}
	b.Queue("COMMIT")
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return fail(fmt.Errorf("record outcome of %s: %w", p.StepID, err))
	}
	s.shapes.wrote(p.TaskID, before, eff)
	return outcomeResult(p, eff, next), nil
}

// outcomeResult is what a committed pipelined outcome reports.
func outcomeResult(p store.OutcomeParams, eff statemachine.OutcomeEffects, next *claimNext) *store.OutcomeResult {
	res := &store.OutcomeResult{TaskID: p.TaskID, TaskState: eff.State, Released: eff.Released,
		Settled: eff.Settled, Acked: p.AckBatch != nil}
	if next != nil && next.found {
		res.Next = &store.NextStep{ClaimedStep: next.claimed, MessageID: next.messageID}
	}
	return res
}

// queueOutcomeEffects queues into b what an outcome does once its step moved and its children
// were released, as eff (planned from the counters before) says: the released steps' enqueue
// transitions, the claim of one of them for the worker (ClaimNext) and the messages of the
// others, the counters, the retry's timer, the task's path and the ack. The caller adds the
// COMMIT. With settled, the task's row already holds its counters and state (settleCheckedSQL):
// only the path's transitions are written.
func (s *Store) queueOutcomeEffects(b *pgx.Batch, p store.OutcomeParams, be store.BatchEnqueuer, before counters, st outcomeStepRow,
	ready []released, eff statemachine.OutcomeEffects, settled bool) (*claimNext, error) {
	var next *claimNext
	var err error
	if len(ready) > 0 {
		b.Queue(s.q(enqueueTransitionsCheckedSQL), pgIDs(releasedIDs(ready)), len(ready))
		refs := readyRefs(p.TaskID, before, ready)
		if p.ClaimNext != nil && p.Kind == store.OutcomeSuccess {
			for i, ref := range refs {
				if p.ClaimNext.Accept != nil && !p.ClaimNext.Accept(p.Namespace, ref) {
					continue
				}
				if next, err = s.queueClaimNext(b, p, ref); err != nil {
					return nil, err
				}
				if next != nil {
					refs = append(refs[:i:i], refs[i+1:]...)
				}
				break
			}
		}
		if len(refs) > 0 {
			if _, err := be.EnqueueBatch(b, p.Namespace, refs, -p.PriorityCredit); err != nil {
				return nil, fmt.Errorf("enqueue ready steps: %w", err)
			}
		}
	}
	if !settled {
		s.queueAddCounters(b, p.TaskID, eff.Delta)
	}
	if eff.EnqueueRetry {
		if _, err := be.EnqueueBatch(b, p.Namespace, st.retryRef(p, before), p.RetryDelay); err != nil {
			return nil, fmt.Errorf("enqueue retry of %s: %w", p.StepID, err)
		}
	}
	switch {
	case len(eff.Path) > 0 && settled:
		meta, err := pathMeta(eff.TaskMeta)
		if err != nil {
			return nil, err
		}
		froms, tos, events := pathColumns(eff.Path)
		b.Queue(s.q(pathTransitionsSQL), pgID(p.TaskID), froms, tos, events, meta).Exec(func(tag pgconn.CommandTag) error {
			if int(tag.RowsAffected()) != len(eff.Path) {
				return fmt.Errorf("move task %s: wrote %d of %d transitions", p.TaskID, tag.RowsAffected(), len(eff.Path))
			}
			return nil
		})
	case len(eff.Path) > 0:
		if err := s.queueMoveTask(b, p.TaskID, eff.Path, eff.TaskMeta); err != nil {
			return nil, err
		}
	}
	if p.AckBatch != nil {
		if err := p.AckBatch(b); err != nil {
			return nil, fmt.Errorf("ack the message of %s: %w", p.StepID, err)
		}
	}
	return next, nil
}

// claimNext is the step queueClaimNext claims, and its held message, once the batch has run.
type claimNext struct {
	*claim
	messageID int64
}

// queueClaimNext queues into b, after the enqueue transitions of the released steps, the held
// message of ref and its claim for p.WorkerID (queueClaim), so that the worker runs it next. It
// returns nil when the queue cannot hold a message.
func (s *Store) queueClaimNext(b *pgx.Batch, p store.OutcomeParams, ref store.StepRef) (*claimNext, error) {
	next := &claimNext{}
	ok, err := p.ClaimNext.Hold(b, p.Namespace, ref, p.ClaimNext.Lease, &next.messageID)
	if err != nil {
		return nil, fmt.Errorf("hold the message of %s: %w", ref.StepID, err)
	}
	if !ok {
		return nil, nil
	}
	var ancestors []string
	if p.ClaimNext.Ancestors != nil {
		ancestors = p.ClaimNext.Ancestors(p.Namespace, ref)
	}
	// The step was enqueued in this transaction, so the claim finds it; were it not to, its held
	// message would surface after the lease.
	next.claim = s.queueClaim(b, ref.StepID, p.WorkerID, p.ClaimNext.Lease, p.StepID.String(), ancestors)
	return next, nil
}

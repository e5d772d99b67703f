package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
	"github.com/tasker-systems/tasker/store/internal/params"
)

// This file is the set-based RecordOutcomes (docs/design/engine-v2.md §3.3): any number of
// outcomes of any number of tasks in two pipelined round trips.
//
// Trip 1 opens the transaction, locks the tasks in task_id order and runs moveStepsSQL: each
// step's compare-and-set on the attempt its worker holds, its transition, and the release of its
// children, aggregated per child so that a join whose parents finish in the same batch is released
// once. Between the trips, Go folds each task's outcomes through their plans (OutcomePlan.Apply),
// in batch order, from the counters read under the lock. Trip 2 writes the released steps'
// transitions, each task's counters (as deltas, with a compare-and-set on the state read under
// the lock) and its transitions, the messages when the store owns the queue, the hand-overs, the
// acks, and commits. The statements that write many rows check their counts on the server (a
// division by zero), so that a mismatch rolls back before the COMMIT that rides in the same trip.
//
// Two kinds of outcome take more trips. A batch worker's outcome that frees its batch slot lets
// a held sibling go (unholdSQL, one statement per such outcome, in one more trip). The tasks of
// an outcome with a Spawn, or of a batch naming a step twice, take the single-step path
// (recordOne, as before the set-based SQL) in the same transaction, which then opens and commits
// on trips of their own.

// moveStepsSQL moves the batch's steps: $1 ord (index in the batch), $2 step, $3 task, $4 worker,
// $5 attempt, $6 from, $7 to, $8 event, $9 result, $10 error, $11 transition metadata, $12 retry
// delay (ms), $13 lease expired (the rescuer), $14 releases children. A moved step's transition
// takes the sort key its row's transition_seq bump gives, in the same statement. {release} is releaseCTE (or
// the broken release of a test). It returns a row per moved step ('moved', with the number of
// transitions written), per child the release touched ('released', whether it became ready, and
// the ords of its parents in the batch), and per outcome that did not move its step ('missed',
// whether the step's latest transition is that very outcome: a commit whose answer was lost).
const moveStepsSQL = `
		WITH v AS (
			SELECT * FROM unnest($1::int[], $2::uuid[], $3::uuid[], $4::text[], $5::int[], $6::text[], $7::text[],
			                     $8::text[], $9::jsonb[], $10::jsonb[], $11::jsonb[], $12::bigint[], $13::bool[], $14::bool[])
			         AS v(ord, step_id, task_id, worker, attempt, from_state, to_state, event, result, last_error, meta,
			              retry_ms, lease_expired, releases)
		), moved AS (
			UPDATE {s}.steps s
			   SET state = v.to_state, result = coalesce(v.result, s.result), last_error = coalesce(v.last_error, s.last_error),
			       next_retry_at = CASE WHEN v.to_state = 'waiting_for_retry' THEN now() + v.retry_ms * interval '1 millisecond' END,
			       lease_owner = NULL, lease_expires_at = NULL, updated_at = now(),
			       completed_at = CASE WHEN v.to_state = 'complete' THEN now() ELSE s.completed_at END,
			       transition_seq = s.transition_seq + 1
			  FROM v
			 WHERE s.step_id = v.step_id AND s.task_id = v.task_id AND s.state = v.from_state AND s.lease_owner = v.worker
			   AND s.attempts = v.attempt AND (NOT v.lease_expired OR s.lease_expires_at < now())
			RETURNING v.ord, s.step_id, s.task_id, s.template_step, s.handler, s.batch_group, v.from_state, v.to_state,
			          v.event, v.meta, v.releases, s.transition_seq
		), tr AS (
			INSERT INTO {s}.step_transitions (step_id, task_id, from_state, to_state, event, metadata, sort_key, created_at)
			SELECT m.step_id, m.task_id, m.from_state, m.to_state, m.event, m.meta, m.transition_seq, clock_timestamp()
			  FROM moved m
			RETURNING 1
		), {release}
		SELECT 'moved', m.ord, m.step_id, m.template_step, m.handler, m.batch_group, NULL::int[], true, (SELECT count(*) FROM tr)::int
		  FROM moved m
		UNION ALL
		SELECT 'released', NULL, r.step_id, r.template_step, r.handler, NULL, r.parents, r.ready, 0 FROM rel r
		UNION ALL
		SELECT 'missed', v.ord, v.step_id, NULL, NULL, NULL, NULL::int[],
		       -- a scalar subquery, not EXISTS, which the planner may turn into a hash of every step
		       coalesce((SELECT true FROM {s}.steps cur JOIN {s}.step_transitions t ON t.step_id = cur.step_id AND t.sort_key = cur.transition_seq
		                  WHERE cur.step_id = v.step_id AND t.from_state = v.from_state
		                    AND t.to_state = v.to_state AND t.event = v.event AND t.metadata = v.meta LIMIT 1), false), 0
		  FROM v WHERE v.ord NOT IN (SELECT m.ord FROM moved m) -- hashed: a CTE joined to a CTE is a quadratic nested loop here`

// releaseCTE counts the moved steps that release their children off each child's unfinished
// parents, all of a child's parents in the batch at once (GROUP BY: one row per child, so that a
// join two of whose parents finish in the batch is counted down by two and enqueued once), and
// enqueues the children that become ready (statemachine.JoinReady). rel returns every child
// touched, whether it became ready, and the ords of its parents in the batch.
const releaseCTE = `done AS (
			SELECT e.to_step_id AS child, count(*)::int AS n, array_agg(m.ord) AS parents
			  FROM {s}.edges e JOIN moved m ON e.from_step_id = m.step_id
			 WHERE m.releases
			 GROUP BY e.to_step_id
		), rel AS (
			UPDATE {s}.steps c
			   SET parents_unfinished = c.parents_unfinished - d.n,
			       -- statemachine.JoinReady
			       state = CASE WHEN c.parents_unfinished = d.n AND c.state = 'pending' AND NOT c.held
			                    THEN 'enqueued' ELSE c.state END,
			       -- the enqueue transition's place (enqueueTransitionsCheckedSQL), taken back by demoteSQL
			       transition_seq = CASE WHEN c.parents_unfinished = d.n AND c.state = 'pending' AND NOT c.held
			                             THEN c.transition_seq + 1 ELSE c.transition_seq END,
			       updated_at = now()
			  FROM done d WHERE c.step_id = d.child
			RETURNING c.step_id, c.state = 'enqueued' AND c.parents_unfinished = 0 AS ready, c.template_step, c.handler, d.parents
		)`

// lockTasksSQL locks the tasks $1 in task_id order, so that two batches sharing tasks serialize
// without a deadlock, and returns their counters.
const lockTasksSQL = `SELECT task_id, ` + counterColumns + ` FROM {s}.tasks WHERE task_id = ANY($1) ORDER BY task_id FOR NO KEY UPDATE`

// unholdSQL lets the first held worker (by name) of batch $1 go, enqueued if its parents are
// done (with its transition_seq bumped for the enqueue transition trip2 writes), as a sibling
// frees its slot.
const unholdSQL = `
		UPDATE {s}.steps
		   SET held = false,
		       state = CASE WHEN parents_unfinished = 0 AND state = 'pending' THEN 'enqueued' ELSE state END, -- statemachine.JoinReady
		       transition_seq = CASE WHEN parents_unfinished = 0 AND state = 'pending' THEN transition_seq + 1 ELSE transition_seq END,
		       updated_at = now()
		 WHERE step_id = (SELECT step_id FROM {s}.steps WHERE batch_group = $1 AND held ORDER BY name LIMIT 1)
		RETURNING step_id, state = 'enqueued', template_step, handler`

// settleTasksSQL applies each task's counter deltas ($2 to $6) and moves it from state $7 (read
// under the lock: a compare-and-set) to $8, adding its number of hops ($15) to its
// transition_seq, and writes the tasks' transitions ($9 to $14, one row per hop, $14 its place in
// the task's path from 1) as one insert, below the new transition_seq: the last hop is current.
// It fails unless every task and every hop was written. The hops' sort keys come from the task's
// row as the statement's snapshot holds it, before upd (the batch holds the row's lock since
// lockTasksSQL, so upd starts from that very version): joining the hops to upd instead, a CTE to
// a CTE, was a nested loop reading upd again for every hop, quadratic in the batch.
const settleTasksSQL = `
		WITH v AS (
			SELECT * FROM unnest($1::uuid[], $2::int[], $3::int[], $4::int[], $5::int[], $6::int[], $7::text[], $8::text[], $15::int[])
			         AS v(task_id, d_total, d_unfinished, d_active, d_failed, d_isolated, from_state, to_state, hops)
		), upd AS (
			UPDATE {s}.tasks t
			   SET steps_total = t.steps_total + v.d_total, steps_unfinished = t.steps_unfinished + v.d_unfinished,
			       steps_active = t.steps_active + v.d_active, steps_failed = t.steps_failed + v.d_failed,
			       steps_isolated = t.steps_isolated + v.d_isolated, state = v.to_state, updated_at = now(),
			       completed_at = CASE WHEN v.to_state <> v.from_state AND v.to_state IN ('complete', 'error', 'cancelled', 'resolved_manually')
			                           THEN now() ELSE t.completed_at END,
			       transition_seq = t.transition_seq + v.hops
			  FROM v WHERE t.task_id = v.task_id AND t.state = v.from_state
			RETURNING t.task_id, t.transition_seq, v.hops
		), h AS (
			SELECT * FROM unnest($9::uuid[], $10::text[], $11::text[], $12::text[], $13::jsonb[], $14::int[])
			         AS h(task_id, from_state, to_state, event, meta, ord)
		), ins AS (
			INSERT INTO {s}.task_transitions (task_id, from_state, to_state, event, metadata, sort_key, created_at)
			SELECT h.task_id, h.from_state, h.to_state, h.event, h.meta, t.transition_seq + h.ord, clock_timestamp()
			  FROM h JOIN {s}.tasks t ON t.task_id = h.task_id -- the row as upd found it: locked by lockTasksSQL since
			RETURNING 1
		)
		SELECT 1 / (CASE WHEN (SELECT count(*) FROM upd) = cardinality($1::uuid[])
		                  AND (SELECT count(*) FROM ins) = cardinality($9::uuid[]) THEN 1 ELSE 0 END)`

// ackManySQL deletes the messages ($1 queue, $2 ID) of the batch's outcomes.
const ackManySQL = `
		DELETE FROM {s}.queue_messages q USING unnest($1::text[], $2::bigint[]) AS a(queue_name, msg_id)
		 WHERE q.queue_name = a.queue_name AND q.msg_id = a.msg_id`

// keyedPlans keeps the transaction's statements from reading a hot table whole: sequential
// scans, hash and merge joins and materialized rescans are priced out, so that every scan of a
// hot table is an index lookup by key, driven by the statement's own (batch-sized) input. Every
// statement of the hot path has such a plan (TestHotPathPlansAreKeyed checks each one), yet a
// plan made while the tables are small, or before ANALYZE ever ran (autovacuum off), prefers a
// sequential scan under a hash join, and keeps it once cached: a claim or an outcome then read
// every step, edge and task of the schema, and the diamond-4 bench spent 3.6 ms of server CPU per
// task, more as the history grew. It is safe only because no hot statement needs what it prices
// out (the test fails on a sequential scan): a plan that must keep one carries the penalty on
// every alternative, and the planner then picks among them blindly. It suits statements whose
// inputs are a batch (a nested loop over two large sets would be quadratic): creation and
// spawning, which join thousands of rows, do without it.
//
// It also turns JIT compilation off: the planner's guess at a recursive CTE's rows (thousands)
// prices the ancestor walk above jit_above_cost, and compiling it took 50 ms of every claim, for a
// statement that runs in well under one.
const keyedPlans = `SELECT set_config('enable_seqscan', 'off', true), set_config('enable_hashjoin', 'off', true),
		set_config('enable_mergejoin', 'off', true), set_config('enable_material', 'off', true), set_config('jit', 'off', true)`

// defaultPlans gives the settings keyedPlans changes back their values of the session's start
// (what the server, the database and the role make them), for the statements that join large
// sets (spawning) in a keyed transaction.
const defaultPlans = `SELECT set_config(name, reset_val, true) FROM pg_settings
		WHERE name IN ('enable_seqscan', 'enable_hashjoin', 'enable_mergejoin', 'enable_material', 'jit')`

// genericPlans is keyedPlans with generic plans: the batch statements are large, and planning
// them again on every call costs about as much as running them (§4.2).
const genericPlans = keyedPlans + `, set_config('plan_cache_mode', 'force_generic_plan', true)`

// RecordOutcomes records the outcomes in one transaction, set-based (see the top of outcomes.go):
// two round trips for any number of outcomes, more for batch workers freeing a slot and for the
// tasks of an outcome with a Spawn. An outcome whose worker no longer holds its step is reported
// (store.Conflict, store.AlreadyRecorded, store.NotFound) and the others are recorded. With
// p.OwnedQueue the messages of the released steps and retries are sent, a handed-over step's
// held, and every MessageID deleted, in the same commit; otherwise they come back in Publish and
// the caller acks.
func (s *Store) RecordOutcomes(ctx context.Context, p store.RecordOutcomesParams) (*store.RecordOutcomesResult, error) {
	if err := params.CheckBatch(p); err != nil {
		return nil, err
	}
	if len(p.Outcomes) == 0 {
		return &store.RecordOutcomesResult{}, nil
	}
	ids := make([]uuid.UUID, len(p.Outcomes))
	for i, o := range p.Outcomes {
		ids[i] = o.TaskID
	}
	s.shapes.forget(ids...) // this path does not follow the counters (speculate.go)
	var res *store.RecordOutcomesResult
	var err error
	for i := 0; i < 5; i++ {
		res, err = s.recordOutcomesOnce(ctx, p)
		if err == nil || !retryable(err) {
			return res, unstorable(err)
		}
	}
	return nil, fmt.Errorf("record %d outcomes: after 5 tries: %w", len(p.Outcomes), err)
}

// dbConn is what the batch runs its statements on: a connection whose transaction the batch opens
// and commits in its pipelines, or a pgx.Tx.
type dbConn interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// outcomeBatch is one try at a RecordOutcomes call.
type outcomeBatch struct {
	s *Store
	p store.RecordOutcomesParams

	db       dbConn
	tx       pgx.Tx // set when the single-step path needs a pgx.Tx; else BEGIN and COMMIT are pipelined
	inlineTx bool   // BEGIN was pipelined: the pipelines open and commit the transaction

	looped   map[uuid.UUID]bool // tasks whose outcomes take the single-step path
	counters map[uuid.UUID]counters
	moved    map[int]movedStep
	missed   map[int]bool // ord → the step's latest transition is this outcome
	ready    map[int][]released
	// movedTransitions is how many step transitions moveStepsSQL wrote: one per moved step.
	movedTransitions int

	res      *store.RecordOutcomesResult
	demote   []uuid.UUID
	enqueued []uuid.UUID // released steps to record pending → enqueued for
	sends    []send
	handoffs []handoff

	settles     map[uuid.UUID]*taskSettle
	settleOrder []uuid.UUID // the tasks of settles, in batch order
}

// movedStep is a step moveStepsSQL moved.
type movedStep struct {
	name, handler string
	batchGroup    *uuid.UUID
}

// send is a message to send (an owned queue) or publish (any other).
type send struct {
	ns    string
	ref   store.StepRef
	delay time.Duration
}

// handoff is a step claimed for the worker of outcome ord.
type handoff struct {
	ord   int
	ns    string
	ref   store.StepRef
	claim *claim
	msgID int64
}

func (s *Store) recordOutcomesOnce(ctx context.Context, p store.RecordOutcomesParams) (res *store.RecordOutcomesResult, err error) {
	b := &outcomeBatch{s: s, p: p, looped: loopedTasks(p.Outcomes), counters: map[uuid.UUID]counters{},
		moved: map[int]movedStep{}, missed: map[int]bool{}, ready: map[int][]released{},
		res: &store.RecordOutcomesResult{Records: make([]store.OutcomeRecord, len(p.Outcomes))}}
	if len(b.looped) > 0 {
		tx, berr := s.pool.Begin(ctx)
		if berr != nil {
			return nil, fmt.Errorf("record outcomes: %w", berr)
		}
		defer func() {
			if err != nil {
				_ = tx.Rollback(context.WithoutCancel(ctx))
			}
		}()
		b.db, b.tx = tx, tx
	} else {
		conn, aerr := s.pool.Acquire(ctx)
		if aerr != nil {
			return nil, fmt.Errorf("record outcomes: %w", aerr)
		}
		defer conn.Release()
		b.db, b.inlineTx = conn, true
		defer func() {
			if err != nil {
				// The pipelines stop at their first error, the COMMIT with them: end the
				// transaction (a ROLLBACK with none open only warns).
				_, _ = conn.Exec(context.WithoutCancel(ctx), "ROLLBACK")
			}
		}()
	}
	if err := b.trip1(ctx); err != nil {
		return nil, err
	}
	if err := b.unhold(ctx); err != nil {
		return nil, err
	}
	if err := b.loop(ctx); err != nil {
		return nil, err
	}
	if err := b.fold(); err != nil {
		return nil, err
	}
	if err := b.trip2(ctx); err != nil {
		return nil, err
	}
	if b.tx != nil {
		if err := b.tx.Commit(ctx); err != nil {
			return nil, fmt.Errorf("record outcomes: commit: %w", err)
		}
	}
	b.finish()
	return b.res, nil
}

// loopedTasks returns the tasks whose outcomes take the single-step path: those of an outcome
// with a Spawn, and those of a step named twice in the batch.
func loopedTasks(outs []store.Outcome) map[uuid.UUID]bool {
	looped := map[uuid.UUID]bool{}
	first := map[uuid.UUID]uuid.UUID{} // step → the task of its first outcome
	for _, o := range outs {
		if o.Spawn != nil {
			looped[o.TaskID] = true
		}
		if t, dup := first[o.StepID]; dup {
			looped[t], looped[o.TaskID] = true, true
		} else {
			first[o.StepID] = o.TaskID
		}
	}
	return looped
}

// outcomeWrites returns what o's plan writes on its step: its result or error, and its
// transition's metadata.
func outcomeWrites(o store.Outcome) (result, lastErr, meta []byte, err error) {
	if o.Plan.KeepsResult {
		result = nilIfEmpty(o.Result)
	} else {
		lastErr = nilIfEmpty(o.Error)
	}
	meta, err = json.Marshal(o.Plan.Meta)
	return result, lastErr, meta, err
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// trip1 opens the transaction (unless a pgx.Tx holds it), locks every task of the batch and moves
// the steps of the set-based outcomes.
func (b *outcomeBatch) trip1(ctx context.Context) error {
	s := b.s
	n := len(b.p.Outcomes)
	tasks := make([]uuid.UUID, 0, n)
	var ords, attempts []int32
	var steps, taskIDs []uuid.UUID
	var workers, froms, tos, events []string
	var results, errs, metas [][]byte
	var retryMs []int64
	var expired, releases []bool
	for i, o := range b.p.Outcomes {
		tasks = append(tasks, o.TaskID)
		if b.looped[o.TaskID] {
			continue
		}
		result, lastErr, meta, err := outcomeWrites(o)
		if err != nil {
			return err
		}
		ords, steps, taskIDs, workers, attempts = append(ords, int32(i)), append(steps, o.StepID), append(taskIDs, o.TaskID), append(workers, o.WorkerID), append(attempts, int32(o.Attempt))
		froms, tos, events = append(froms, string(o.Plan.Step.From)), append(tos, string(o.Plan.Step.To)), append(events, string(o.Plan.Step.Event))
		results, errs, metas = append(results, result), append(errs, lastErr), append(metas, meta)
		retryMs, expired, releases = append(retryMs, o.RetryDelay.Milliseconds()), append(expired, o.LeaseExpired), append(releases, o.Plan.ReleasesChildren)
	}
	q := &pgx.Batch{}
	if b.inlineTx {
		q.Queue("BEGIN")
	}
	q.Queue(genericPlans)
	q.Queue(s.q(lockTasksSQL), pgIDs(tasks)).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var id uuid.UUID
			var c counters
			if err := rows.Scan(append([]any{&id}, c.dest()...)...); err != nil {
				return err
			}
			b.counters[id] = c
		}
		return rows.Err()
	})
	if len(ords) > 0 {
		q.Queue(s.q(strings.Replace(moveStepsSQL, "{release}", s.releaseCTE, 1)), ords, pgIDs(steps), pgIDs(taskIDs), workers, attempts, froms, tos, events,
			results, errs, metas, retryMs, expired, releases).Query(b.scanMoves)
	}
	if err := b.db.SendBatch(ctx, q).Close(); err != nil {
		return fmt.Errorf("record %d outcomes: %w", n, err)
	}
	if want := len(b.moved); want > 0 && b.movedTransitions != want {
		return fmt.Errorf("record %d outcomes: wrote %d step transitions for %d moved steps", n, b.movedTransitions, want)
	}
	return nil
}

// scanMoves reads moveStepsSQL's rows. A child made ready by several parents in the batch is
// released by the last of them in batch order, as it would be one outcome after the other.
func (b *outcomeBatch) scanMoves(rows pgx.Rows) error {
	for rows.Next() {
		var kind string
		var ord *int32
		var id uuid.UUID
		var name, handler *string
		var group *uuid.UUID
		var parents []int32
		var flag bool
		var n int32
		if err := rows.Scan(&kind, &ord, &id, &name, &handler, &group, &parents, &flag, &n); err != nil {
			return err
		}
		switch kind {
		case "moved":
			b.moved[int(*ord)] = movedStep{name: *name, handler: *handler, batchGroup: group}
			b.movedTransitions = int(n)
		case "released":
			if flag && len(parents) > 0 {
				last := int(slices.Max(parents))
				b.ready[last] = append(b.ready[last], released{id: id, name: *name, handler: *handler})
			}
		case "missed":
			b.missed[int(*ord)] = flag
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for _, rs := range b.ready {
		slices.SortFunc(rs, func(x, y released) int { return strings.Compare(x.name, y.name) })
	}
	return nil
}

// unhold lets, for each moved batch worker whose outcome frees its batch slot, the first held
// sibling go, in batch order, in one more round trip when there are any.
func (b *outcomeBatch) unhold(ctx context.Context) error {
	var ords []int
	for ord, m := range b.moved {
		if b.p.Outcomes[ord].Plan.UnholdsSibling(m.batchGroup != nil) {
			ords = append(ords, ord)
		}
	}
	if len(ords) == 0 {
		return nil
	}
	slices.Sort(ords)
	q := &pgx.Batch{}
	for _, ord := range ords {
		q.Queue(b.s.q(unholdSQL), *b.moved[ord].batchGroup).Query(func(rows pgx.Rows) error {
			next, err := scanReleasedRows(rows)
			b.ready[ord] = append(b.ready[ord], next...)
			return err
		})
	}
	if err := b.db.SendBatch(ctx, q).Close(); err != nil {
		return fmt.Errorf("release held batch workers: %w", err)
	}
	return nil
}

// loop records the outcomes of the looped tasks, in batch order, with the single-step path under
// savepoints; what they enqueue joins the batch's sends.
func (b *outcomeBatch) loop(ctx context.Context) error {
	if len(b.looped) == 0 {
		return nil
	}
	pub := &params.Publisher{}
	for i, o := range b.p.Outcomes {
		if !b.looped[o.TaskID] {
			continue
		}
		mark := pub.Mark()
		rec, err := b.s.recordOne(ctx, b.tx, o, pub)
		if err != nil {
			return fmt.Errorf("record outcome %d of %d: %w", i+1, len(b.p.Outcomes), err)
		}
		b.res.Records[i] = rec
		if rec.Status != store.Recorded || !params.HandsOver(o) {
			continue
		}
		for g := mark; g < len(pub.List); g++ {
			grp := &pub.List[g]
			if j := params.PickHandoff(grp.Steps, b.p.Callables); j >= 0 {
				b.handoffs = append(b.handoffs, handoff{ord: i, ns: o.Namespace, ref: grp.Steps[j]})
				grp.Steps = append(grp.Steps[:j:j], grp.Steps[j+1:]...)
				break
			}
		}
	}
	for _, grp := range pub.List {
		for _, ref := range grp.Steps {
			b.sends = append(b.sends, send{ns: grp.Namespace, ref: ref, delay: grp.Delay})
		}
	}
	return nil
}

// taskSettle is what the batch's outcomes do to one task: the sum of their deltas and their
// paths one after the other, each hop with its outcome's metadata.
type taskSettle struct {
	from  statemachine.TaskState
	to    statemachine.TaskState
	delta statemachine.CounterDelta
	hops  []statemachine.TaskTransition
	metas []map[string]any
}

// fold sorts each set-based outcome into its status and applies the plans of the recorded ones,
// task by task in batch order, from the counters read under the lock: each outcome's counters
// after are the next one's before. It lists what trip2 writes.
func (b *outcomeBatch) fold() error {
	cur := map[uuid.UUID]counters{}
	settles := map[uuid.UUID]*taskSettle{}
	b.settleOrder = nil
	for i, o := range b.p.Outcomes {
		if b.looped[o.TaskID] {
			continue
		}
		rec := &b.res.Records[i]
		rec.StepID = o.StepID
		c, ok := cur[o.TaskID]
		if !ok {
			if c, ok = b.counters[o.TaskID]; !ok {
				rec.Status = store.NotFound
				continue
			}
		}
		m, ok := b.moved[i]
		if !ok {
			rec.Status = store.Conflict
			if b.missed[i] {
				rec.Status = store.AlreadyRecorded
			}
			continue
		}
		rec.Status = store.Recorded
		ready := b.ready[i]
		eff, err := o.Plan.Apply(o.StepID.String(), c.TaskCounters, 0, len(ready))
		if err != nil {
			return fmt.Errorf("settle task %s: %w", o.TaskID, err)
		}
		rec.TaskState, rec.Settled, rec.Released = eff.State, eff.Settled, eff.Released
		ts := settles[o.TaskID]
		if ts == nil {
			ts = &taskSettle{from: c.State}
			settles[o.TaskID] = ts
			b.settleOrder = append(b.settleOrder, o.TaskID)
		}
		ts.to = eff.State
		ts.delta = addDelta(ts.delta, eff.Delta)
		for _, h := range eff.Path {
			ts.hops, ts.metas = append(ts.hops, h), append(ts.metas, eff.TaskMeta)
		}
		c.TaskCounters = eff.After
		cur[o.TaskID] = c

		if !eff.EnqueueReleased {
			b.demote = append(b.demote, releasedIDs(ready)...)
		} else if len(ready) > 0 {
			b.enqueued = append(b.enqueued, releasedIDs(ready)...)
			refs := make([]store.StepRef, len(ready))
			for k, r := range ready {
				refs[k] = store.StepRef{TaskID: o.TaskID, StepID: r.id, TaskName: c.name, Version: c.version, Name: r.name, Handler: r.handler}
			}
			if params.HandsOver(o) {
				if j := params.PickHandoff(refs, b.p.Callables); j >= 0 {
					b.handoffs = append(b.handoffs, handoff{ord: i, ns: o.Namespace, ref: refs[j]})
					refs = append(refs[:j:j], refs[j+1:]...)
				}
			}
			for _, ref := range refs {
				b.sends = append(b.sends, send{ns: o.Namespace, ref: ref, delay: -o.PriorityCredit})
			}
		}
		if eff.EnqueueRetry {
			ref := store.StepRef{TaskID: o.TaskID, StepID: o.StepID, Retry: true, TaskName: c.name, Version: c.version, Name: m.name, Handler: m.handler}
			b.sends = append(b.sends, send{ns: o.Namespace, ref: ref, delay: o.RetryDelay})
		}
	}
	b.settles = settles
	return nil
}

func addDelta(a, d statemachine.CounterDelta) statemachine.CounterDelta {
	return statemachine.CounterDelta{Total: a.Total + d.Total, Unfinished: a.Unfinished + d.Unfinished, Active: a.Active + d.Active,
		Failed: a.Failed + d.Failed, Isolated: a.Isolated + d.Isolated}
}

// trip2 writes what fold listed and commits (unless a pgx.Tx holds the transaction): the demoted
// and the enqueued steps' transitions, the tasks' counters, states and transitions, the messages
// (an owned queue), the hand-overs and the acks.
func (b *outcomeBatch) trip2(ctx context.Context) error {
	s := b.s
	q := &pgx.Batch{}
	if len(b.demote) > 0 {
		q.Queue(s.q(demoteSQL), pgIDs(b.demote))
	}
	if len(b.enqueued) > 0 {
		q.Queue(s.q(enqueueTransitionsCheckedSQL), pgIDs(b.enqueued), len(b.enqueued))
	}
	if len(b.settleOrder) > 0 {
		if err := b.queueSettle(q); err != nil {
			return err
		}
	}
	owned := b.p.OwnedQueue
	if owned && len(b.sends) > 0 {
		queues, docs, delays := make([]string, len(b.sends)), make([]string, len(b.sends)), make([]int64, len(b.sends))
		for i, sd := range b.sends {
			doc, err := json.Marshal(sd.ref.Message())
			if err != nil {
				return err
			}
			queues[i], docs[i], delays[i] = sd.ns, string(doc), sd.delay.Milliseconds()
		}
		s.queue.queueSendMany(q, queues, docs, delays)
	}
	for i := range b.handoffs {
		h := &b.handoffs[i]
		o := b.p.Outcomes[h.ord]
		if owned {
			doc, err := json.Marshal(h.ref.Message())
			if err != nil {
				return err
			}
			if err := s.queue.QueueSendHeld(q, h.ns, doc, b.p.Lease, &h.msgID); err != nil {
				return fmt.Errorf("hold the message of %s: %w", h.ref.StepID, err)
			}
		}
		// Enqueued in this transaction, so the claim finds it; were it not to, a held message
		// would surface after the lease.
		h.claim = s.queueClaim(q, h.ref.StepID, o.WorkerID, b.p.Lease, o.StepID.String(), nil)
	}
	if owned {
		var ackNS []string
		var ackIDs []int64
		for _, o := range b.p.Outcomes {
			if o.MessageID != 0 {
				ackNS, ackIDs = append(ackNS, o.Namespace), append(ackIDs, o.MessageID)
			}
		}
		if len(ackIDs) > 0 {
			q.Queue(s.q(ackManySQL), ackNS, ackIDs)
		}
	}
	if b.inlineTx {
		q.Queue("COMMIT")
	}
	if err := b.db.SendBatch(ctx, q).Close(); err != nil {
		return fmt.Errorf("record %d outcomes: %w", len(b.p.Outcomes), err)
	}
	return nil
}

// queueSettle queues settleTasksSQL for the tasks fold touched.
func (b *outcomeBatch) queueSettle(q *pgx.Batch) error {
	n := len(b.settleOrder)
	ids := make([]uuid.UUID, n)
	dTotal, dUnfinished, dActive, dFailed, dIsolated := make([]int32, n), make([]int32, n), make([]int32, n), make([]int32, n), make([]int32, n)
	froms, tos := make([]string, n), make([]string, n)
	// Never nil: a nil slice is a NULL array, whose cardinality is NULL, not 0.
	hTask, hFrom, hTo, hEvent := []uuid.UUID{}, []string{}, []string{}, []string{}
	hMeta, hOrd := [][]byte{}, []int32{}
	hops := make([]int32, n)
	for i, id := range b.settleOrder {
		ts := b.settles[id]
		d := ts.delta
		ids[i], froms[i], tos[i], hops[i] = id, string(ts.from), string(ts.to), int32(len(ts.hops))
		dTotal[i], dUnfinished[i], dActive[i], dFailed[i], dIsolated[i] = int32(d.Total), int32(d.Unfinished), int32(d.Active), int32(d.Failed), int32(d.Isolated)
		for k, h := range ts.hops {
			meta, err := json.Marshal(ts.metas[k])
			if err != nil {
				return err
			}
			hTask, hFrom, hTo, hEvent = append(hTask, id), append(hFrom, string(h.From)), append(hTo, string(h.To)), append(hEvent, string(h.Event))
			hMeta, hOrd = append(hMeta, meta), append(hOrd, int32(k+1))
		}
	}
	q.Queue(b.s.q(settleTasksSQL), pgIDs(ids), dTotal, dUnfinished, dActive, dFailed, dIsolated, froms, tos,
		pgIDs(hTask), hFrom, hTo, hEvent, hMeta, hOrd, hops)
	return nil
}

// finish fills in what the commit decided: the acks, the handed-over steps, and, for a queue the
// store does not own, the messages to publish, grouped by namespace and delay.
func (b *outcomeBatch) finish() {
	owned := b.p.OwnedQueue
	for i, o := range b.p.Outcomes {
		b.res.Records[i].Acked = owned && o.MessageID != 0
	}
	for _, h := range b.handoffs {
		if h.claim != nil && h.claim.found {
			b.res.Records[h.ord].Next = &store.NextStep{ClaimedStep: h.claim.claimed, MessageID: h.msgID}
		}
	}
	if owned {
		return
	}
	type key struct {
		ns    string
		delay time.Duration
	}
	at := map[key]int{}
	for _, sd := range b.sends {
		k := key{sd.ns, sd.delay}
		i, ok := at[k]
		if !ok {
			i = len(b.res.Publish)
			at[k] = i
			b.res.Publish = append(b.res.Publish, store.Publish{Namespace: sd.ns, Delay: sd.delay})
		}
		b.res.Publish[i].Steps = append(b.res.Publish[i].Steps, sd.ref)
	}
}

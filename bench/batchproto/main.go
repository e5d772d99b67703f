// Command batchproto measures the set-based SQL that docs/design/engine-v2.md proposes for the
// batched hot path, against tasker's real schema (migrations.Migrate) in a scratch database that
// it creates and drops: completing the steps of N one-step tasks in one transaction, and claiming
// N steps in one statement, for several N and several concurrent connections.
//
//	cd bench && go run ./batchproto -sizes 1,10,50,100 -conc 1,4 -steps 2000
//
// It is a prototype: the statements are the ones the design sketches, not store/postgres's.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/tasker/migrations"
	"github.com/tasker-systems/tasker/statemachine"
)

const schema = "tasker"

type tracer struct{ trips, stmts atomic.Int64 }

func (t *tracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	t.trips.Add(1)
	t.stmts.Add(1)
	return ctx
}
func (t *tracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (t *tracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	t.trips.Add(1)
	t.stmts.Add(int64(d.Batch.Len()))
	return ctx
}
func (t *tracer) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (t *tracer) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

func main() {
	url := flag.String("url", "postgres://postgres@127.0.0.1:5432/postgres", "server to create the scratch database on")
	sizesFlag := flag.String("sizes", "1,10,50,100", "batch sizes")
	concFlag := flag.String("conc", "1,4", "concurrent connections, each completing its own batches")
	steps := flag.Int("steps", 2000, "one-step tasks per measurement")
	only := flag.String("only", "complete,claim", "what to measure")
	variants := flag.String("variants", "fused,by-id", "claim variants")
	generic := flag.Bool("generic", false, "plan_cache_mode=force_generic_plan on the pool's sessions")
	explain := flag.Bool("explain", false, "print the plans of one batch of each size, then stop")
	flag.Parse()
	ctx := context.Background()

	db := fmt.Sprintf("tasker_batchproto_%d", os.Getpid())
	admin, err := pgx.Connect(ctx, *url)
	check(err)
	_, err = admin.Exec(ctx, "CREATE DATABASE "+db)
	check(err)
	defer func() {
		r := recover()
		if _, err := admin.Exec(ctx, "DROP DATABASE "+db+" WITH (FORCE)"); err != nil {
			log.Print(err)
		}
		admin.Close(ctx)
		if r != nil {
			log.Fatal(r)
		}
	}()
	cfg, err := pgxpool.ParseConfig(replaceDB(*url, db))
	check(err)
	tr := &tracer{}
	cfg.ConnConfig.Tracer = tr
	cfg.MaxConns = 8
	if *generic {
		cfg.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_generic_plan"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	check(err)
	defer pool.Close()
	check(migrations.Migrate(ctx, pool))
	_, err = pool.Exec(ctx, `INSERT INTO tasker.templates (namespace, name, version, definition, checksum) VALUES ('proto', 'one', '1', '{}', 'x')`)
	check(err)

	sizes, concs := ints(*sizesFlag), ints(*concFlag)
	run := 0
	if *explain {
		for _, n := range sizes {
			run++
			tasks := setup(ctx, pool, run, n, "in_progress")
			explainComplete(ctx, pool, tasks)
		}
		return
	}
	if strings.Contains(*only, "complete") {
		fmt.Println("complete: N one-step tasks' steps in one transaction (2 round trips: lock+move+release, then counters+task transitions+acks+COMMIT)")
		fmt.Printf("%-5s %-5s %10s %12s %12s %10s %10s\n", "N", "conns", "steps/s", "ms/batch", "µs/step", "trips/step", "stmt/step")
		for _, c := range concs {
			for _, n := range sizes {
				run++
				tasks := setup(ctx, pool, run, *steps, "in_progress")
				tr.trips.Store(0)
				tr.stmts.Store(0)
				el, batches := parallel(c, n, tasks, func(part []task) { completeBatch(ctx, pool, part) })
				verifyDone(ctx, pool, run, *steps)
				fmt.Printf("%-5d %-5d %10.0f %12.2f %12.1f %10.3f %10.3f\n", n, c, float64(*steps)/el.Seconds(),
					float64(el.Milliseconds())*float64(c)/float64(batches), float64(el.Microseconds())/float64(*steps),
					float64(tr.trips.Load())/float64(*steps), float64(tr.stmts.Load())/float64(*steps))
			}
		}
	}
	if strings.Contains(*only, "claim") {
		fmt.Println("claim: read N queue messages and claim their steps in one statement (fused), or read then claim by ids (two)")
		fmt.Printf("%-7s %-5s %-5s %10s %12s %12s %10s\n", "variant", "N", "conns", "steps/s", "ms/batch", "µs/step", "trips/step")
		for _, variant := range strings.Split(*variants, ",") {
			for _, c := range concs {
				for _, n := range sizes {
					run++
					setup(ctx, pool, run, *steps, "enqueued")
					tr.trips.Store(0)
					var claimed atomic.Int64
					var calls atomic.Int64
					start := time.Now()
					var wg sync.WaitGroup
					var failed atomic.Value
					for i := 0; i < c; i++ {
						wg.Add(1)
						go func() {
							defer wg.Done()
							defer func() {
								if r := recover(); r != nil {
									failed.Store(fmt.Sprint(r)) // re-raised in main, so the database is dropped
								}
							}()
							for claimed.Load() < int64(*steps) {
								k := claimBatch(ctx, pool, variant, fmt.Sprintf("q%d", run), n)
								calls.Add(1)
								claimed.Add(int64(k))
								if k == 0 {
									return
								}
							}
						}()
					}
					wg.Wait()
					if f := failed.Load(); f != nil {
						panic(f)
					}
					el := time.Since(start)
					if claimed.Load() != int64(*steps) {
						fatalf("claimed %d of %d", claimed.Load(), *steps)
					}
					fmt.Printf("%-7s %-5d %-5d %10.0f %12.2f %12.1f %10.3f\n", variant, n, c, float64(*steps)/el.Seconds(),
						float64(el.Milliseconds())*float64(c)/float64(calls.Load()), float64(el.Microseconds())/float64(*steps),
						float64(tr.trips.Load())/float64(*steps))
				}
			}
		}
	}
}

// counters are a task's state and counters as read under its lock.
type counters struct {
	state statemachine.TaskState
	total int
	statemachine.StepCounts
}

type task struct {
	taskID, stepID uuid.UUID
	msgID          int64
}

// setup inserts n one-step tasks as CreateTask leaves them (four task transitions, the step's
// transitions) with their step in state ("in_progress" under worker w's lease, its message held;
// or "enqueued" with a visible message on queue q<run>), and returns them.
func setup(ctx context.Context, pool *pgxpool.Pool, run, n int, state string) []task {
	tx, err := pool.Begin(ctx)
	check(err)
	defer tx.Rollback(ctx)
	q := fmt.Sprintf("q%d", run)
	stmts := []string{
		fmt.Sprintf(`CREATE TEMP TABLE ids ON COMMIT DROP AS
		   SELECT g AS i, gen_random_uuid() AS task_id, gen_random_uuid() AS step_id FROM generate_series(1, %d) g`, n),
		`INSERT INTO tasker.tasks (task_id, namespace, name, version, state, context, identity_hash, steps_total, steps_unfinished, steps_active)
		   SELECT task_id, 'proto', 'one', '1', 'steps_in_process', '{"order": 1}', 'r' || $1::int || '-' || i, 1, 1, 1 FROM ids`,
		`INSERT INTO tasker.task_transitions (task_id, from_state, to_state, event, sort_key, most_recent)
		   SELECT task_id, f, t, e, k, k = 3 FROM ids, (VALUES (NULL, 'pending', 'create', 0), ('pending', 'initializing', 'start', 1),
		     ('initializing', 'enqueuing_steps', 'initialized', 2), ('enqueuing_steps', 'steps_in_process', 'steps_enqueued', 3)) v(f, t, e, k)`,
		`INSERT INTO tasker.steps (step_id, task_id, name, template_step, handler, state, attempts, lease_owner, lease_expires_at, started_at)
		   SELECT step_id, task_id, 'only', 'only', 'h', $1::text, CASE WHEN $1 = 'in_progress' THEN 1 ELSE 0 END,
		          CASE WHEN $1 = 'in_progress' THEN 'w' END, CASE WHEN $1 = 'in_progress' THEN now() + interval '1 hour' END, now() FROM ids`,
		`INSERT INTO tasker.step_transitions (step_id, task_id, from_state, to_state, event, sort_key, most_recent)
		   SELECT step_id, task_id, f, t, e, k, t = $1 FROM ids, (VALUES (NULL, 'pending', 'create', 0), ('pending', 'enqueued', 'enqueue', 1),
		     ('enqueued', 'in_progress', 'start', 2)) v(f, t, e, k) WHERE k < CASE WHEN $1 = 'in_progress' THEN 3 ELSE 2 END`,
		`INSERT INTO tasker.queue_messages (queue_name, payload, vt, read_ct)
		   SELECT $2, jsonb_build_object('task_id', task_id, 'step_id', step_id, 'task', 'one', 'version', '1', 'step', 'only', 'handler', 'h'),
		          CASE WHEN $1 = 'in_progress' THEN now() + interval '1 hour' ELSE now() END, CASE WHEN $1 = 'in_progress' THEN 1 ELSE 0 END
		     FROM ids ORDER BY i`,
	}
	args := [][]any{nil, {run}, nil, {state}, {state}, {state, q}}
	for i, s := range stmts {
		_, err := tx.Exec(ctx, s, args[i]...)
		check(err)
	}
	rows, err := tx.Query(ctx, `SELECT ids.task_id, ids.step_id, m.msg_id FROM ids JOIN tasker.queue_messages m
		ON m.queue_name = $1 AND (m.payload->>'step_id')::uuid = ids.step_id ORDER BY ids.i`, q)
	check(err)
	var out []task
	for rows.Next() {
		var t task
		check(rows.Scan(&t.taskID, &t.stepID, &t.msgID))
		out = append(out, t)
	}
	check(rows.Err())
	check(tx.Commit(ctx))
	_, err = pool.Exec(ctx, "ANALYZE")
	check(err)
	return out
}

// parallel splits tasks among c workers, each calling fn on consecutive slices of n.
func parallel(c, n int, tasks []task, fn func([]task)) (time.Duration, int) {
	per := (len(tasks) + c - 1) / c
	var wg sync.WaitGroup
	var batches atomic.Int64
	start := time.Now()
	for i := 0; i < c; i++ {
		lo, hi := i*per, min((i+1)*per, len(tasks))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := lo; j < hi; j += n {
				fn(tasks[j:min(j+n, hi)])
				batches.Add(1)
			}
		}()
	}
	wg.Wait()
	return time.Since(start), int(batches.Load())
}

// moveStepsSQL is the batched outcome's first statement: a compare-and-set per step on the
// attempt its worker holds (a step that moved on drops out, the others go on), the steps'
// transitions, and the release of their children, counted once per child however many of its
// parents are in the batch.
const moveStepsSQL = `
WITH v AS (
	SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[], $8::jsonb[])
	         AS v(step_id, worker, attempt, to_state, event, result, last_error, meta)
), moved AS (
	UPDATE tasker.steps s
	   SET state = v.to_state, result = coalesce(v.result, s.result), last_error = coalesce(v.last_error, s.last_error),
	       lease_owner = NULL, lease_expires_at = NULL, updated_at = now(),
	       completed_at = CASE WHEN v.to_state = 'complete' THEN now() ELSE s.completed_at END
	  FROM v
	 WHERE s.step_id = v.step_id AND s.state = 'in_progress' AND s.lease_owner = v.worker AND s.attempts = v.attempt
	RETURNING s.step_id, s.task_id, s.template_step, s.handler, s.batch_group, v.to_state, v.event, v.meta
), prev AS (
	UPDATE tasker.step_transitions t SET most_recent = false
	  FROM moved m WHERE t.step_id = m.step_id AND t.most_recent
	RETURNING t.step_id, t.sort_key
), tr AS (
	INSERT INTO tasker.step_transitions (step_id, task_id, from_state, to_state, event, metadata, sort_key, created_at)
	SELECT m.step_id, m.task_id, 'in_progress', m.to_state, m.event, m.meta, p.sort_key + 1, clock_timestamp()
	  FROM moved m JOIN prev p USING (step_id)
), done AS (
	SELECT e.to_step_id, count(*)::int AS n FROM tasker.edges e JOIN moved m ON e.from_step_id = m.step_id
	 WHERE m.to_state = 'complete' GROUP BY e.to_step_id
), rel AS (
	UPDATE tasker.steps c
	   SET parents_unfinished = c.parents_unfinished - d.n,
	       state = CASE WHEN c.parents_unfinished = d.n AND c.state = 'pending' AND NOT c.held THEN 'enqueued' ELSE c.state END,
	       updated_at = now()
	  FROM done d WHERE c.step_id = d.to_step_id
	RETURNING c.step_id, c.task_id, c.state = 'enqueued' AND c.parents_unfinished = 0 AS ready, c.template_step, c.handler
)
SELECT 'moved', step_id, task_id, true FROM moved
UNION ALL
SELECT 'released', step_id, task_id, ready FROM rel`

// settleTasksSQL applies each task's counter deltas and its state (a compare-and-set on the state
// read under the lock), and writes its task transitions as one multi-row insert.
const settleTasksSQL = `
WITH v AS (
	SELECT * FROM unnest($1::uuid[], $2::int[], $3::int[], $4::int[], $5::int[], $6::text[], $7::text[])
	         AS v(task_id, d_unfinished, d_active, d_failed, d_isolated, from_state, to_state)
), upd AS (
	UPDATE tasker.tasks t
	   SET steps_unfinished = t.steps_unfinished + v.d_unfinished, steps_active = t.steps_active + v.d_active,
	       steps_failed = t.steps_failed + v.d_failed, steps_isolated = t.steps_isolated + v.d_isolated,
	       state = v.to_state, updated_at = now(),
	       completed_at = CASE WHEN v.to_state IN ('complete', 'error', 'cancelled', 'resolved_manually') THEN now() ELSE t.completed_at END
	  FROM v WHERE t.task_id = v.task_id AND t.state = v.from_state
	RETURNING t.task_id
), h AS (
	SELECT * FROM unnest($8::uuid[], $9::text[], $10::text[], $11::text[], $12::int[], $13::bool[]) AS h(task_id, f, t, e, ord, last)
), prev AS (
	UPDATE tasker.task_transitions tt SET most_recent = false
	  FROM (SELECT DISTINCT task_id FROM h) x WHERE tt.task_id = x.task_id AND tt.most_recent
	RETURNING tt.task_id, tt.sort_key
), ins AS (
	INSERT INTO tasker.task_transitions (task_id, from_state, to_state, event, metadata, sort_key, most_recent, created_at)
	SELECT h.task_id, h.f, h.t, h.e, NULL, p.sort_key + h.ord, h.last, clock_timestamp() FROM h JOIN prev p USING (task_id)
	RETURNING 1
)
SELECT 1 / (CASE WHEN (SELECT count(*) FROM upd) = cardinality($1::uuid[]) AND (SELECT count(*) FROM ins) = cardinality($8::uuid[]) THEN 1 ELSE 0 END)`

func completeBatch(ctx context.Context, pool *pgxpool.Pool, part []task) {
	conn, err := pool.Acquire(ctx)
	check(err)
	defer conn.Release()
	n := len(part)
	stepIDs, taskIDs, msgIDs := make([]uuid.UUID, n), make([]uuid.UUID, n), make([]int64, n)
	workers, tos, events := make([]string, n), make([]string, n), make([]string, n)
	attempts := make([]int, n)
	results, errs, metas := make([][]byte, n), make([][]byte, n), make([][]byte, n)
	for i, t := range part {
		stepIDs[i], taskIDs[i], msgIDs[i] = t.stepID, t.taskID, t.msgID
		workers[i], attempts[i], tos[i], events[i] = "w", 1, "complete", "complete"
		results[i] = []byte(`{"ok": true}`)
		metas[i], _ = json.Marshal(map[string]any{"worker_id": "w", "attempt": 1})
	}
	// Trip 1: open, lock the tasks in a fixed order (no deadlock between concurrent batches), move
	// the steps and release their children.
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(`SELECT task_id, state, steps_total, steps_unfinished, steps_active, steps_failed, steps_isolated
	           FROM tasker.tasks WHERE task_id = ANY($1) ORDER BY task_id FOR NO KEY UPDATE`, taskIDs)
	b.Queue(moveStepsSQL, stepIDs, workers, attempts, tos, events, results, errs, metas)
	br := conn.SendBatch(ctx, b)
	_, err = br.Exec()
	check(err)
	before := map[uuid.UUID]counters{}
	rows, err := br.Query()
	check(err)
	for rows.Next() {
		var id uuid.UUID
		var c counters
		var st string
		check(rows.Scan(&id, &st, &c.total, &c.Unfinished, &c.Active, &c.Failed, &c.Isolated))
		c.state = statemachine.TaskState(st)
		before[id] = c
	}
	check(rows.Err())
	rows, err = br.Query()
	check(err)
	moved := map[uuid.UUID]int{}
	for rows.Next() {
		var kind string
		var sid, tid uuid.UUID
		var ready bool
		check(rows.Scan(&kind, &sid, &tid, &ready))
		if kind == "moved" {
			moved[tid]++
		}
	}
	check(rows.Err())
	check(br.Close())
	if len(moved) != n {
		fatalf("moved %d of %d", len(moved), n)
	}
	// The planner's part, in Go: each task's deltas and settle path.
	var tIDs []uuid.UUID
	var dU, dA, dF, dI []int
	var from, to []string
	var hT []uuid.UUID
	var hF, hTo, hE []string
	var hOrd []int
	var hLast []bool
	for tid, k := range moved {
		c := before[tid]
		after := c.StepCounts
		after.Unfinished -= k
		after.Active -= k
		path, state, err := statemachine.SettlePath(c.state, after)
		check(err)
		tIDs = append(tIDs, tid)
		dU, dA, dF, dI = append(dU, -k), append(dA, -k), append(dF, 0), append(dI, 0)
		from, to = append(from, string(c.state)), append(to, string(state))
		for i, p := range path {
			hT, hF, hTo, hE = append(hT, tid), append(hF, string(p.From)), append(hTo, string(p.To)), append(hE, string(p.Event))
			hOrd, hLast = append(hOrd, i+1), append(hLast, i == len(path)-1)
		}
	}
	// Trip 2: counters, task states and transitions, the acks, and the commit.
	b = &pgx.Batch{}
	b.Queue(settleTasksSQL, tIDs, dU, dA, dF, dI, from, to, hT, hF, hTo, hE, hOrd, hLast)
	b.Queue(`DELETE FROM tasker.queue_messages WHERE msg_id = ANY($1)`, msgIDs)
	b.Queue("COMMIT")
	check(conn.SendBatch(ctx, b).Close())
}

func verifyDone(ctx context.Context, pool *pgxpool.Pool, run, n int) {
	var done, trs int
	check(pool.QueryRow(ctx, `SELECT count(*) FROM tasker.tasks WHERE identity_hash LIKE 'r' || $1::int || '-%' AND state = 'complete'`, run).Scan(&done))
	check(pool.QueryRow(ctx, `SELECT count(*) FROM tasker.task_transitions tt JOIN tasker.tasks t USING (task_id)
		WHERE t.identity_hash LIKE 'r' || $1::int || '-%' AND tt.most_recent AND tt.to_state = 'complete'`, run).Scan(&trs))
	if done != n || trs != n {
		fatalf("run %d: %d of %d tasks complete, %d current complete transitions", run, done, n, trs)
	}
}

// claimFusedSQL reads up to $2 visible messages of queue $1 and claims their steps for worker $3
// with a lease of $4 ms, in one statement: each claimed step comes back with its task's context;
// a message whose step is not enqueued comes back with NULL step columns, for its ack.
const claimFusedSQL = `
WITH m AS MATERIALIZED (
	SELECT msg_id FROM tasker.queue_messages WHERE queue_name = $1 AND vt <= now()
	 ORDER BY msg_id LIMIT $2 FOR UPDATE SKIP LOCKED
), r AS (
	UPDATE tasker.queue_messages q SET vt = now() + $4 * interval '1 millisecond', read_ct = q.read_ct + 1
	  FROM m WHERE q.msg_id = m.msg_id
	RETURNING q.msg_id, (q.payload->>'step_id')::uuid AS step_id
), c AS (
	UPDATE tasker.steps s
	   SET state = 'in_progress', attempts = s.attempts + 1, lease_owner = $3,
	       lease_expires_at = now() + $4 * interval '1 millisecond', started_at = now(), updated_at = now()
	  FROM r WHERE s.step_id = r.step_id AND s.state = 'enqueued'
	RETURNING s.step_id, s.task_id, s.name, s.handler, s.attempts, s.max_attempts, s.timeout_ms, s.inputs
), prev AS (
	UPDATE tasker.step_transitions t SET most_recent = false
	  FROM c WHERE t.step_id = c.step_id AND t.most_recent
	RETURNING t.step_id, t.sort_key
), ins AS (
	INSERT INTO tasker.step_transitions (step_id, task_id, from_state, to_state, event, metadata, sort_key, created_at)
	SELECT c.step_id, c.task_id, 'enqueued', 'in_progress', 'start',
	       jsonb_build_object('worker_id', $3::text, 'attempt', c.attempts), p.sort_key + 1, clock_timestamp()
	  FROM c JOIN prev p USING (step_id)
)
SELECT r.msg_id, c.step_id, c.attempts, t.context, t.name, t.version
  FROM r LEFT JOIN c USING (step_id) LEFT JOIN tasker.tasks t ON t.task_id = c.task_id`

// claimByIDSQL claims the steps $1 (read from any queue) for worker $2, in one statement.
const claimByIDSQL = `
WITH c AS (
	UPDATE tasker.steps s
	   SET state = 'in_progress', attempts = s.attempts + 1, lease_owner = $2,
	       lease_expires_at = now() + $3 * interval '1 millisecond', started_at = now(), updated_at = now()
	 WHERE s.step_id = ANY($1) AND s.state = 'enqueued'
	RETURNING s.step_id, s.task_id, s.name, s.handler, s.attempts, s.max_attempts, s.timeout_ms, s.inputs
), prev AS (
	UPDATE tasker.step_transitions t SET most_recent = false
	  FROM c WHERE t.step_id = c.step_id AND t.most_recent
	RETURNING t.step_id, t.sort_key
), ins AS (
	INSERT INTO tasker.step_transitions (step_id, task_id, from_state, to_state, event, metadata, sort_key, created_at)
	SELECT c.step_id, c.task_id, 'enqueued', 'in_progress', 'start',
	       jsonb_build_object('worker_id', $2::text, 'attempt', c.attempts), p.sort_key + 1, clock_timestamp()
	  FROM c JOIN prev p USING (step_id)
)
SELECT c.step_id, c.attempts, t.context, t.name, t.version FROM c JOIN tasker.tasks t USING (task_id)`

const readSQL = `
WITH claimed AS MATERIALIZED (
	SELECT msg_id FROM tasker.queue_messages WHERE queue_name = $1 AND vt <= now() ORDER BY msg_id LIMIT $2 FOR UPDATE SKIP LOCKED
)
UPDATE tasker.queue_messages AS m SET vt = now() + $3 * interval '1 millisecond', read_ct = m.read_ct + 1
  FROM claimed WHERE m.msg_id = claimed.msg_id
RETURNING m.msg_id, (m.payload->>'step_id')::uuid`

func claimBatch(ctx context.Context, pool *pgxpool.Pool, variant, q string, n int) int {
	const lease = 30000
	if variant == "fused" {
		rows, err := pool.Query(ctx, claimFusedSQL, q, n, "w", lease)
		check(err)
		k := 0
		for rows.Next() {
			var msg int64
			var step *uuid.UUID
			var att *int
			var tctx []byte
			var name, version *string
			check(rows.Scan(&msg, &step, &att, &tctx, &name, &version))
			if step == nil {
				fatalf("fused claim: a message's step was not enqueued")
			}
			k++
		}
		check(rows.Err())
		return k
	}
	rows, err := pool.Query(ctx, readSQL, q, n, lease)
	check(err)
	var ids []uuid.UUID
	for rows.Next() {
		var msg int64
		var id uuid.UUID
		check(rows.Scan(&msg, &id))
		ids = append(ids, id)
	}
	check(rows.Err())
	if len(ids) == 0 {
		return 0
	}
	rows, err = pool.Query(ctx, claimByIDSQL, ids, "w", lease)
	check(err)
	k := 0
	for rows.Next() {
		k++
	}
	check(rows.Err())
	if k != len(ids) {
		var st string
		_ = pool.QueryRow(ctx, "SELECT state FROM tasker.steps WHERE step_id = $1", ids[0]).Scan(&st)
		fatalf("claimed %d of %d (%s: %s)", k, len(ids), ids[0], st)
	}
	return k
}

func ints(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		check(err)
		out = append(out, n)
	}
	return out
}

func replaceDB(url, db string) string {
	i := strings.LastIndex(url, "/")
	rest := ""
	if j := strings.Index(url[i:], "?"); j >= 0 {
		rest = url[i+j:]
	}
	return url[:i+1] + db + rest
}

func check(err error) {
	if err != nil {
		panic(err)
	}
}

func fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }

// explainComplete prints the plans of the batched outcome's statements for one batch.
func explainComplete(ctx context.Context, pool *pgxpool.Pool, part []task) {
	n := len(part)
	stepIDs, workers, tos, events := make([]uuid.UUID, n), make([]string, n), make([]string, n), make([]string, n)
	attempts := make([]int, n)
	results, errs, metas := make([][]byte, n), make([][]byte, n), make([][]byte, n)
	for i, t := range part {
		stepIDs[i], workers[i], attempts[i], tos[i], events[i] = t.stepID, "w", 1, "complete", "complete"
		results[i], metas[i] = []byte(`{"ok": true}`), []byte(`{"worker_id": "w"}`)
	}
	tx, err := pool.Begin(ctx)
	check(err)
	defer tx.Rollback(ctx)
	rows, err := tx.Query(ctx, "EXPLAIN (ANALYZE, BUFFERS, TIMING) "+moveStepsSQL, stepIDs, workers, attempts, tos, events, results, errs, metas)
	check(err)
	fmt.Printf("-- moveStepsSQL, N=%d\n", n)
	for rows.Next() {
		var line string
		check(rows.Scan(&line))
		fmt.Println(line)
	}
	check(rows.Err())
}

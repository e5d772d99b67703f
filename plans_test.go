package tasker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/store/postgres"
)

// sqlRecorder remembers every statement text a pool's connections send, alone or in a batch,
// with the planner settings its transaction had made (the store's keyedPlans or genericPlans,
// set_config calls): that is how its plan is made, so that is how the test explains it.
type sqlRecorder struct {
	mu       sync.Mutex
	inTx     map[*pgx.Conn]bool
	settings map[*pgx.Conn]string
	seen     map[recordedSQL]int
}

type recordedSQL struct {
	sql      string
	settings string // the set_config statement that ran before it in its transaction, if any
}

func (r *sqlRecorder) add(c *pgx.Conn, sql string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	low := strings.ToLower(strings.TrimSpace(sql))
	switch {
	case strings.HasPrefix(low, "begin"):
		r.inTx[c], r.settings[c] = true, ""
		return
	case strings.HasPrefix(low, "commit"), low == "rollback", strings.HasPrefix(low, "end"):
		r.inTx[c], r.settings[c] = false, ""
		return
	case strings.HasPrefix(low, "select set_config("):
		r.settings[c] = sql
		return
	}
	r.seen[recordedSQL{sql, r.settings[c]}]++
}

// endBatch forgets the settings of a batch's implicit transaction.
func (r *sqlRecorder) endBatch(c *pgx.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.inTx[c] {
		r.settings[c] = ""
	}
}

func (r *sqlRecorder) TraceQueryStart(ctx context.Context, c *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	r.add(c, d.SQL)
	return ctx
}
func (r *sqlRecorder) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (r *sqlRecorder) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}
func (r *sqlRecorder) TraceBatchQuery(_ context.Context, c *pgx.Conn, d pgx.TraceBatchQueryData) {
	r.add(c, d.SQL)
}
func (r *sqlRecorder) TraceBatchEnd(_ context.Context, c *pgx.Conn, _ pgx.TraceBatchEndData) {
	r.endBatch(c)
}

// statements returns the statements seen that name a table of schema, sorted.
func (r *sqlRecorder) statements(schema string) []recordedSQL {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []recordedSQL
	for st := range r.seen {
		if strings.Contains(st.sql, pgx.Identifier{schema}.Sanitize()+".") {
			out = append(out, st)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].sql != out[j].sql {
			return out[i].sql < out[j].sql
		}
		return out[i].settings < out[j].settings
	})
	return out
}

// hotTables are the tables that grow with the work done: no statement of the engine's may read
// one of them whole (a sequential scan, or an index scan without a condition on the index's first
// column), or its cost per step grows with the history kept.
var hotTables = map[string]bool{"tasks": true, "steps": true, "edges": true, "task_transitions": true,
	"step_transitions": true, "queue_messages": true, "dead_letters": true}

const plansYAML = `
name: %s
namespace_name: plans
version: 1.0.0
steps:
%s`

// TestHotPathPlansAreKeyed runs diamond, linear, one-step and retrying tasks through an engine on
// PostgreSQL, records every statement it sends, and checks each statement's generic plan (the
// plan the store's batched statements are forced to, and the one any prepared statement may end
// up with) both on the schema the run filled and on an empty one, as a connection opened at a
// service's first start plans it: no plan may read a hot table whole. Autovacuum is off on the CI
// machines, as it may be anywhere, so the plans here see no statistics (ANALYZE never ran): a
// plan that needs them to find the index is one that degrades as the tables grow. Those are the
// plans that made the claim and the outcome read every step of every task, and the diamond-4
// bench cost 3.6 ms of server CPU per task.
func TestHotPathPlansAreKeyed(t *testing.T) {
	t.Parallel()
	for _, be := range []string{backendPostgres, backendRabbitMQ} {
		t.Run(be, func(t *testing.T) {
			t.Parallel()
			testHotPathPlans(t, be)
		})
	}
}

func testHotPathPlans(t *testing.T, backend string) {
	ctx := context.Background()
	rec := &sqlRecorder{seen: map[recordedSQL]int{}, inTx: map[*pgx.Conn]bool{}, settings: map[*pgx.Conn]string{}}
	db := testdb.New(t, testdb.WithMaxConns(20), testdb.WithTracer(rec))
	cfg := tasker.Config{Store: postgres.New(db.Pool, postgres.WithSchema(db.Schema)), Logger: testLogger(),
		Lease: 3 * time.Second, ShutdownTimeout: 2 * time.Second, RescueInterval: 50 * time.Millisecond}
	if backend == backendRabbitMQ {
		q := newTestRabbitMQ(t)
		q.mu.Lock()
		q.names["plans"] = true // its broker queues go at cleanup
		q.mu.Unlock()
		cfg.Queue = q
	}
	eng, err := tasker.NewEngine(cfg)
	require.NoError(t, err)
	templates := map[string]string{
		"diamond": "  - {name: a, handler: {callable: work}}\n  - {name: b, handler: {callable: work}, dependencies: [a]}\n" +
			"  - {name: c, handler: {callable: work}, dependencies: [a]}\n  - {name: d, handler: {callable: work}, dependencies: [b, c]}\n",
		"linear": "  - {name: a, handler: {callable: work}}\n  - {name: b, handler: {callable: work}, dependencies: [a]}\n" +
			"  - {name: c, handler: {callable: work}, dependencies: [b]}\n",
		"one": "  - {name: a, handler: {callable: work}}\n",
		"batch": "  - {name: analyze, type: batchable, handler: {callable: analyze}}\n" +
			"  - {name: part, type: batch_worker, dependencies: [analyze], handler: {callable: work},\n" +
			"     batch_config: {batch_size: 10, parallelism: 4, cursor_field: row, worker_template: part}}\n" +
			"  - {name: total, type: deferred_convergence, dependencies: [part], handler: {callable: work}}\n",
		"retry": "  - {name: a, handler: {callable: flaky}, retry: {retryable: true, max_attempts: 3, backoff: exponential, backoff_base_ms: 10, max_backoff_ms: 20}}\n" +
			"  - {name: b, handler: {callable: work}, dependencies: [a]}\n",
	}
	for name, steps := range templates {
		tmpl, err := tasker.ParseTemplate([]byte(fmt.Sprintf(plansYAML, name, steps)))
		require.NoError(t, err)
		require.NoError(t, eng.Register(tmpl))
	}
	eng.HandleFunc("work", func(_ context.Context, s *tasker.Step) (any, error) { return s.Name, nil })
	eng.HandleFunc("analyze", func(context.Context, *tasker.Step) (any, error) {
		return tasker.CreateBatches("part", tasker.Cursors(0, 60, 10)...), nil
	})
	eng.HandleFunc("flaky", func(_ context.Context, s *tasker.Step) (any, error) {
		if s.Attempt == 1 {
			return nil, errors.New("flaky upstream")
		}
		return "ok", nil
	})
	run := func(name string, i int) error {
		task, err := eng.CreateTask(ctx, tasker.TaskRequest{Namespace: "plans", Name: name, Version: "1.0.0",
			Context: map[string]any{"i": i}})
		if err != nil {
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		got, err := eng.WaitTask(wctx, task.ID)
		if err != nil {
			return err
		}
		if got.State != tasker.TaskComplete {
			return fmt.Errorf("task %s (%s) ended %s", task.ID, name, got.State)
		}
		return nil
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- eng.RunWorkers(rctx) }()
	n := 240 // enough to fill the schema past a few pages
	if backend == backendRabbitMQ {
		n = 60 // the same statements; the broker is slower under a loaded suite
	}
	errs := make(chan error, n)
	sem := make(chan struct{}, 20)
	var wg sync.WaitGroup
	for i := range n {
		name := []string{"diamond", "diamond", "linear", "one", "one", "retry", "batch"}[i%7]
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			errs <- run(name, i)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	stop()
	require.NoError(t, <-done)

	stmts := rec.statements(db.Schema)
	require.NotEmpty(t, stmts)
	// Spawning joins sets as large as a batch's workers: it runs under the database's own
	// settings, never keyedPlans' (no hash join: a nested loop over thousands of rows).
	spawned := 0
	for _, st := range stmts {
		if strings.Contains(st.sql, "INSERT INTO "+pgx.Identifier{db.Schema}.Sanitize()+".edges (task_id, from_step_id, to_step_id)") &&
			strings.Contains(st.sql, "FROM want") {
			spawned++
			require.True(t, st.settings == "" || strings.Contains(st.settings, "reset_val"),
				"spawning ran with the settings %q", st.settings)
		}
	}
	require.NotZero(t, spawned, "the workload spawns batch workers")
	empty := testdb.New(t)
	from, to := pgx.Identifier{db.Schema}.Sanitize()+".", pgx.Identifier{empty.Schema}.Sanitize()+"."
	var bad []string
	for _, st := range stmts {
		for _, on := range []struct {
			label string
			db    *testdb.DB
			sql   string
		}{{"the filled schema", db, st.sql}, {"an empty schema", empty, strings.ReplaceAll(st.sql, from, to)}} {
			problems, err := genericPlanProblems(ctx, on.db, on.sql, st.settings)
			require.NoError(t, err, "explain %s", st.sql)
			for _, p := range problems {
				bad = append(bad, fmt.Sprintf("on %s (keyed %v): %s\n    in: %s", on.label, st.settings != "", p, oneLine(st.sql, 400)))
			}
		}
	}
	t.Logf("%d statements checked", len(stmts))
	if len(bad) > 0 {
		t.Fatalf("%d generic plans read a hot table whole:\n%s", len(bad), strings.Join(bad, "\n"))
	}
}

var spaces = regexp.MustCompile(`\s+`)

func oneLine(s string, n int) string {
	s = strings.TrimSpace(spaces.ReplaceAllString(s, " "))
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

// genericPlanProblems explains sql's generic plan on db's schema, under the planner settings
// its transaction made (a set_config statement, or none), and lists its scans of hot
// tables that read them whole. Statements that take no plan (BEGIN, SET, …) have none.
func genericPlanProblems(ctx context.Context, db *testdb.DB, sql, settings string) ([]string, error) {
	head := strings.ToUpper(strings.Fields(strings.TrimSpace(sql))[0])
	switch head {
	case "SELECT", "WITH", "INSERT", "UPDATE", "DELETE":
	default:
		return nil, nil
	}
	conn, err := db.Pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	lead, err := leadingColumns(ctx, conn.Conn(), db.Schema)
	if err != nil {
		return nil, err
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `SET LOCAL plan_cache_mode = force_generic_plan`); err != nil {
		return nil, err
	}
	if settings != "" {
		if _, err := tx.Exec(ctx, settings); err != nil {
			return nil, err
		}
	}
	if _, err := tx.Exec(ctx, "PREPARE plans_probe AS "+sql, pgx.QueryExecModeSimpleProtocol); err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	defer func() { _, _ = conn.Exec(ctx, `DEALLOCATE plans_probe`, pgx.QueryExecModeSimpleProtocol) }()
	var nparams int
	if err := tx.QueryRow(ctx, `SELECT cardinality(parameter_types) FROM pg_prepared_statements WHERE name = 'plans_probe'`).Scan(&nparams); err != nil {
		return nil, err
	}
	args := strings.TrimSuffix(strings.Repeat("NULL, ", nparams), ", ")
	explain := "EXPLAIN (FORMAT JSON) EXECUTE plans_probe"
	if nparams > 0 {
		explain += "(" + args + ")"
	}
	var raw []byte
	if err := tx.QueryRow(ctx, explain, pgx.QueryExecModeSimpleProtocol).Scan(&raw); err != nil {
		return nil, fmt.Errorf("explain: %w", err)
	}
	if os.Getenv("TASKER_PLANS_DEBUG") != "" {
		var text []string
		rows, err := tx.Query(ctx, "EXPLAIN EXECUTE plans_probe"+explain[len("EXPLAIN (FORMAT JSON) EXECUTE plans_probe"):], pgx.QueryExecModeSimpleProtocol)
		if err == nil {
			text, err = pgx.CollectRows(rows, pgx.RowTo[string])
		}
		fmt.Fprintf(os.Stderr, "---- %s\n%s\n%v\n", oneLine(sql, 200), strings.Join(text, "\n"), err)
	}
	var plans []struct {
		Plan planNode `json:"Plan"`
	}
	if err := json.Unmarshal(raw, &plans); err != nil {
		return nil, err
	}
	var problems []string
	for _, p := range plans {
		// A node the settings priced out (disable_cost, 1e10) that the plan could not do
		// without: the planner then compares alternatives that all carry it, blindly.
		if p.Plan.Cost >= 1e9 || p.Plan.Disabled > 0 {
			problems = append(problems, fmt.Sprintf("a plan of cost %g: it keeps a node its settings priced out", p.Plan.Cost))
		}
		p.Plan.walk(func(n planNode) {
			table := n.Relation
			if table == "" && n.Index != "" {
				table = lead[n.Index].table
			}
			if !hotTables[table] {
				return
			}
			switch n.Type {
			case "Seq Scan", "Tid Scan":
				problems = append(problems, fmt.Sprintf("%s on %s", n.Type, table))
			case "Index Scan", "Index Only Scan", "Bitmap Index Scan":
				col := lead[n.Index].column
				// "(state = …)", or "((state)::text = …)" for a column of a domain over text.
				c := regexp.QuoteMeta(col)
				if !regexp.MustCompile(`\((` + c + `|\(` + c + `\)::[\w."]+) `).MatchString(n.Cond) {
					problems = append(problems, fmt.Sprintf("%s on %s (%s) without a condition on %s: %q", n.Type, n.Index, table, col, n.Cond))
				}
			}
		})
	}
	return problems, nil
}

// planNode is a node of EXPLAIN (FORMAT JSON).
type planNode struct {
	Type     string     `json:"Node Type"`
	Relation string     `json:"Relation Name"`
	Index    string     `json:"Index Name"`
	Cond     string     `json:"Index Cond"`
	Cost     float64    `json:"Total Cost"`
	Disabled int        `json:"Disabled Nodes"` // PostgreSQL 18 counts them instead of adding disable_cost
	Plans    []planNode `json:"Plans"`
}

func (n planNode) walk(f func(planNode)) {
	f(n)
	for _, c := range n.Plans {
		c.walk(f)
	}
}

// leadingColumns maps each index of schema to its table and its first column.
func leadingColumns(ctx context.Context, c *pgx.Conn, schema string) (map[string]struct{ table, column string }, error) {
	rows, err := c.Query(ctx, `
		SELECT ic.relname, tc.relname, a.attname
		  FROM pg_index i
		  JOIN pg_class ic ON ic.oid = i.indexrelid
		  JOIN pg_class tc ON tc.oid = i.indrelid
		  JOIN pg_namespace n ON n.oid = tc.relnamespace
		  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
		 WHERE n.nspname = $1`, schema)
	if err != nil {
		return nil, err
	}
	out := map[string]struct{ table, column string }{}
	for rows.Next() {
		var idx, table, col string
		if err := rows.Scan(&idx, &table, &col); err != nil {
			return nil, err
		}
		out[idx] = struct{ table, column string }{table, col}
	}
	return out, rows.Err()
}

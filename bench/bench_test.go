package main

// Go benchmarks of tasker's hot functions:
//
//	cd bench && go test -run '^$' -bench . -benchtime 2s
//
// Template parsing and DAG building are pure. Step claim, outcome commit and readiness release
// need PostgreSQL (TASKER_DATABASE_URL, default the local server): each benchmark migrates a
// schema of its own (bench_tasker_go_<pid>_<n>) and drops it afterwards. They call the store seam
// (package store/postgres) directly, with the PostgreSQL queue as the enqueuer, because the
// engine's public API runs the three only together; BenchmarkEngineStep measures that whole
// cycle through the engine.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/dag"
	"github.com/tasker-systems/tasker/migrations"
	"github.com/tasker-systems/tasker/queue/pgqueue"
	"github.com/tasker-systems/tasker/store"
	"github.com/tasker-systems/tasker/store/postgres"
)

// Pure functions.

func BenchmarkTemplateParse(b *testing.B) {
	cases := []struct {
		name string
		yaml string
	}{
		{"linear-4", linear4YAML},
		{"diamond-4", diamond4YAML},
		{"chain-100", chainYAML("chain", 100)},
		{"chain-1000", chainYAML("chain", 1000)},
		{"fan-in-1000", fanInYAML("fanin", 1000)},
		{"fan-in-10000", fanInYAML("fanin", 9999)},
	}
	for _, c := range cases {
		src := []byte(c.yaml)
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(src)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tasker.ParseTemplate(src); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func chainNodes(n int) []dag.Node {
	nodes := make([]dag.Node, n)
	for i := range nodes {
		nodes[i].Name = fmt.Sprintf("s%05d", i)
		if i > 0 {
			nodes[i].Deps = []string{nodes[i-1].Name}
		}
	}
	return nodes
}

func fanInNodes(n int) []dag.Node {
	nodes := make([]dag.Node, n+1)
	deps := make([]string, n)
	for i := range n {
		nodes[i].Name = fmt.Sprintf("p%05d", i)
		deps[i] = nodes[i].Name
	}
	nodes[n] = dag.Node{Name: "join", Deps: deps}
	return nodes
}

// layeredNodes is width steps per layer, each depending on two steps of the layer before.
func layeredNodes(layers, width int) []dag.Node {
	var nodes []dag.Node
	for l := range layers {
		for w := range width {
			n := dag.Node{Name: fmt.Sprintf("l%03d_%03d", l, w)}
			if l > 0 {
				n.Deps = []string{fmt.Sprintf("l%03d_%03d", l-1, w), fmt.Sprintf("l%03d_%03d", l-1, (w+1)%width)}
			}
			nodes = append(nodes, n)
		}
	}
	return nodes
}

func BenchmarkDAGBuild(b *testing.B) {
	cases := []struct {
		name  string
		nodes []dag.Node
	}{
		{"diamond-4", []dag.Node{{Name: "a"}, {Name: "b", Deps: []string{"a"}}, {Name: "c", Deps: []string{"a"}}, {Name: "d", Deps: []string{"b", "c"}}}},
		{"chain-1000", chainNodes(1000)},
		{"fan-in-1000", fanInNodes(1000)},
		{"fan-in-10000", fanInNodes(9999)},
		{"layered-100x100", layeredNodes(100, 100)},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := dag.Build(c.nodes); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// The store: claim, outcome commit, readiness release.

var schemaSeq atomic.Int64

type storeRig struct {
	pool  *pgxpool.Pool
	st    *postgres.Store
	enq   queueEnqueuer
	seq   int
	nonce string
}

// queueEnqueuer sends step messages on the PostgreSQL queue, as the engine does (the payload is
// the engine's business; its size here is close to the engine's).
type queueEnqueuer struct{ q *pgqueue.Queue }

func (e queueEnqueuer) EnqueueTx(ctx context.Context, tx pgx.Tx, ns string, steps []store.StepRef, delay time.Duration) error {
	payloads := make([][]byte, len(steps))
	for i, s := range steps {
		p, err := json.Marshal(map[string]any{"task_id": s.TaskID, "step_id": s.StepID, "task": s.TaskName, "version": s.Version, "step": s.Name})
		if err != nil {
			return err
		}
		payloads[i] = p
	}
	return e.q.SendTx(ctx, tx, ns, payloads, delay)
}

func newStoreRig(b *testing.B) *storeRig {
	b.Helper()
	ctx := context.Background()
	url := databaseURL()
	schema := fmt.Sprintf("bench_tasker_go_%d_%d", os.Getpid(), schemaSeq.Add(1))
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		b.Fatal(err)
	}
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	drop := func() {
		if _, err := pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			b.Log(err)
		}
	}
	drop()
	if err := migrations.Migrate(ctx, pool, migrations.WithSchema(schema)); err != nil {
		pool.Close()
		b.Fatalf("migrate (is PostgreSQL at %s?): %v", url, err)
	}
	b.Cleanup(func() { drop(); pool.Close() })
	r := &storeRig{pool: pool, st: postgres.New(pool, postgres.WithSchema(schema)),
		enq: queueEnqueuer{pgqueue.New(pool, pgqueue.WithSchema(schema))}, nonce: schema}
	if err := r.st.RegisterTemplate(ctx, store.RegisterTemplateParams{Namespace: "bench", Name: "t", Version: "1.0.0",
		Definition: json.RawMessage(`{}`), Checksum: "x"}); err != nil {
		b.Fatal(err)
	}
	return r
}

func newStep(name string, parents ...int) store.NewStep {
	return store.NewStep{StepID: uuid.Must(uuid.NewV7()), Name: name, TemplateStep: name, Handler: "noop", Type: "standard",
		MaxAttempts: 3, Retryable: true, Backoff: "exponential", BackoffBase: time.Second, MaxBackoff: 30 * time.Second,
		Timeout: 30 * time.Second, Parents: parents}
}

// createTasks creates n tasks of the shape that mk returns, 100 per transaction, and returns
// their IDs and steps.
func (r *storeRig) createTasks(b *testing.B, n int, mk func() []store.NewStep) ([]uuid.UUID, [][]store.NewStep) {
	b.Helper()
	ctx := context.Background()
	ids := make([]uuid.UUID, 0, n)
	all := make([][]store.NewStep, 0, n)
	for from := 0; from < n; from += 100 {
		err := pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
			for i := from; i < min(from+100, n); i++ {
				r.seq++
				id := uuid.Must(uuid.NewV7())
				steps := mk()
				_, err := r.st.CreateTask(ctx, tx, store.CreateTaskParams{TaskID: id, Namespace: "bench", Name: "t", Version: "1.0.0",
					Context: json.RawMessage(fmt.Sprintf(`{"i":%d}`, r.seq)), IdentityHash: fmt.Sprintf("%s-%d", r.nonce, r.seq),
					Steps: steps, Enqueuer: r.enq})
				if err != nil {
					return err
				}
				ids = append(ids, id)
				all = append(all, steps)
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	return ids, all
}

func (r *storeRig) claim(b *testing.B, stepID uuid.UUID) {
	if _, err := r.st.ClaimStep(context.Background(), store.ClaimStepParams{StepID: stepID, WorkerID: "bench", Lease: 30 * time.Second, Ancestors: []string{}}); err != nil {
		b.Fatal(err)
	}
}

func (r *storeRig) complete(b *testing.B, taskID, stepID uuid.UUID) *store.OutcomeResult {
	res, err := r.st.RecordOutcome(context.Background(), store.OutcomeParams{TaskID: taskID, StepID: stepID, WorkerID: "bench",
		Attempt: 1, Kind: store.OutcomeSuccess, Result: json.RawMessage(`"ok"`), Namespace: "bench", Enqueuer: r.enq})
	if err != nil {
		b.Fatal(err)
	}
	return res
}

// BenchmarkBaseline is the floor under every figure above on this machine: a round trip
// (SELECT 1) and a durable commit (a one-row INSERT in its own transaction, which waits for its
// WAL flush under synchronous_commit=on).
func BenchmarkBaseline(b *testing.B) {
	r := newStoreRig(b)
	ctx := context.Background()
	b.Run("select-1", func(b *testing.B) {
		for b.Loop() {
			if _, err := r.pool.Exec(ctx, "SELECT 1"); err != nil {
				b.Fatal(err)
			}
		}
	})
	if _, err := r.pool.Exec(ctx, "CREATE TABLE "+pgx.Identifier{r.nonce, "baseline"}.Sanitize()+" (v int)"); err != nil {
		b.Fatal(err)
	}
	b.Run("insert-commit", func(b *testing.B) {
		for b.Loop() {
			if _, err := r.pool.Exec(ctx, "INSERT INTO "+pgx.Identifier{r.nonce, "baseline"}.Sanitize()+" VALUES (1)"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkStepClaim claims enqueued root steps (enqueued → in_progress, lease, transition, and
// the loading of the task and of the ancestors' results: one pipelined round trip).
func BenchmarkStepClaim(b *testing.B) {
	r := newStoreRig(b)
	const width = 100
	_, tasks := r.createTasks(b, (b.N+width-1)/width, func() []store.NewStep {
		steps := make([]store.NewStep, width)
		for i := range steps {
			steps[i] = newStep(fmt.Sprintf("r%03d", i))
		}
		return steps
	})
	b.ResetTimer()
	for i := range b.N {
		r.claim(b, tasks[i/width][i%width].StepID)
	}
}

// BenchmarkOutcomeCommit records successful outcomes of claimed steps, each in its transaction:
// leaf-finalize is a one-step task (the task completes), chain-release is the first step of a
// two-step chain (the second is released and enqueued), join-parent is one parent of a 10-parent
// join (nine outcomes only count down the join; the tenth releases it).
func BenchmarkOutcomeCommit(b *testing.B) {
	b.Run("leaf-finalize", func(b *testing.B) {
		r := newStoreRig(b)
		ids, tasks := r.createTasks(b, b.N, func() []store.NewStep { return []store.NewStep{newStep("only")} })
		for _, t := range tasks {
			r.claim(b, t[0].StepID)
		}
		b.ResetTimer()
		for i := range b.N {
			if res := r.complete(b, ids[i], tasks[i][0].StepID); !res.Settled {
				b.Fatalf("task %s: %s, not settled", ids[i], res.TaskState)
			}
		}
	})
	b.Run("chain-release", func(b *testing.B) {
		r := newStoreRig(b)
		ids, tasks := r.createTasks(b, b.N, func() []store.NewStep { return []store.NewStep{newStep("s1"), newStep("s2", 0)} })
		for _, t := range tasks {
			r.claim(b, t[0].StepID)
		}
		b.ResetTimer()
		for i := range b.N {
			if res := r.complete(b, ids[i], tasks[i][0].StepID); res.Released != 1 {
				b.Fatalf("released %d", res.Released)
			}
		}
	})
	b.Run("join-parent", func(b *testing.B) {
		r := newStoreRig(b)
		const parents = 10
		n := (b.N + parents - 1) / parents
		ids, tasks := r.createTasks(b, n, func() []store.NewStep {
			steps := make([]store.NewStep, parents+1)
			idx := make([]int, parents)
			for i := range parents {
				steps[i], idx[i] = newStep(fmt.Sprintf("p%02d", i)), i
			}
			steps[parents] = newStep("join", idx...)
			return steps
		})
		for _, t := range tasks {
			for _, s := range t[:parents] {
				r.claim(b, s.StepID)
			}
		}
		b.ResetTimer()
		for i := range b.N {
			t := i / parents
			r.complete(b, ids[t], tasks[t][i%parents].StepID)
		}
	})
}

// BenchmarkReadinessRelease records the outcome of a root step with k children, all of which it
// releases and enqueues in the outcome's transaction; ns/op is per outcome.
func BenchmarkReadinessRelease(b *testing.B) {
	for _, k := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("children-%d", k), func(b *testing.B) {
			r := newStoreRig(b)
			ids, tasks := r.createTasks(b, b.N, func() []store.NewStep {
				steps := make([]store.NewStep, k+1)
				steps[0] = newStep("root")
				for i := 1; i <= k; i++ {
					steps[i] = newStep(fmt.Sprintf("c%03d", i), 0)
				}
				return steps
			})
			for _, t := range tasks {
				r.claim(b, t[0].StepID)
			}
			b.ResetTimer()
			for i := range b.N {
				if res := r.complete(b, ids[i], tasks[i][0].StepID); res.Released != k {
					b.Fatalf("released %d of %d", res.Released, k)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*k), "ns/child")
		})
	}
}

// BenchmarkEngineStep runs 50-step chains through the engine, one chain per op; ns/step is a
// handler's return, the outcome commit with the release of the next step, its notification, the
// queue read, the claim and the next handler's start, as a user's workflow sees them.
func BenchmarkEngineStep(b *testing.B) {
	const chain = 50
	ctx := context.Background()
	schema := fmt.Sprintf("bench_tasker_go_%d_%d", os.Getpid(), schemaSeq.Add(1))
	cfg, err := pgxpool.ParseConfig(databaseURL())
	if err != nil {
		b.Fatal(err)
	}
	cfg.MaxConns = 20
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	if err := migrations.Migrate(ctx, pool, migrations.WithSchema(schema)); err != nil {
		b.Fatal(err)
	}
	defer func() {
		if _, err := pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			b.Log(err)
		}
	}()
	engine, err := tasker.NewEngine(tasker.Config{Store: postgres.New(pool, postgres.WithSchema(schema))})
	if err != nil {
		b.Fatal(err)
	}
	tmpl, err := tasker.ParseTemplate([]byte(chainYAML("chain", chain)))
	if err != nil {
		b.Fatal(err)
	}
	if err := engine.Register(tmpl); err != nil {
		b.Fatal(err)
	}
	engine.HandleFunc("mark", func(context.Context, *tasker.Step) (any, error) { return nil, nil })
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = engine.RunWorkers(wctx) }()
	defer func() { stop(); wg.Wait() }()
	run := func(i int) {
		task, err := engine.CreateTask(ctx, tasker.TaskRequest{Namespace: "bench", Name: "chain", Context: map[string]any{"run": i, "schema": schema}})
		if err != nil {
			b.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if task, err = engine.WaitTask(wctx, task.ID); err != nil {
			b.Fatal(err)
		}
		if task.State != tasker.TaskComplete {
			b.Fatalf("task %s", task.State)
		}
	}
	run(-1) // warm up: connections, template registry
	b.ResetTimer()
	for i := range b.N {
		run(i)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*chain), "ns/step")
}

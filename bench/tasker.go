package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/migrations"
	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store/postgres"
)

// taskerRig is one tasker engine on a fresh schema, with its own pool.
type taskerRig struct {
	b      *bench
	schema string
	pool   *pgxpool.Pool
	engine *tasker.Engine
	meter  *xactMeter
	stmts  *stmtCounter
	stop   context.CancelFunc
	done   chan error
	closed bool
	tx     int64
}

// newTasker migrates a fresh schema and returns an engine with the templates registered. Its
// workers do not run until start.
func (b *bench) newTasker(ctx context.Context, concurrency int, templates ...string) (*taskerRig, error) {
	b.settle(ctx)
	schema, err := b.freshSchema(ctx, "bench_tasker")
	if err != nil {
		return nil, err
	}
	if err := b.withConn(ctx, "", func(c *pgx.Conn) error {
		return migrations.Migrate(ctx, c, migrations.WithSchema(schema))
	}); err != nil {
		return nil, fmt.Errorf("migrate %s: %w", schema, err)
	}
	var params map[string]string
	if b.o.stmtLog {
		params = map[string]string{"log_min_duration_statement": "0"}
	}
	stmts := &stmtCounter{prof: b.sqlProf}
	pool, err := b.pool(ctx, "", params, stmts)
	if err != nil {
		return nil, err
	}
	engine, err := tasker.NewEngine(tasker.Config{Store: postgres.New(pool, postgres.WithSchema(schema)), Concurrency: concurrency})
	if err != nil {
		pool.Close()
		return nil, err
	}
	for _, y := range templates {
		t, err := tasker.ParseTemplate([]byte(y))
		if err != nil {
			pool.Close()
			return nil, err
		}
		if err := engine.Register(t); err != nil {
			pool.Close()
			return nil, err
		}
	}
	return &taskerRig{b: b, schema: schema, pool: pool, engine: engine, stmts: stmts, meter: b.meter(ctx, "")}, nil
}

// start runs the engine's workers until close.
func (r *taskerRig) start() {
	ctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	r.done = make(chan error, 1)
	go func() { r.done <- r.engine.RunWorkers(ctx) }()
}

// failed returns RunWorkers' error if it returned early.
func (r *taskerRig) failed() error {
	if r.done == nil {
		return nil
	}
	select {
	case err := <-r.done:
		r.done <- err
		if err == nil {
			err = errors.New("RunWorkers returned")
		}
		return err
	default:
		return nil
	}
}

// close stops the workers, closes the pool and drops the schema; it returns the database
// transactions counted since newTasker (-1 when unknown).
func (r *taskerRig) close(ctx context.Context) int64 {
	if r.closed {
		return r.tx
	}
	r.closed = true
	if r.stop != nil {
		r.stop()
		if err := <-r.done; err != nil {
			r.b.logf("tasker RunWorkers: %v", err)
		}
	}
	r.pool.Close()
	r.tx = r.meter.stop(ctx)
	r.b.dropSchema(r.schema)
	return r.tx
}

// run creates a task and waits for it to complete.
func (r *taskerRig) run(ctx context.Context, name string, i int) (*tasker.Task, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	task, err := r.engine.CreateTask(ctx, r.request(name, i))
	if err != nil {
		return nil, err
	}
	return r.wait(ctx, task)
}

func (r *taskerRig) request(name string, i int) tasker.TaskRequest {
	// Strict identity: the nonce and i make every context, so every task, new.
	return tasker.TaskRequest{Namespace: "bench", Name: name, Context: map[string]any{"i": i, "run": r.b.nonce}}
}

func (r *taskerRig) wait(ctx context.Context, task *tasker.Task) (*tasker.Task, error) {
	t, err := r.engine.WaitTask(ctx, task.ID)
	if err != nil {
		if ferr := r.failed(); ferr != nil {
			return nil, ferr
		}
		return nil, err
	}
	if t.State != tasker.TaskComplete {
		return nil, fmt.Errorf("task %s (%s) ended %s", t.ID, t.Name, t.State)
	}
	return t, nil
}

func noop(_ context.Context, s *tasker.Step) (any, error) { return s.Name, nil }

// taskerHandoff runs chains of ChainLen steps one after the other; a sample is the time from a
// handler's return to the next step's handler start (outcome commit, notify, read, claim).
func (b *bench) taskerHandoff(ctx context.Context) error {
	sz := b.o.sz
	r, err := b.newTasker(ctx, 0, chainYAML("chain", sz.ChainLen), chainYAML("warm", 10))
	if err != nil {
		return err
	}
	defer r.close(ctx)
	var (
		mu   sync.Mutex
		last time.Time
		gaps []time.Duration
	)
	r.engine.HandleFunc("mark", func(_ context.Context, s *tasker.Step) (any, error) {
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		if s.TaskName == "chain" && s.Name != "s000" {
			gaps = append(gaps, now.Sub(last))
		}
		last = time.Now()
		return nil, nil
	})
	r.start()
	if _, err := r.run(ctx, "warm", -1); err != nil {
		return err
	}
	c0 := r.stmts.snapshot()
	t0 := time.Now()
	for c := range sz.Chains {
		if _, err := r.run(ctx, "chain", c); err != nil {
			return err
		}
	}
	elapsed := time.Since(t0)
	d := r.stmts.since(c0)
	tx := r.close(ctx)
	res := Result{Scenario: "handoff", System: "tasker"}.withLatencies(gaps)
	res.set("steps_per_s", float64(sz.Chains*sz.ChainLen)/elapsed.Seconds())
	res.perUnit("step", sz.Chains*sz.ChainLen, d, tx, sz.Chains*sz.ChainLen+10)
	b.sqlProfUnits, b.sqlProfUnit = b.sqlProfUnits+sz.Chains*sz.ChainLen+10, "step"
	res.Note = fmt.Sprintf("%s of %d steps", plural(sz.Chains, "chain"), sz.ChainLen)
	b.add(res)
	b.handoffSamples = append(b.handoffSamples, series{Label: "tasker", Samples: gaps})
	return nil
}

// taskerLatency runs linear-4 and diamond-4 tasks one at a time, CreateTask to WaitTask, on one
// engine, and returns a result per shape.
func (b *bench) taskerLatency(ctx context.Context) ([]Result, error) {
	r, err := b.newTasker(ctx, 0, linear4YAML, diamond4YAML)
	if err != nil {
		return nil, err
	}
	defer r.close(ctx)
	r.engine.HandleFunc("noop", noop)
	r.start()
	var out []Result
	for _, sh := range latencyShapes {
		for i := range b.o.sz.Warmup {
			if _, err := r.run(ctx, sh.name, -1-i); err != nil {
				return nil, err
			}
		}
		ds := make([]time.Duration, 0, b.o.sz.LatencyTasks)
		c0 := r.stmts.snapshot()
		for i := range b.o.sz.LatencyTasks {
			t0 := time.Now()
			if _, err := r.run(ctx, sh.name, i); err != nil {
				return nil, err
			}
			ds = append(ds, time.Since(t0))
		}
		res := Result{Scenario: sh.label, System: "tasker"}.withLatencies(ds)
		res.perUnit("task", b.o.sz.LatencyTasks, r.stmts.since(c0), -1, 0)
		res.Note = "one task at a time, CreateTask to WaitTask"
		out = append(out, res)
	}
	return out, nil
}

// unsettledStates are the task states WaitTask would wait on.
func unsettledStates() []tasker.TaskState {
	var out []tasker.TaskState
	for _, s := range statemachine.TaskStates() {
		if !s.Settled() {
			out = append(out, s)
		}
	}
	return out
}

// waitAllSettled polls until no task is unsettled, then checks that none failed.
func (r *taskerRig) waitAllSettled(ctx context.Context) error {
	states := unsettledStates()
	for {
		ts, err := r.engine.ListTasks(ctx, tasker.ListOptions{States: states, Limit: 1})
		if err != nil {
			return err
		}
		if len(ts) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	bad, err := r.engine.ListTasks(ctx, tasker.ListOptions{States: []tasker.TaskState{tasker.TaskError, tasker.TaskBlockedByFailures, tasker.TaskCancelled}, Limit: 1})
	if err != nil {
		return err
	}
	if len(bad) > 0 {
		return fmt.Errorf("task %s ended %s", bad[0].ID, bad[0].State)
	}
	return nil
}

// taskerThroughput creates ThroughputTasks one-step tasks in bulk (CreateTaskTx, 250 per
// transaction, 4 transactions at a time), then starts Workers workers and times them to the
// last task's completion.
func (b *bench) taskerThroughput(ctx context.Context) error {
	sz := b.o.sz
	r, err := b.newTasker(ctx, sz.Workers, oneStepYAML)
	if err != nil {
		return err
	}
	defer r.close(ctx)
	var ran atomic.Int64
	all := make(chan struct{})
	r.engine.HandleFunc("count", func(context.Context, *tasker.Step) (any, error) {
		if ran.Add(1) == int64(sz.ThroughputTasks)+1 { // the tasks and the first one
			close(all)
		}
		return nil, nil
	})
	// One task created on its own first, as a running service will have done, so that the
	// template's registry row exists before the parallel bulk transactions: the first insert of
	// that row would make the others wait for its transaction to end.
	if _, err := r.engine.CreateTask(ctx, r.request("one", -1)); err != nil {
		return err
	}
	c0 := r.stmts.snapshot()
	tc := time.Now()
	if err := r.createBulk(ctx, "one", sz.ThroughputTasks, 250, 4); err != nil {
		return err
	}
	created := time.Since(tc)
	b.logf("  tasker: created %d tasks in %s", sz.ThroughputTasks, created.Round(time.Millisecond))
	t0 := time.Now()
	r.start()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if err := awaitProgress(wctx, all, &ran); err != nil {
		return fmt.Errorf("tasker throughput: %d of %d ran: %w", ran.Load(), sz.ThroughputTasks+1, err)
	}
	if err := r.waitAllSettled(wctx); err != nil {
		return err
	}
	elapsed := time.Since(t0)
	d := r.stmts.since(c0)
	tx := r.close(ctx)
	res := Result{Scenario: "throughput 1-step", System: "tasker", N: sz.ThroughputTasks}
	res.set("tasks_per_s", float64(sz.ThroughputTasks)/elapsed.Seconds())
	res.set("created_per_s", float64(sz.ThroughputTasks)/created.Seconds())
	res.perUnit("task", sz.ThroughputTasks, d, tx, sz.ThroughputTasks)
	res.Note = fmt.Sprintf("%d workers; created before the workers start (CreateTaskTx, 250 per tx, 4 tx at a time, after one CreateTask)", sz.Workers)
	b.add(res)
	return nil
}

// createBulk creates n tasks of a template with CreateTaskTx, per transactions of batch tasks,
// par transactions at a time.
func (r *taskerRig) createBulk(ctx context.Context, name string, n, batch, par int) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, par)
	for range par {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				from := int(next.Add(int64(batch))) - batch
				if from >= n {
					return
				}
				to := min(from+batch, n)
				err := pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
					for i := from; i < to; i++ {
						if _, err := r.engine.CreateTaskTx(ctx, tx, r.request(name, i)); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// taskerDAG runs DAGTasks diamond tasks with DAGInFlight of them in flight.
func (b *bench) taskerDAG(ctx context.Context) error {
	sz := b.o.sz
	r, err := b.newTasker(ctx, sz.Workers, diamond4YAML)
	if err != nil {
		return err
	}
	defer r.close(ctx)
	r.engine.HandleFunc("noop", noop)
	r.start()
	for i := range sz.Warmup {
		if _, err := r.run(ctx, "diamond4", -1-i); err != nil {
			return err
		}
	}
	c0 := r.stmts.snapshot()
	ds, elapsed, err := inFlight(ctx, sz.DAGTasks, sz.DAGInFlight, func(ctx context.Context, i int) error {
		_, err := r.run(ctx, "diamond4", i)
		return err
	})
	if err != nil {
		return err
	}
	d := r.stmts.since(c0)
	tx := r.close(ctx)
	res := Result{Scenario: "dag throughput", System: "tasker"}.withLatencies(ds)
	res.set("tasks_per_s", float64(sz.DAGTasks)/elapsed.Seconds())
	res.set("steps_per_s", 4*float64(sz.DAGTasks)/elapsed.Seconds())
	res.perUnit("task", sz.DAGTasks, d, tx, sz.DAGTasks+sz.Warmup)
	res.Note = fmt.Sprintf("diamond-4, %d in flight, %d workers; percentiles are per task", sz.DAGInFlight, sz.Workers)
	b.add(res)
	return nil
}

// inFlight calls fn for i in [0, n) from par goroutines and returns each call's duration and the
// total time.
func inFlight(ctx context.Context, n, par int, fn func(context.Context, int) error) ([]time.Duration, time.Duration, error) {
	var next atomic.Int64
	var mu sync.Mutex
	ds := make([]time.Duration, 0, n)
	var firstErr error
	var wg sync.WaitGroup
	t0 := time.Now()
	for range par {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				s := time.Now()
				err := fn(ctx, i)
				d := time.Since(s)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				ds = append(ds, d)
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	return ds, time.Since(t0), firstErr
}

// taskerScale runs one task of FanOut parallel steps joined into one, and creates (without
// running) one task of BigTask steps.
func (b *bench) taskerScale(ctx context.Context) error {
	sz := b.o.sz
	r, err := b.newTasker(ctx, sz.Workers, fanInYAML("fanin", sz.FanOut))
	if err != nil {
		return err
	}
	r.engine.HandleFunc("noop", noop)
	r.start()
	t0 := time.Now()
	task, err := r.engine.CreateTask(ctx, r.request("fanin", 0))
	if err != nil {
		r.close(ctx)
		return err
	}
	created := time.Since(t0)
	if _, err := r.wait(ctx, task); err != nil {
		r.close(ctx)
		return err
	}
	elapsed := time.Since(t0)
	r.close(ctx)
	res := Result{Scenario: "scale fan-in", System: "tasker", N: sz.FanOut + 1}
	res.set("seconds", elapsed.Seconds())
	res.set("create_seconds", created.Seconds())
	res.set("steps_per_s", float64(sz.FanOut+1)/elapsed.Seconds())
	res.Note = fmt.Sprintf("%d parallel steps joined into one, CreateTask to WaitTask, %d workers", sz.FanOut, sz.Workers)
	b.add(res)

	// The big task: parse and register its template, then create it; no worker runs.
	tp := time.Now()
	y := fanInYAML("big", sz.BigTask-1)
	tmpl, err := tasker.ParseTemplate([]byte(y))
	if err != nil {
		return err
	}
	parsed := time.Since(tp)
	r, err = b.newTasker(ctx, 0)
	if err != nil {
		return err
	}
	defer r.close(ctx)
	if err := r.engine.Register(tmpl); err != nil {
		return err
	}
	t0 = time.Now()
	if _, err := r.engine.CreateTask(ctx, r.request("big", 0)); err != nil {
		return err
	}
	created = time.Since(t0)
	res = Result{Scenario: "scale create", System: "tasker", N: sz.BigTask}
	res.set("seconds", created.Seconds())
	res.Note = fmt.Sprintf("CreateTask of %d steps (%d roots + a join; first use, so the template is written too); ParseTemplate took %.3f s",
		sz.BigTask, sz.BigTask-1, parsed.Seconds())
	b.add(res)
	return nil
}

// taskerIdle measures the transactions an idle engine (workers running, nothing to do) causes.
func (b *bench) taskerIdle(ctx context.Context) error {
	r, err := b.newTasker(ctx, 0, linear4YAML)
	if err != nil {
		return err
	}
	defer r.close(ctx)
	r.engine.HandleFunc("noop", noop)
	r.start()
	res := Result{Scenario: "idle", System: "tasker"}
	if err := b.idleRate(ctx, "", r.stmts, &res); err != nil {
		return err
	}
	if err := r.failed(); err != nil {
		return err
	}
	res.Note = fmt.Sprintf("one engine, one namespace, workers running, nothing to do; over %s", b.o.sz.IdleWindow)
	b.add(res)
	return nil
}

// idleRate waits IdleWarmup, then counts the statements and round trips a system sends (c) and
// the transactions of its database over IdleWindow, and sets them per second in res.
func (b *bench) idleRate(ctx context.Context, database string, c *stmtCounter, res *Result) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(b.o.sz.IdleWarmup):
	}
	n0, self, err := b.xacts(ctx, database)
	if err != nil {
		return err
	}
	c0 := c.snapshot()
	t0 := time.Now()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(b.o.sz.IdleWindow):
	}
	d, secs := c.since(c0), time.Since(t0).Seconds()
	n1, _, err := b.xacts(ctx, database)
	if err != nil {
		return err
	}
	res.set("stmts_per_s", float64(d.stmts)/secs)
	res.set("trips_per_s", float64(d.trips)/secs)
	res.set("tx_per_s", float64(n1-n0-self)/secs)
	return nil
}

// errStalled is returned when a throughput run stops making progress.
var errStalled = errors.New("no progress for a minute")

// awaitProgress waits for done, failing when the counter has not moved for a minute.
func awaitProgress(ctx context.Context, done <-chan struct{}, counter *atomic.Int64) error {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	last, since := counter.Load(), time.Now()
	for {
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			if n := counter.Load(); n != last {
				last, since = n, time.Now()
			} else if time.Since(since) > time.Minute {
				return errStalled
			}
		}
	}
}

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tasker-systems/tasker"
)

func noop(_ context.Context, s *tasker.Step) (any, error) { return s.Name, nil }

// taskerHandoff runs chains of ChainLen steps one after the other on a backend; a sample is the
// time from a handler's return to the next step's handler start (outcome commit, notify, read,
// claim).
func (b *bench) taskerHandoff(ctx context.Context, be backend) error {
	sz := b.o.sz
	r, err := b.newTasker(ctx, be, 0, chainYAML("chain", sz.ChainLen), chainYAML("warm", 10))
	if reason, ok := skipReason(err); ok {
		b.skipped("handoff", be, reason)
		return nil
	}
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
	res := r.result("handoff").withLatencies(gaps)
	res.set("steps_per_s", float64(sz.Chains*sz.ChainLen)/elapsed.Seconds())
	r.perUnit(&res, "step", sz.Chains*sz.ChainLen, d, tx, sz.Chains*sz.ChainLen+10)
	if be == backendPG {
		b.sqlProfUnits, b.sqlProfUnit = b.sqlProfUnits+sz.Chains*sz.ChainLen+10, "step"
	}
	res.Note = fmt.Sprintf("%s of %d steps%s", plural(sz.Chains, "chain"), sz.ChainLen, r.noteSuffix())
	b.add(res)
	b.handoffSamples = append(b.handoffSamples, series{Label: r.label(), Samples: gaps})
	return nil
}

// taskerLatency runs linear-4 and diamond-4 tasks one at a time, CreateTask to WaitTask, on one
// engine, and returns a result per shape.
func (b *bench) taskerLatency(ctx context.Context) ([]Result, error) {
	r, err := b.newTasker(ctx, backendPG, 0, linear4YAML, diamond4YAML)
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
		cpu0, wal0 := b.dbCPU(ctx), b.walBytes(ctx)
		for i := range b.o.sz.LatencyTasks {
			tl.reset()
			t0 := time.Now()
			if _, err := r.run(ctx, sh.name, i); err != nil {
				return nil, err
			}
			ds = append(ds, time.Since(t0))
			if tl.on && i >= b.o.sz.LatencyTasks-3 {
				fmt.Fprintf(os.Stderr, "timeline of %s task %d: %s\n", sh.name, i, time.Since(t0))
				tl.print(os.Stderr, t0)
			}
		}
		r.tableStats(ctx, sh.name)
		if cpu := b.dbCPU(ctx) - cpu0; cpu > 0 {
			b.logf("  %s %s: server CPU %s, %.0f µs per task; WAL %.0f bytes per task", r.label(), sh.name, cpu,
				float64(cpu.Microseconds())/float64(b.o.sz.LatencyTasks), float64(b.walBytes(ctx)-wal0)/float64(b.o.sz.LatencyTasks))
		}
		res := r.result(sh.label).withLatencies(ds)
		res.perUnit("task", b.o.sz.LatencyTasks, r.stmts.since(c0), -1, 0)
		res.Note = "one task at a time, CreateTask to WaitTask"
		out = append(out, res)
	}
	return out, nil
}

// taskerThroughput creates ThroughputTasks one-step tasks in bulk, then starts Workers workers
// and times them to the last task's completion. On PostgreSQL's own queue the tasks are created
// with CreateTaskTx, 250 per transaction, 4 transactions at a time; on RabbitMQ and in memory with
// CreateTask, 8 at a time (see createEach).
func (b *bench) taskerThroughput(ctx context.Context, be backend) error {
	sz := b.o.sz
	r, err := b.newTasker(ctx, be, sz.Workers, oneStepYAML)
	if reason, ok := skipReason(err); ok {
		b.skipped("throughput 1-step", be, reason)
		return nil
	}
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
	creation := "CreateTaskTx, 250 per tx, 4 tx at a time, after one CreateTask"
	if be == backendPG {
		err = r.createBulk(ctx, "one", sz.ThroughputTasks, 250, 4)
	} else {
		creation = "CreateTask, 8 at a time"
		err = r.createEach(ctx, "one", sz.ThroughputTasks, 8)
	}
	if err != nil {
		return err
	}
	created := time.Since(tc)
	b.logf("  %s: created %d tasks in %s", r.label(), sz.ThroughputTasks, created.Round(time.Millisecond))
	cpu0, wal0 := b.dbCPU(ctx), b.walBytes(ctx)
	t0 := time.Now()
	r.start()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if err := awaitProgress(wctx, all, &ran); err != nil {
		return fmt.Errorf("%s throughput: %d of %d ran: %w", r.label(), ran.Load(), sz.ThroughputTasks+1, err)
	}
	if err := r.waitAllSettled(wctx); err != nil {
		return err
	}
	elapsed := time.Since(t0)
	r.tableStats(ctx, "throughput")
	if cpu := b.dbCPU(ctx) - cpu0; cpu > 0 && r.pool != nil {
		b.logf("  %s: server CPU %s, %.0f µs per task; WAL %.0f bytes per task", r.label(), cpu,
			float64(cpu.Microseconds())/float64(sz.ThroughputTasks), float64(b.walBytes(ctx)-wal0)/float64(sz.ThroughputTasks))
	}
	d := r.stmts.since(c0)
	tx := r.close(ctx)
	res := r.result("throughput 1-step")
	res.N = sz.ThroughputTasks
	res.set("tasks_per_s", float64(sz.ThroughputTasks)/elapsed.Seconds())
	res.set("created_per_s", float64(sz.ThroughputTasks)/created.Seconds())
	r.perUnit(&res, "task", sz.ThroughputTasks, d, tx, sz.ThroughputTasks)
	res.Note = fmt.Sprintf("%d workers; created before the workers start (%s)%s", sz.Workers, creation, r.noteSuffix())
	b.add(res)
	return nil
}

// taskerDAG runs DAGTasks diamond tasks with DAGInFlight of them in flight, on a backend.
func (b *bench) taskerDAG(ctx context.Context, be backend) error {
	sz := b.o.sz
	r, err := b.newTasker(ctx, be, sz.Workers, diamond4YAML)
	if reason, ok := skipReason(err); ok {
		b.skipped("dag throughput", be, reason)
		return nil
	}
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
	cpu0, self0, wal0 := b.dbCPU(ctx), selfCPU(), b.walBytes(ctx)
	ds, elapsed, err := inFlight(ctx, sz.DAGTasks, sz.DAGInFlight, func(ctx context.Context, i int) error {
		_, err := r.run(ctx, "diamond4", i)
		return err
	})
	if err != nil {
		return err
	}
	b.logCPU(ctx, r.label(), cpu0, self0, wal0, sz.DAGTasks, "task")
	r.tableStats(ctx, "dag")
	d := r.stmts.since(c0)
	tx := r.close(ctx)
	res := r.result("dag throughput").withLatencies(ds)
	res.set("tasks_per_s", float64(sz.DAGTasks)/elapsed.Seconds())
	res.set("steps_per_s", 4*float64(sz.DAGTasks)/elapsed.Seconds())
	r.perUnit(&res, "task", sz.DAGTasks, d, tx, sz.DAGTasks+sz.Warmup)
	res.Note = fmt.Sprintf("diamond-4, %d in flight, %d workers; percentiles are per task%s", sz.DAGInFlight, sz.Workers, r.noteSuffix())
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
	r, err := b.newTasker(ctx, backendPG, sz.Workers, fanInYAML("fanin", sz.FanOut))
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
	res := r.result("scale fan-in")
	res.N = sz.FanOut + 1
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
	r, err = b.newTasker(ctx, backendPG, 0)
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
	res = r.result("scale create")
	res.N = sz.BigTask
	res.set("seconds", created.Seconds())
	res.Note = fmt.Sprintf("CreateTask of %d steps (%d roots + a join; first use, so the template is written too); ParseTemplate took %.3f s",
		sz.BigTask, sz.BigTask-1, parsed.Seconds())
	b.add(res)
	return nil
}

// taskerIdle measures the transactions an idle engine (workers running, nothing to do) causes.
func (b *bench) taskerIdle(ctx context.Context) error {
	r, err := b.newTasker(ctx, backendPG, 0, linear4YAML)
	if err != nil {
		return err
	}
	defer r.close(ctx)
	r.engine.HandleFunc("noop", noop)
	r.start()
	res := r.result("idle")
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

package main

import (
	"context"
	"fmt"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// dbosRig is one DBOS context on a fresh database of its own.
type dbosRig struct {
	b      *bench
	ctx    dbos.Context
	pool   *pgxpool.Pool
	meter  *xactMeter
	stmts  *stmtCounter
	closed bool
	tx     int64
}

// newDBOS drops and re-creates the DBOS database, then launches DBOS on it with the bench's
// workflows registered. DBOS migrates its own schema (dbos) at launch.
func (b *bench) newDBOS(ctx context.Context) (*dbosRig, error) {
	b.settle(ctx)
	db := pgx.Identifier{b.dbosDB}.Sanitize()
	if err := b.exec(ctx, "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)"); err != nil {
		return nil, err
	}
	if err := b.exec(ctx, "CREATE DATABASE "+db); err != nil {
		return nil, err
	}
	// The pool DBOS would make from a URL (20 connections, lifetimes, the idle-in-transaction
	// timeout), with the statement counter; the pool size is the bench's, like the others'.
	stmts := &stmtCounter{}
	cfg, err := b.poolConfig(b.dbosDB, nil, stmts)
	if err != nil {
		return nil, err
	}
	cfg.MaxConnLifetime, cfg.MaxConnIdleTime = time.Hour, 5*time.Minute
	cfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, "SET idle_in_transaction_session_timeout = 60000")
		return err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	dctx, err := dbos.NewContext(context.WithoutCancel(ctx), dbos.Config{
		AppName:      "tasker-bench",
		SystemDBPool: pool,
		Logger:       quietLogger(),
	})
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("dbos: %w", err)
	}
	dbos.RegisterWorkflow(dctx, dbosLinear4)
	dbos.RegisterWorkflow(dctx, dbosDiamond4)
	dbos.RegisterWorkflow(dctx, dbosFanIn)
	if err := dbos.Launch(dctx); err != nil {
		dbos.Shutdown(dctx, time.Second)
		pool.Close()
		return nil, fmt.Errorf("dbos launch: %w", err)
	}
	return &dbosRig{b: b, ctx: dctx, pool: pool, stmts: stmts, meter: b.meter(ctx, b.dbosDB)}, nil
}

// close shuts DBOS down and drops its database; it returns the transactions counted in that
// database since launch (-1 when unknown).
func (r *dbosRig) close(ctx context.Context) int64 {
	if r.closed {
		return r.tx
	}
	r.closed = true
	if err := dbos.Shutdown(r.ctx, 10*time.Second); err != nil {
		r.b.logf("dbos shutdown: %v", err)
	}
	r.pool.Close()
	r.tx = r.meter.stop(ctx)
	if err := r.b.exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{r.b.dbosDB}.Sanitize()+" WITH (FORCE)"); err != nil {
		r.b.logf("drop DBOS database: %v", err)
	}
	return r.tx
}

// run starts a workflow and waits for its result.
func dbosRun(r *dbosRig, wf dbos.Workflow[int, int], in int) error {
	h, err := dbos.RunWorkflow(r.ctx, wf, in)
	if err != nil {
		return err
	}
	_, err = h.GetResult()
	return err
}

func step(v int) dbos.Step[int] { return func(context.Context) (int, error) { return v, nil } }

// dbosLinear4 is four steps one after the other, each checkpointed.
func dbosLinear4(ctx dbos.Context, in int) (int, error) {
	v := in
	for _, name := range []string{"s1", "s2", "s3", "s4"} {
		var err error
		if v, err = dbos.RunAsStep(ctx, step(v+1), dbos.WithStepName(name)); err != nil {
			return 0, err
		}
	}
	return v, nil
}

// dbosDiamond4 is a, then b and c at once (dbos.Go), then d.
func dbosDiamond4(ctx dbos.Context, in int) (int, error) {
	a, err := dbos.RunAsStep(ctx, step(in+1), dbos.WithStepName("a"))
	if err != nil {
		return 0, err
	}
	cb, err := dbos.Go(ctx, step(a*2), dbos.WithStepName("b"))
	if err != nil {
		return 0, err
	}
	cc, err := dbos.Go(ctx, step(a*3), dbos.WithStepName("c"))
	if err != nil {
		return 0, err
	}
	ob, oc := <-cb, <-cc
	if ob.Err != nil {
		return 0, ob.Err
	}
	if oc.Err != nil {
		return 0, oc.Err
	}
	return dbos.RunAsStep(ctx, step(ob.Result+oc.Result), dbos.WithStepName("d"))
}

// dbosFanIn is n steps at once (dbos.Go), then one that joins them.
func dbosFanIn(ctx dbos.Context, n int) (int, error) {
	chs := make([]<-chan dbos.StepOutcome[int], n)
	for i := range chs {
		ch, err := dbos.Go(ctx, step(1), dbos.WithStepName(fmt.Sprintf("p%05d", i)))
		if err != nil {
			return 0, err
		}
		chs[i] = ch
	}
	sum := 0
	for _, ch := range chs {
		o := <-ch
		if o.Err != nil {
			return 0, o.Err
		}
		sum += o.Result
	}
	return dbos.RunAsStep(ctx, step(sum), dbos.WithStepName("join"))
}

func dbosWorkflow(name string) dbos.Workflow[int, int] {
	if name == "diamond4" {
		return dbosDiamond4
	}
	return dbosLinear4
}

// dbosLatency runs linear-4 and diamond-4 workflows one at a time, RunWorkflow to GetResult, and
// returns a result per shape.
func (b *bench) dbosLatency(ctx context.Context) ([]Result, error) {
	r, err := b.newDBOS(ctx)
	if err != nil {
		return nil, err
	}
	defer r.close(ctx)
	var out []Result
	for _, sh := range latencyShapes {
		wf := dbosWorkflow(sh.name)
		for i := range b.o.sz.Warmup {
			if err := dbosRun(r, wf, -1-i); err != nil {
				return nil, err
			}
		}
		ds := make([]time.Duration, 0, b.o.sz.LatencyTasks)
		c0 := r.stmts.snapshot()
		for i := range b.o.sz.LatencyTasks {
			t0 := time.Now()
			if err := dbosRun(r, wf, i); err != nil {
				return nil, err
			}
			ds = append(ds, time.Since(t0))
		}
		res := Result{Scenario: sh.label, System: "dbos"}.withLatencies(ds)
		res.perUnit("task", b.o.sz.LatencyTasks, r.stmts.since(c0), -1, 0)
		res.Note = "one workflow at a time, RunWorkflow to GetResult"
		out = append(out, res)
	}
	return out, nil
}

func (b *bench) dbosDAG(ctx context.Context) error {
	sz := b.o.sz
	r, err := b.newDBOS(ctx)
	if err != nil {
		return err
	}
	defer r.close(ctx)
	for i := range sz.Warmup {
		if err := dbosRun(r, dbosDiamond4, -i); err != nil {
			return err
		}
	}
	c0 := r.stmts.snapshot()
	cpu0, self0, wal0 := b.dbCPU(ctx), selfCPU(), b.walBytes(ctx)
	ds, elapsed, err := inFlight(ctx, sz.DAGTasks, sz.DAGInFlight, func(_ context.Context, i int) error {
		return dbosRun(r, dbosDiamond4, i)
	})
	if err != nil {
		return err
	}
	b.logCPU(ctx, "dbos", cpu0, self0, wal0, sz.DAGTasks, "workflow")
	d := r.stmts.since(c0)
	tx := r.close(ctx)
	res := Result{Scenario: "dag throughput", System: "dbos"}.withLatencies(ds)
	res.set("tasks_per_s", float64(sz.DAGTasks)/elapsed.Seconds())
	res.set("steps_per_s", 4*float64(sz.DAGTasks)/elapsed.Seconds())
	res.perUnit("task", sz.DAGTasks, d, tx, sz.DAGTasks+sz.Warmup)
	res.Note = fmt.Sprintf("diamond-4 workflows, %d in flight (RunWorkflow + GetResult); percentiles are per workflow", sz.DAGInFlight)
	b.add(res)
	return nil
}

func (b *bench) dbosScale(ctx context.Context) error {
	sz := b.o.sz
	r, err := b.newDBOS(ctx)
	if err != nil {
		return err
	}
	defer r.close(ctx)
	t0 := time.Now()
	if err := dbosRun(r, dbosFanIn, sz.FanOut); err != nil {
		return err
	}
	elapsed := time.Since(t0)
	res := Result{Scenario: "scale fan-in", System: "dbos", N: sz.FanOut + 1}
	res.set("seconds", elapsed.Seconds())
	res.set("steps_per_s", float64(sz.FanOut+1)/elapsed.Seconds())
	res.Note = fmt.Sprintf("one workflow: %d dbos.Go steps, then a joining step", sz.FanOut)
	b.add(res)
	b.add(Result{Scenario: "scale create", System: "dbos", Unsupported: true, Text: "n/a",
		Note: "DBOS creates no steps up front; a workflow's steps exist as they run"})
	return nil
}

func (b *bench) dbosIdle(ctx context.Context) error {
	r, err := b.newDBOS(ctx)
	if err != nil {
		return err
	}
	defer r.close(ctx)
	res := Result{Scenario: "idle", System: "dbos"}
	if err := b.idleRate(ctx, b.dbosDB, r.stmts, &res); err != nil {
		return err
	}
	res.Note = fmt.Sprintf("one launched DBOS context, no queue declared, nothing to do; over %s", b.o.sz.IdleWindow)
	b.add(res)
	return nil
}

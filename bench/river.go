package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// quietLogger shows only errors.
func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}

// riverRig is one River client on a fresh schema, with its own pool.
type riverRig struct {
	b      *bench
	schema string
	pool   *pgxpool.Pool
	client *river.Client[pgx.Tx]
	meter  *xactMeter
	stmts  *stmtCounter
	ran    bool
	closed bool
	tx     int64
}

// newRiver migrates a fresh schema with rivermigrate and returns a client (not started) with
// one queue of maxWorkers workers.
func (b *bench) newRiver(ctx context.Context, cooldown time.Duration, maxWorkers int, workers *river.Workers) (*riverRig, error) {
	b.settle(ctx)
	schema, err := b.freshSchema(ctx, "bench_river")
	if err != nil {
		return nil, err
	}
	if err := b.exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		return nil, err
	}
	mpool, err := b.pool(ctx, "", nil, nil)
	if err != nil {
		return nil, err
	}
	migrator, err := rivermigrate.New(riverpgxv5.New(mpool), &rivermigrate.Config{Schema: schema, Logger: quietLogger()})
	if err == nil {
		_, err = migrator.Migrate(ctx, rivermigrate.DirectionUp, nil)
	}
	mpool.Close()
	if err != nil {
		return nil, fmt.Errorf("river migrate %s: %w", schema, err)
	}
	stmts := &stmtCounter{}
	pool, err := b.pool(ctx, "", nil, stmts)
	if err != nil {
		return nil, err
	}
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		Schema:        schema,
		FetchCooldown: cooldown,
		Queues:        map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: maxWorkers}},
		Workers:       workers,
		Logger:        quietLogger(),
	})
	if err != nil {
		pool.Close()
		return nil, err
	}
	return &riverRig{b: b, schema: schema, pool: pool, client: client, stmts: stmts, meter: b.meter(ctx, "")}, nil
}

func (r *riverRig) start(ctx context.Context) error {
	r.ran = true
	return r.client.Start(context.WithoutCancel(ctx))
}

// close stops the client, closes the pool and drops the schema; it returns the transactions
// counted since newRiver (-1 when unknown).
func (r *riverRig) close(ctx context.Context) int64 {
	if r.closed {
		return r.tx
	}
	r.closed = true
	if r.ran {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := r.client.Stop(sctx); err != nil {
			r.b.logf("river stop: %v", err)
		}
		cancel()
	}
	r.pool.Close()
	r.tx = r.meter.stop(ctx)
	r.b.dropSchema(r.schema)
	return r.tx
}

// chainArgs is one link of a handoff chain: the job inserts the next link in the transaction
// that completes it.
type chainArgs struct {
	Chain int  `json:"chain"`
	Index int  `json:"index"`
	Len   int  `json:"len"`
	Warm  bool `json:"warm,omitempty"`
}

func (chainArgs) Kind() string { return "bench_chain" }

type chainWorker struct {
	river.WorkerDefaults[chainArgs]
	pool *pgxpool.Pool
	mu   sync.Mutex
	last time.Time
	gaps []time.Duration
	done chan struct{} // one value per finished chain
}

func (w *chainWorker) Work(ctx context.Context, job *river.Job[chainArgs]) error {
	now := time.Now()
	w.mu.Lock()
	if !job.Args.Warm && job.Args.Index > 0 {
		w.gaps = append(w.gaps, now.Sub(w.last))
	}
	// The equivalent of a tasker handler's return: what follows is the transaction that
	// completes this job and enqueues the next.
	w.last = time.Now()
	w.mu.Unlock()
	client := river.ClientFromContext[pgx.Tx](ctx)
	err := pgx.BeginFunc(ctx, w.pool, func(tx pgx.Tx) error {
		if job.Args.Index+1 < job.Args.Len {
			next := job.Args
			next.Index++
			if _, err := client.InsertTx(ctx, tx, next, nil); err != nil {
				return err
			}
		}
		_, err := river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job)
		return err
	})
	if err != nil {
		return err
	}
	if job.Args.Index+1 == job.Args.Len {
		w.done <- struct{}{}
	}
	return nil
}

func (b *bench) riverHandoff(ctx context.Context, cooldown time.Duration) error {
	sz := b.o.sz
	w := &chainWorker{done: make(chan struct{}, 1)}
	workers := river.NewWorkers()
	river.AddWorker(workers, w)
	r, err := b.newRiver(ctx, cooldown, 16, workers)
	if err != nil {
		return err
	}
	defer r.close(ctx)
	w.pool = r.pool
	if err := r.start(ctx); err != nil {
		return err
	}
	runChain := func(args chainArgs) error {
		if _, err := r.client.Insert(ctx, args, nil); err != nil {
			return err
		}
		select {
		case <-w.done:
			return nil
		case <-time.After(5 * time.Minute):
			return fmt.Errorf("river chain %d did not finish", args.Chain)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := runChain(chainArgs{Chain: -1, Len: 10, Warm: true}); err != nil {
		return err
	}
	// At River's default cooldown most handoffs wait for the 1 s poll (River sends an insert notification at most once per cooldown per queue); one
	// chain keeps the run short.
	chains := sz.Chains
	if cooldown >= 50*time.Millisecond {
		chains = 1
	}
	c0 := r.stmts.snapshot()
	t0 := time.Now()
	for c := range chains {
		if err := runChain(chainArgs{Chain: c, Len: sz.ChainLen}); err != nil {
			return err
		}
	}
	elapsed := time.Since(t0)
	d := r.stmts.since(c0)
	tx := r.close(ctx)
	w.mu.Lock()
	gaps := w.gaps
	w.mu.Unlock()
	label := riverLabel(cooldown)
	res := Result{Scenario: "handoff", System: label}.withLatencies(gaps)
	res.set("steps_per_s", float64(chains*sz.ChainLen)/elapsed.Seconds())
	res.perUnit("step", chains*sz.ChainLen, d, tx, chains*sz.ChainLen+10)
	res.Note = fmt.Sprintf("%s of %d jobs; each job inserts the next and completes itself (JobCompleteTx) in one transaction", plural(chains, "chain"), sz.ChainLen)
	b.add(res)
	b.handoffSamples = append(b.handoffSamples, series{Label: label, Samples: gaps})
	return nil
}

// noopArgs is a job that does nothing.
type noopArgs struct {
	I int `json:"i"`
}

func (noopArgs) Kind() string { return "bench_noop" }

type countWorker struct {
	river.WorkerDefaults[noopArgs]
	n    int64
	ran  atomic.Int64
	done chan struct{}
}

func (w *countWorker) Work(context.Context, *river.Job[noopArgs]) error {
	if w.ran.Add(1) == w.n {
		close(w.done)
	}
	return nil
}

func (b *bench) riverThroughput(ctx context.Context, cooldown time.Duration) error {
	sz := b.o.sz
	n := sz.ThroughputTasks
	w := &countWorker{n: int64(n), done: make(chan struct{})}
	workers := river.NewWorkers()
	river.AddWorker(workers, w)
	r, err := b.newRiver(ctx, cooldown, sz.Workers, workers)
	if err != nil {
		return err
	}
	defer r.close(ctx)
	params := make([]river.InsertManyParams, n)
	for i := range params {
		params[i] = river.InsertManyParams{Args: noopArgs{I: i}}
	}
	c0 := r.stmts.snapshot()
	tc := time.Now()
	if _, err := r.client.InsertMany(ctx, params); err != nil {
		return err
	}
	created := time.Since(tc)
	b.logf("  %s: inserted %d jobs in %s", riverLabel(cooldown), n, created.Round(time.Millisecond))
	cpu0 := b.dbCPU(ctx)
	t0 := time.Now()
	if err := r.start(ctx); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if err := awaitProgress(wctx, w.done, &w.ran); err != nil {
		return fmt.Errorf("river throughput: %d of %d ran: %w", w.ran.Load(), n, err)
	}
	// Done means completed in the database: River completes jobs in batches after Work returns.
	q := `SELECT count(*) FROM ` + pgx.Identifier{r.schema, "river_job"}.Sanitize() + ` WHERE state <> 'completed'`
	for {
		var left int
		if err := r.pool.QueryRow(wctx, q).Scan(&left); err != nil {
			return err
		}
		if left == 0 {
			break
		}
		select {
		case <-wctx.Done():
			return wctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	elapsed := time.Since(t0)
	if cpu := b.dbCPU(ctx) - cpu0; cpu > 0 {
		b.logf("  %s: server CPU %s, %.0f µs per job", riverLabel(cooldown), cpu, float64(cpu.Microseconds())/float64(n))
	}
	d := r.stmts.since(c0)
	tx := r.close(ctx)
	res := Result{Scenario: "throughput 1-step", System: riverLabel(cooldown), N: n}
	res.set("jobs_per_s", float64(n)/elapsed.Seconds())
	res.set("created_per_s", float64(n)/created.Seconds())
	res.perUnit("job", n, d, tx, n)
	res.Note = fmt.Sprintf("%d workers; inserted before the client starts (one InsertMany)", sz.Workers)
	b.add(res)
	return nil
}

func (b *bench) riverIdle(ctx context.Context) error {
	w := &countWorker{n: -1, done: make(chan struct{})}
	workers := river.NewWorkers()
	river.AddWorker(workers, w)
	r, err := b.newRiver(ctx, 0, 100, workers)
	if err != nil {
		return err
	}
	defer r.close(ctx)
	if err := r.start(ctx); err != nil {
		return err
	}
	res := Result{Scenario: "idle", System: "river"}
	if err := b.idleRate(ctx, "", r.stmts, &res); err != nil {
		return err
	}
	res.Note = fmt.Sprintf("one client, one queue, leader with its maintenance services, nothing to do; over %s", b.o.sz.IdleWindow)
	b.add(res)
	return nil
}

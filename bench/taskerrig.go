package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/migrations"
	"github.com/tasker-systems/tasker/queue/rabbitmq"
	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store/memory"
	"github.com/tasker-systems/tasker/store/postgres"
)

// benchNamespace is the namespace of every bench template, and so tasker's one queue.
const benchNamespace = "bench"

// taskerRig is one tasker engine on one backend: on PostgreSQL, a fresh schema and a pool of its
// own (and with RabbitMQ, broker queues of its own); in memory, nothing else.
type taskerRig struct {
	b      *bench
	be     backend
	schema string        // "" in memory
	pool   *pgxpool.Pool // nil in memory
	rabbit *rabbitmq.Queue
	prefix string // of rabbit's broker queues
	engine *tasker.Engine
	meter  *xactMeter // nil in memory
	stmts  *stmtCounter
	stop   context.CancelFunc
	done   chan error
	closed bool
	tx     int64
}

// skipError reports a backend that cannot run here, such as RabbitMQ without a broker: its rows
// say skipped, with the reason, and the run goes on.
type skipError struct{ reason string }

func (e *skipError) Error() string { return "skipped: " + e.reason }

// skipReason returns the reason when err is a skipError.
func skipReason(err error) (string, bool) {
	var se *skipError
	if errors.As(err, &se) {
		return se.reason, true
	}
	return "", false
}

// newTasker returns an engine on the backend with the templates registered: on PostgreSQL it
// migrates a fresh schema first. Its workers do not run until start. With RabbitMQ, the prefetch
// is the engine's concurrency. It returns a skipError when the backend cannot run here.
func (b *bench) newTasker(ctx context.Context, be backend, concurrency int, templates ...string) (*taskerRig, error) {
	b.settle(ctx)
	r := &taskerRig{b: b, be: be, stmts: &stmtCounter{}, tx: -1}
	cfg := tasker.Config{Concurrency: concurrency}
	if be == backendRabbit {
		prefetch := concurrency
		if prefetch <= 0 {
			prefetch = tasker.ConcurrencyDefault
		}
		q, prefix, err := b.newRabbitQueue(prefetch)
		if err != nil {
			return nil, err
		}
		r.rabbit, r.prefix, cfg.Queue = q, prefix, q
	}
	var err error
	if be == backendMemory {
		cfg.Store = memory.New()
		r.engine, err = tasker.NewEngine(cfg)
	} else {
		err = r.openPostgres(ctx, &cfg)
	}
	if err == nil {
		err = r.register(templates)
	}
	if err != nil {
		r.close(ctx)
		return nil, err
	}
	return r, nil
}

// openPostgres migrates a fresh schema, opens the rig's pool and makes the engine on it.
func (r *taskerRig) openPostgres(ctx context.Context, cfg *tasker.Config) error {
	b := r.b
	schema, err := b.freshSchema(ctx, "bench_tasker")
	if err != nil {
		return err
	}
	r.schema = schema
	if err := b.withConn(ctx, "", func(c *pgx.Conn) error {
		return migrations.Migrate(ctx, c, migrations.WithSchema(schema))
	}); err != nil {
		return fmt.Errorf("migrate %s: %w", schema, err)
	}
	var params map[string]string
	if b.o.stmtLog {
		params = map[string]string{"log_min_duration_statement": "0"}
	}
	if d := os.Getenv("BENCH_AUTOEXPLAIN"); d != "" {
		// auto_explain on tasker's sessions: the plans of statements slower than d ms, analysed.
		params = map[string]string{"session_preload_libraries": "auto_explain", "auto_explain.log_min_duration": d,
			"auto_explain.log_analyze": "on", "auto_explain.log_buffers": "on", "auto_explain.log_timing": "on"}
	}
	if r.be == backendPG {
		// The SQL profile is of tasker on its own queue: the other backends would mix in.
		r.stmts.prof = b.sqlProf
	}
	if r.pool, err = b.pool(ctx, "", params, r.stmts); err != nil {
		return err
	}
	r.meter = b.meter(ctx, "")
	cfg.Store = postgres.New(r.pool, postgres.WithSchema(schema))
	r.engine, err = tasker.NewEngine(*cfg)
	return err
}

func (r *taskerRig) register(templates []string) error {
	for _, y := range templates {
		t, err := tasker.ParseTemplate([]byte(y))
		if err != nil {
			return err
		}
		if err := r.engine.Register(t); err != nil {
			return err
		}
	}
	return nil
}

// label is the system label of the rig's rows.
func (r *taskerRig) label() string { return backendLabel(r.be) }

// result returns an empty row of the rig's system in a scenario.
func (r *taskerRig) result(scenario string) Result {
	return Result{Scenario: scenario, System: r.label(), Backend: string(r.be)}
}

// noteSuffix is what a row's note adds for the backend: what its statement counts leave out.
func (r *taskerRig) noteSuffix() string {
	switch r.be {
	case backendRabbit:
		return "; stmt and trips count PostgreSQL only, not the broker's publishes and acks"
	case backendMemory:
		return "; no database"
	}
	return ""
}

// perUnit sets the statements, round trips and transactions per unit on res (see
// Result.perUnit); in memory there are none.
func (r *taskerRig) perUnit(res *Result, unit string, n int, d counts, tx int64, txUnits int) {
	if r.pool != nil {
		res.perUnit(unit, n, d, tx, txUnits)
	}
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

// close stops the workers, closes the RabbitMQ queue and deletes its broker queues, closes the
// pool and drops the schema; it returns the database transactions counted since newTasker (-1
// when unknown or in memory).
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
	if r.rabbit != nil {
		r.b.deleteRabbitQueues(r.rabbit, r.prefix, benchNamespace)
	}
	if r.pool != nil {
		r.pool.Close()
	}
	if r.meter != nil {
		r.tx = r.meter.stop(ctx)
	}
	if r.schema != "" {
		r.b.dropSchema(r.schema)
	}
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
	return tasker.TaskRequest{Namespace: benchNamespace, Name: name, Context: map[string]any{"i": i, "run": r.b.nonce}}
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

// createBulk creates n tasks of a template with CreateTaskTx, per transactions of batch tasks,
// par transactions at a time.
func (r *taskerRig) createBulk(ctx context.Context, name string, n, batch, par int) error {
	return r.parallel(ctx, n, batch, par, func(from, to int) error {
		return pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
			for i := from; i < to; i++ {
				if _, err := r.engine.CreateTaskTx(ctx, tx, r.request(name, i)); err != nil {
					return err
				}
			}
			return nil
		})
	})
}

// createEach creates n tasks of a template with CreateTask, par at a time. With RabbitMQ it is
// the way to create tasks in bulk: CreateTaskTx cannot publish (its commit is the caller's), so
// its steps would wait for the sweeper (Config.RepublishAfter); the memory store has no
// transactions.
func (r *taskerRig) createEach(ctx context.Context, name string, n, par int) error {
	return r.parallel(ctx, n, 1, par, func(from, _ int) error {
		_, err := r.engine.CreateTask(ctx, r.request(name, from))
		return err
	})
}

// parallel calls fn for consecutive ranges [from, to) of at most batch of [0, n), from par
// goroutines, and returns the first error.
func (r *taskerRig) parallel(ctx context.Context, n, batch, par int, fn func(from, to int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, par)
	for range par {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				from := int(next.Add(int64(batch))) - batch
				if from >= n {
					return
				}
				if err := fn(from, min(from+batch, n)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	return ctx.Err()
}

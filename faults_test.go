package tasker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/migrations"
	"github.com/tasker-systems/tasker/queue/pgqueue"
	"github.com/tasker-systems/tasker/store/postgres"
)

// The tests of this file hurt the database under running engines — a server restart, killed
// connections, an exhausted pool — and check that nothing is lost: every task finishes.

const faultDiamondYAML = `
name: diamond
namespace_name: fault
version: 1.0.0
steps:
  - {name: a, handler: {callable: work}}
  - {name: b, handler: {callable: work}, dependencies: [a]}
  - {name: c, handler: {callable: work}, dependencies: [a]}
  - {name: d, handler: {callable: work}, dependencies: [b, c]}
`

// faultLease is the lease of the engines under test: short, so that a step whose worker lost
// track of it (its claim or outcome lost with a connection) is rescued quickly.
const faultLease = 2 * time.Second

// faultRuns counts handler runs by step, across engines.
type faultRuns struct {
	mu    sync.Mutex
	steps map[uuid.UUID]int
	total atomic.Int64
}

func newFaultRuns() *faultRuns { return &faultRuns{steps: map[uuid.UUID]int{}} }

// handler sleeps a little, like real work, and returns 1 + the largest ancestor result.
func (r *faultRuns) handler(sleep time.Duration) func(ctx context.Context, s *tasker.Step) (any, error) {
	return func(ctx context.Context, s *tasker.Step) (any, error) {
		r.mu.Lock()
		r.steps[s.ID]++
		r.mu.Unlock()
		r.total.Add(1)
		select {
		case <-time.After(sleep):
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
		return addOne(ctx, s)
	}
}

// faultPool opens a pool on url whose sessions carry application_name, so that a test can find
// (and kill) exactly its own connections in pg_stat_activity.
func faultPool(t *testing.T, url, appName string, maxConns int32) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	require.NoError(t, err)
	cfg.MaxConns = maxConns
	if appName != "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = appName
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

// faultEngine is one engine of a fault test, on its own pool, with its workers started.
func faultEngine(t *testing.T, pool *pgxpool.Pool, schema, id string, runs *faultRuns, cfg func(*tasker.Config)) *bundle {
	t.Helper()
	st := postgres.New(pool, postgres.WithSchema(schema))
	c := tasker.Config{Store: st, Logger: testLogger(), WorkerID: id, Concurrency: 8,
		Lease: faultLease, ShutdownTimeout: 2 * time.Second}
	if cfg != nil {
		cfg(&c)
	}
	eng, err := tasker.NewEngine(c)
	require.NoError(t, err)
	b := &bundle{engine: eng, store: st}
	b.register(t, faultDiamondYAML)
	eng.HandleFunc("work", runs.handler(10*time.Millisecond))
	b.start(t)
	return b
}

// createRetrying creates task i of a stream, trying again while the database is away. The context
// makes the task's strict identity unique, so a creation that committed although its caller saw an
// error comes back as a duplicate, which is the task itself.
func createRetrying(ctx context.Context, eng *tasker.Engine, i int) (uuid.UUID, error) {
	delay := 50 * time.Millisecond
	for {
		task, err := eng.CreateTask(ctx, tasker.TaskRequest{Namespace: "fault", Name: "diamond",
			Context: map[string]any{"i": i}})
		if err == nil || errors.Is(err, tasker.ErrDuplicateTask) {
			return task.ID, nil
		}
		if errors.Is(err, tasker.ErrInvalidInput) || errors.Is(err, tasker.ErrTemplateNotFound) {
			return uuid.Nil, err
		}
		select {
		case <-ctx.Done():
			return uuid.Nil, fmt.Errorf("task %d: %w (last error: %v)", i, ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Second)
	}
}

// streamTasks creates n tasks, one every gap, spread over the engines, in the background.
func streamTasks(ctx context.Context, engines []*bundle, n int, gap time.Duration) (ids func() []uuid.UUID, done <-chan error) {
	var mu sync.Mutex
	var created []uuid.UUID
	ch := make(chan error, 1)
	go func() {
		for i := range n {
			id, err := createRetrying(ctx, engines[i%len(engines)].engine, i)
			if err != nil {
				ch <- err
				return
			}
			mu.Lock()
			created = append(created, id)
			mu.Unlock()
			time.Sleep(gap)
		}
		ch <- nil
	}()
	return func() []uuid.UUID {
		mu.Lock()
		defer mu.Unlock()
		return append([]uuid.UUID(nil), created...)
	}, ch
}

// waitSettled waits for every task to settle, riding out database errors, and fails the test with
// the stuck tasks' steps when they do not settle within limit.
func waitSettled(t *testing.T, eng *tasker.Engine, ids []uuid.UUID, limit time.Duration) map[uuid.UUID]*tasker.Task {
	t.Helper()
	deadline := time.Now().Add(limit)
	out := make(map[uuid.UUID]*tasker.Task, len(ids))
	var lastErr error
	for time.Now().Before(deadline) {
		lastErr = nil
		for _, id := range ids {
			if out[id] != nil {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			task, err := eng.GetTask(ctx, id)
			cancel()
			if err != nil {
				lastErr = err
				continue
			}
			if task.State.Settled() {
				out[id] = task
			}
		}
		if len(out) == len(ids) {
			return out
		}
		time.Sleep(100 * time.Millisecond)
	}
	var stuck []string
	for _, id := range ids {
		if out[id] != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		task, err := eng.GetTask(ctx, id)
		cancel()
		if err != nil {
			stuck = append(stuck, fmt.Sprintf("%s: %v", id, err))
			continue
		}
		var steps []string
		for _, s := range task.Steps {
			steps = append(steps, fmt.Sprintf("%s=%s(attempts %d)", s.Name, s.State, s.Attempts))
		}
		stuck = append(stuck, fmt.Sprintf("%s %s [%s]", id, task.State, strings.Join(steps, " ")))
	}
	t.Fatalf("%d of %d tasks did not settle within %s (last error: %v); a step left in_progress by a lost "+
		"claim or outcome needs the lease rescuer:\n  %s", len(ids)-len(out), len(ids), limit, lastErr,
		strings.Join(stuck, "\n  "))
	return nil
}

// requireAllDiamondsComplete checks that every task completed, with d = 3, along legal paths.
func requireAllDiamondsComplete(t *testing.T, eng *tasker.Engine, tasks map[uuid.UUID]*tasker.Task) {
	t.Helper()
	for id, task := range tasks {
		require.Equal(t, tasker.TaskComplete, task.State, "task %s", id)
		d, ok := task.Step("d")
		require.True(t, ok)
		require.Equal(t, int64(3), jsonInt(t, d.Result), "task %s", id)
		requireLegalTransitions(t, eng, id)
	}
}

// requireQueueDrains checks that no message is left behind once every task has finished: a
// message whose ack was lost comes back and is dropped.
func requireQueueDrains(t *testing.T, pool *pgxpool.Pool, schema string) {
	t.Helper()
	var n int
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := pool.QueryRow(ctx, `SELECT count(*) FROM `+schema+`.queue_messages`).Scan(&n)
		return err == nil && n == 0
	}, 4*faultLease+5*time.Second, 100*time.Millisecond, "queue_messages still holds %d messages", n)
}

// TestFaultDatabaseRestart takes a private PostgreSQL away while two engines run a stream of
// diamond tasks — a pg_ctl restart -m fast, and an outage of several seconds, longer than the
// lease and than the engine's retries of an outcome — and checks that the engines reconnect, the
// listener comes back, polling and the lease rescuer cover the gap, and every task completes.
func TestFaultDatabaseRestart(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		outage func(c *testdb.Cluster) error
	}{
		{name: "restart fast", outage: func(c *testdb.Cluster) error { return c.Restart() }},
		{name: "down 4s", outage: func(c *testdb.Cluster) error {
			if err := c.Stop("fast"); err != nil {
				return err
			}
			time.Sleep(4 * time.Second)
			return c.Start()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			faultRestart(t, tt.outage)
		})
	}
}

func faultRestart(t *testing.T, outage func(c *testdb.Cluster) error) {
	cluster := testdb.NewCluster(t)
	const schema, tasks = "fault", 50
	admin := faultPool(t, cluster.URL, "tasker-fault-admin", 4)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	require.NoError(t, migrations.Migrate(ctx, admin, migrations.WithSchema(schema)))

	runs := newFaultRuns()
	var engines []*bundle
	for i := range 2 {
		pool := faultPool(t, cluster.URL, fmt.Sprintf("tasker-fault-e%d", i), 10)
		engines = append(engines, faultEngine(t, pool, schema, fmt.Sprintf("engine-%d", i), runs, nil))
	}

	start := time.Now()
	ids, done := streamTasks(ctx, engines, tasks, 40*time.Millisecond)
	require.Eventually(t, func() bool { return runs.total.Load() >= 40 }, 30*time.Second, 5*time.Millisecond,
		"the engines run steps before the outage")
	before := len(ids())
	require.Less(t, before, tasks, "the outage happens mid-stream")
	t0 := time.Now()
	require.NoError(t, outage(cluster))
	t.Logf("took the server away after %d tasks created and %d steps run; it was back after %s",
		before, runs.total.Load(), time.Since(t0).Round(time.Millisecond))
	atRestart := runs.total.Load()

	require.NoError(t, <-done)
	all := ids()
	require.Len(t, all, tasks)
	settled := waitSettled(t, engines[0].engine, all, 90*time.Second)
	t.Logf("%d tasks settled %s after the stream began", tasks, time.Since(start).Round(time.Millisecond))
	requireAllDiamondsComplete(t, engines[0].engine, settled)
	require.Greater(t, runs.total.Load(), atRestart, "steps ran after the outage")
	runs.mu.Lock()
	require.Len(t, runs.steps, tasks*4, "every step's handler ran")
	runs.mu.Unlock()
	var rescued int
	for _, task := range settled {
		for _, s := range task.Steps {
			if s.LastError != nil && s.LastError.Kind == "lease_expired" {
				rescued++
			}
		}
	}
	t.Logf("%d steps were rescued after their lease expired", rescued)
	requireNewListeners(t, admin, schema, 2, nil) // every session is new after the outage
	requireQueueDrains(t, admin, schema)
}

// killEngineConnections terminates the sessions of a test's engines on the shared server: the
// pools' (application_name appPrefix...) and the queue listeners' (application_name
// tasker-listen, listening on the schema's channel). It returns the listeners' killed pids and
// the number of pool sessions killed.
func killEngineConnections(t *testing.T, admin *pgxpool.Pool, appPrefix, schema string) (listeners []int32, pooled int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rows, err := admin.Query(ctx, `
		SELECT pid, application_name, pg_terminate_backend(pid)
		  FROM pg_stat_activity
		 WHERE datname = current_database() AND pid <> pg_backend_pid()
		   AND (starts_with(application_name, $1)
		        OR (application_name = $2 AND query ILIKE '%listen%' || $3 || '%'))`,
		appPrefix, pgqueue.ListenApplicationName, "tasker_queue_"+schema)
	require.NoError(t, err)
	defer rows.Close()
	for rows.Next() {
		var pid int32
		var app string
		var ok bool
		require.NoError(t, rows.Scan(&pid, &app, &ok))
		if app == pgqueue.ListenApplicationName {
			listeners = append(listeners, pid)
		} else {
			pooled++
		}
	}
	require.NoError(t, rows.Err())
	return listeners, pooled
}

// listenerPids returns the pids of the sessions listening on the schema's queue channel.
func listenerPids(admin *pgxpool.Pool, schema string) ([]int32, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rows, err := admin.Query(ctx, `
		SELECT pid FROM pg_stat_activity
		 WHERE datname = current_database() AND application_name = $1 AND state = 'idle'
		   AND query ILIKE '%listen%' || $2 || '%'`,
		pgqueue.ListenApplicationName, "tasker_queue_"+schema)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var pids []int32
	for rows.Next() {
		var pid int32
		if err := rows.Scan(&pid); err != nil {
			return nil, err
		}
		pids = append(pids, pid)
	}
	return pids, rows.Err()
}

// requireNewListeners waits until n sessions listen on the schema's channel again, none of them a
// killed one.
func requireNewListeners(t *testing.T, admin *pgxpool.Pool, schema string, n int, killed []int32) []int32 {
	t.Helper()
	var mu sync.Mutex
	var pids []int32
	var lastErr error
	ok := assertEventually(15*time.Second, func() bool {
		got, err := listenerPids(admin, schema)
		mu.Lock()
		defer mu.Unlock()
		pids, lastErr = got, err
		if err != nil || len(got) != n {
			return false
		}
		for _, p := range got {
			for _, k := range killed {
				if p == k {
					return false
				}
			}
		}
		return true
	})
	mu.Lock()
	defer mu.Unlock()
	require.True(t, ok, "LISTEN is re-established by %d new sessions within 15s (killed: %v, listening now: %v, last error: %v)",
		n, killed, pids, lastErr)
	return pids
}

// assertEventually polls cond in the calling goroutine until it holds or limit passes.
func assertEventually(limit time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFaultConnectionsKilled kills the engines' sessions (their pools' and their listeners') with
// pg_terminate_backend, three times while two engines run a stream of tasks: the engines reconnect,
// LISTEN comes back on new sessions, and every task completes.
func TestFaultConnectionsKilled(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	const tasks = 50
	appPrefix := "tasker-fault-" + db.Schema
	runs := newFaultRuns()
	var engines []*bundle
	for i := range 2 {
		pool := faultPool(t, db.URL, fmt.Sprintf("%s-e%d", appPrefix, i), 10)
		engines = append(engines, faultEngine(t, pool, db.Schema, fmt.Sprintf("engine-%d", i), runs, nil))
	}
	listeners := requireNewListeners(t, db.Pool, db.Schema, 2, nil)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	ids, done := streamTasks(ctx, engines, tasks, 40*time.Millisecond)
	var killedListeners []int32
	for k := range 3 {
		target := int64(30 * (k + 1))
		require.Eventually(t, func() bool { return runs.total.Load() >= target }, 30*time.Second, 2*time.Millisecond)
		l, pooled := killEngineConnections(t, db.Pool, appPrefix, db.Schema)
		t.Logf("kill %d after %d steps: %d pool sessions, listeners %v", k+1, runs.total.Load(), pooled, l)
		require.Positive(t, pooled, "the engines' pool sessions are found by application_name")
		if k == 0 {
			require.ElementsMatch(t, listeners, l, "both listeners are killed")
		}
		killedListeners = append(killedListeners, l...)
	}
	require.Less(t, len(ids()), tasks, "the kills happen mid-stream")

	require.NoError(t, <-done)
	all := ids()
	settled := waitSettled(t, engines[0].engine, all, 90*time.Second)
	t.Logf("%d tasks settled %s after the stream began", tasks, time.Since(start).Round(time.Millisecond))
	requireAllDiamondsComplete(t, engines[0].engine, settled)
	requireNewListeners(t, db.Pool, db.Schema, 2, killedListeners)
	requireQueueDrains(t, db.Pool, db.Schema)
}

// TestFaultListenReestablished shows that LISTEN itself comes back after its session is killed:
// with the fallback poll set to an hour, a task created after the kill can only be picked up by a
// notification, and it completes within seconds.
func TestFaultListenReestablished(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	appPrefix := "tasker-fault-" + db.Schema
	pool := faultPool(t, db.URL, appPrefix+"-e0", 10)
	runs := newFaultRuns()
	q := pgqueue.New(pool, pgqueue.WithSchema(db.Schema), pgqueue.WithPollInterval(time.Hour), pgqueue.WithLogger(testLogger()))
	b := faultEngine(t, pool, db.Schema, "engine-0", runs, func(c *tasker.Config) { c.Queue = q })
	first := requireNewListeners(t, db.Pool, db.Schema, 1, nil)

	// Once the listener is in place, a task completes through notifications alone.
	warm, err := createRetrying(context.Background(), b.engine, 0)
	require.NoError(t, err)
	requireAllDiamondsComplete(t, b.engine, waitSettled(t, b.engine, []uuid.UUID{warm}, 10*time.Second))

	killed, _ := killEngineConnections(t, db.Pool, appPrefix, db.Schema)
	require.Equal(t, first, killed)
	requireNewListeners(t, db.Pool, db.Schema, 1, killed)

	t0 := time.Now()
	id, err := createRetrying(context.Background(), b.engine, 1)
	require.NoError(t, err)
	settled := waitSettled(t, b.engine, []uuid.UUID{id}, 10*time.Second)
	requireAllDiamondsComplete(t, b.engine, settled)
	took := time.Since(t0)
	t.Logf("a task created after the kill completed in %s (the poll interval is an hour)", took.Round(time.Millisecond))
	require.Less(t, took, 10*time.Second)
}

// TestFaultPoolExhausted runs ten handlers at once on a pool of three connections, half of them
// holding a connection of that same pool for their whole run (as a handler that uses the
// service's database does): the engine's own bookkeeping waits its turn, and every task completes
// without a deadlock.
func TestFaultPoolExhausted(t *testing.T) {
	t.Parallel()
	db := testdb.New(t, testdb.WithMaxConns(3))
	st := postgres.New(db.Pool, postgres.WithSchema(db.Schema))
	eng, err := tasker.NewEngine(tasker.Config{Store: st, Logger: testLogger(), Concurrency: 10,
		Lease: faultLease, ShutdownTimeout: 2 * time.Second})
	require.NoError(t, err)
	b := &bundle{db: db, engine: eng, store: st}
	b.register(t, `
name: diamond
namespace_name: fault
version: 1.0.0
steps:
  - {name: a, handler: {callable: hold}}
  - {name: b, handler: {callable: hold}, dependencies: [a]}
  - {name: c, handler: {callable: slow}, dependencies: [a]}
  - {name: d, handler: {callable: slow}, dependencies: [b, c]}
`)
	var holding, peakHolding atomic.Int32
	eng.HandleFunc("hold", func(ctx context.Context, s *tasker.Step) (any, error) {
		conn, err := db.Pool.Acquire(ctx)
		if err != nil {
			return nil, err
		}
		defer conn.Release()
		n := holding.Add(1)
		defer holding.Add(-1)
		for {
			p := peakHolding.Load()
			if n <= p || peakHolding.CompareAndSwap(p, n) {
				break
			}
		}
		if _, err := conn.Exec(ctx, `SELECT pg_sleep(0.05)`); err != nil {
			return nil, err
		}
		return addOne(ctx, s)
	})
	eng.HandleFunc("slow", func(ctx context.Context, s *tasker.Step) (any, error) {
		time.Sleep(50 * time.Millisecond)
		return addOne(ctx, s)
	})
	const tasks = 30
	var ids []uuid.UUID
	for i := range tasks {
		ids = append(ids, b.create(t, "fault", "diamond", map[string]any{"i": i}).ID)
	}
	start := time.Now()
	b.start(t)
	settled := waitSettled(t, eng, ids, 60*time.Second)
	t.Logf("%d tasks on a 3-connection pool with concurrency 10 took %s; at most %d handlers held a connection at once",
		tasks, time.Since(start).Round(time.Millisecond), peakHolding.Load())
	requireAllDiamondsComplete(t, eng, settled)
	for _, task := range settled {
		for _, s := range task.Steps {
			require.Equal(t, 1, s.Attempts, "no attempt failed for want of a connection: %s %v", s.Name, s.LastError)
		}
	}
	require.GreaterOrEqual(t, int(peakHolding.Load()), 2, "handlers did compete for the pool")

	t0 := time.Now()
	b.stop()
	require.Less(t, time.Since(t0), 15*time.Second, "RunWorkers returns promptly on an exhausted pool")
}

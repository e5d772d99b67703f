package chaos_test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/chaos"
	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/internal/testrabbit"
	"github.com/tasker-systems/tasker/queue"
	"github.com/tasker-systems/tasker/store/postgres"
)

// The defaults are the CI size; the full size is
//
//	go test ./internal/chaos -run Chaos -v -chaos.tasks 2000 -chaos.duration 60s -timeout 20m
//
// or make chaos-full.
var (
	flagTasks     = flag.Int("chaos.tasks", 300, "diamond tasks to create")
	flagDuration  = flag.Duration("chaos.duration", 20*time.Second, "how long workers are killed; tasks are created throughout")
	flagKillEvery = flag.Duration("chaos.kill-every", 2*time.Second, "interval between two SIGKILLs; 0 kills nothing (a baseline)")
	flagWorkers   = flag.Int("chaos.workers", 4, "worker processes")
	flagConc      = flag.Int("chaos.concurrency", 8, "handlers per worker process (tasker.Config.Concurrency)")
	flagPoolConns = flag.Int("chaos.pool-conns", 5, "pool_max_conns of each worker process")
	flagLease     = flag.Duration("chaos.lease", 2*time.Second, "the workers' tasker.Config.Lease")
	flagLeaderTTL = flag.Duration("chaos.leader-ttl", 0, "the workers' tasker.Config.LeaderTTL; 0 means the engine's default")
	flagSettle    = flag.Duration("chaos.settle", 120*time.Second, "bound on the wait for every task to settle after the chaos")
	flagStall     = flag.Duration("chaos.stall", 30*time.Second, "stop waiting when no step transition is recorded for this long")
	flagCreate    = flag.Duration("chaos.create-within", -1, "tasks are created evenly over this long from the start of the chaos; negative means -chaos.duration, 0 all at once")
	flagMinSleep  = flag.Duration("chaos.min-sleep", 5*time.Millisecond, "shortest handler sleep")
	flagMaxSleep  = flag.Duration("chaos.max-sleep", 50*time.Millisecond, "longest handler sleep")
	flagLogs      = flag.String("chaos.logs", "", "keep the worker processes' logs in this directory (default: a temporary one, removed)")
	flagVerbose   = flag.Bool("chaos.verbose", false, "the workers log every step attempt (TASKER_CHAOS_VERBOSE)")
	flagRabbitURL = flag.String("chaos.rabbitmq-url", testrabbit.URL(), "the broker of TestChaosRabbitMQ (or $TASKER_TEST_RABBITMQ_URL)")
	flagRabbitN   = flag.Int("chaos.rabbitmq-tasks", 150, "diamond tasks TestChaosRabbitMQ creates")
	flagRabbitDur = flag.Duration("chaos.rabbitmq-duration", 10*time.Second, "how long TestChaosRabbitMQ kills workers")
	flagRace      = flag.Bool("chaos.race", raceEnabled, "build the worker with the race detector (default: when the test runs with -race)")
)

// TestChaos runs worker processes against one schema, SIGKILLs a random one every
// -chaos.kill-every for -chaos.duration and restarts it, while -chaos.tasks diamond tasks are
// created; then it checks that nothing was lost and reports how often handlers ran again.
func TestChaos(t *testing.T) {
	runChaos(t, chaosRun{tasks: *flagTasks, duration: *flagDuration})
}

// TestChaosRabbitMQ is TestChaos with RabbitMQ as the queue (the store stays PostgreSQL): the
// workers publish after their commits, so a kill can also land between a commit and its publish,
// and the broker redelivers what a killed worker held; the sweeper publishes again what was lost.
func TestChaosRabbitMQ(t *testing.T) {
	runChaos(t, chaosRun{tasks: *flagRabbitN, duration: *flagRabbitDur, rabbitURL: *flagRabbitURL})
}

// chaosRun sizes one chaos run; rabbitURL set means the queue is RabbitMQ; limit > 0 sets a
// global concurrency limit on the workers, and keyLimit > 0 one per customer (a field of the
// task context, one of chaosCustomers), which a sampler checks throughout.
type chaosRun struct {
	tasks     int
	duration  time.Duration
	rabbitURL string
	limit     int
	keyLimit  int
}

// chaosCustomers is how many customers the tasks' contexts name, in turn.
const chaosCustomers = 4

// TestChaosGlobalLimit is TestChaos with a global concurrency limit of 6 over 4 × 8 handlers:
// sampled from the database every few milliseconds, through the kills and the rescues, no more
// steps are ever in progress.
func TestChaosGlobalLimit(t *testing.T) {
	runChaos(t, chaosRun{tasks: *flagTasks / 2, duration: *flagDuration / 2, limit: 6})
}

// TestChaosKeyLimit is TestChaos with a global concurrency limit of 2 per customer (a context
// field; the tasks name 4 customers in turn) over 4 × 8 handlers: sampled from the database
// every few milliseconds, through the kills and the rescues, no customer ever has more steps in
// progress, and each limit is reached.
func TestChaosKeyLimit(t *testing.T) {
	runChaos(t, chaosRun{tasks: *flagTasks / 2, duration: *flagDuration / 2, keyLimit: 2})
}

func runChaos(t *testing.T, run chaosRun) {
	began := time.Now()
	n, workers := run.tasks, *flagWorkers
	require.Positive(t, n)
	require.Positive(t, workers)
	ctx := context.Background()

	db := testdb.New(t, testdb.WithMaxConns(4))
	sq := schemaQuery(db.Schema)
	require.NoError(t, chaos.CreateEffectsTable(ctx, db.Pool, db.Schema))
	bin := buildWorker(t)
	workerURL, err := withPoolSize(db.URL, *flagPoolConns)
	require.NoError(t, err)

	// The test process creates the tasks with an engine that runs no workers.
	var q queue.Queue
	var rabbitEnv []string
	if run.rabbitURL != "" {
		prefix := fmt.Sprintf("tasker-chaos-%016x.", rand.Uint64())
		q = testRabbitMQ(t, run.rabbitURL, prefix)
		rabbitEnv = []string{"TASKER_CHAOS_RABBITMQ_URL=" + run.rabbitURL, "TASKER_CHAOS_RABBITMQ_PREFIX=" + prefix,
			"TASKER_CHAOS_REPUBLISH_AFTER=2s"}
	}
	creator, err := tasker.NewEngine(tasker.Config{Store: postgres.New(db.Pool, postgres.WithSchema(db.Schema)), Queue: q})
	require.NoError(t, err)
	tmpl, err := chaos.Template()
	require.NoError(t, err)
	require.NoError(t, creator.Register(tmpl))

	env := append(os.Environ(),
		"TASKER_CHAOS_DATABASE_URL="+workerURL,
		"TASKER_CHAOS_SCHEMA="+db.Schema,
		fmt.Sprintf("TASKER_CHAOS_CONCURRENCY=%d", *flagConc),
		"TASKER_CHAOS_LEASE="+flagLease.String(),
		"TASKER_CHAOS_LEADER_TTL="+flagLeaderTTL.String(),
		"TASKER_CHAOS_MIN_SLEEP="+flagMinSleep.String(),
		"TASKER_CHAOS_MAX_SLEEP="+flagMaxSleep.String(),
	)
	env = append(env, rabbitEnv...)
	if run.limit > 0 {
		env = append(env, fmt.Sprintf("TASKER_CHAOS_GLOBAL_LIMIT=%d", run.limit))
		stop := sampleInProgress(t, db.Pool, sq, run.limit, `SELECT count(*) FROM {s}.steps WHERE state = 'in_progress'`)
		defer stop()
	}
	if run.keyLimit > 0 {
		env = append(env, fmt.Sprintf("TASKER_CHAOS_KEY_LIMIT=%d", run.keyLimit))
		stop := sampleInProgress(t, db.Pool, sq, run.keyLimit, `SELECT coalesce(max(n), 0) FROM (
			SELECT count(*) AS n FROM {s}.steps st JOIN {s}.tasks t ON t.task_id = st.task_id
			 WHERE st.state = 'in_progress' GROUP BY t.context->>'customer') g`)
		defer stop()
	}
	if *flagVerbose {
		env = append(env, "TASKER_CHAOS_VERBOSE=1")
	}
	fl := newFleet(t, bin, env, workers)

	// Tasks are created at a steady pace throughout the chaos, so that every kill lands on running
	// handlers, the last ones too.
	fig := figures{duration: run.duration, queue: "PostgreSQL"}
	if run.rabbitURL != "" {
		fig.queue = "RabbitMQ"
	}
	fig.chaosStart = time.Now()
	created := make(chan error, 1)
	within := *flagCreate
	if within < 0 {
		within = run.duration
	}
	go func() { created <- createTasks(ctx, creator, n, within) }()
	killLoop(t, fl, run.duration, n, func() int {
		var done int
		_ = db.Pool.QueryRow(ctx, sq(`SELECT count(*) FROM {s}.tasks WHERE state = 'complete'`)).Scan(&done)
		return done
	})
	fig.chaosEnd = time.Now()
	require.NoError(t, <-created, "create tasks")
	fig.createdAt = time.Now()

	var waitErr error
	fig.complete, waitErr = waitSettled(ctx, db.Pool, sq, n, *flagSettle, *flagStall)
	fig.settledAt, fig.settledOK = time.Now(), waitErr == nil
	if waitErr != nil {
		t.Errorf("tasks did not settle: %v\n%s", waitErr, diagnose(ctx, db.Pool, sq))
		for _, id := range unsettledTasks(ctx, db.Pool, sq, 3) {
			t.Logf("worker log lines about task %s:\n%s", id, strings.Join(fl.grepLogs(id, 40), "\n"))
		}
	}
	for _, msg := range fl.stop(20 * time.Second) {
		t.Errorf("%s", msg)
	}
	fl.mu.Lock()
	fig.kills, fig.processes = fl.kills, len(fl.all)
	unexpected := fl.unexpected
	fl.mu.Unlock()
	for _, msg := range unexpected {
		t.Errorf("%s", msg)
	}
	if races := fl.grepLogs("DATA RACE", 5); len(races) > 0 {
		t.Errorf("the race detector fired in a worker:\n%s", strings.Join(races, "\n"))
	}

	fig.report = verify(t, ctx, db.Pool, sq, n)
	if errs := fl.grepLogs("level=ERROR", 20); len(errs) > 0 {
		t.Logf("errors the workers logged (first %d):\n%s", len(errs), strings.Join(errs, "\n"))
	}
	if t.Failed() {
		if *flagLogs != "" {
			t.Logf("the workers' logs are in %s", fl.logDir)
		} else {
			t.Logf("run again with -chaos.logs DIR to keep the workers' logs")
		}
	}
	fig.total = time.Since(began)
	t.Logf("chaos figures:\n%s", fig.String(n, workers))
}

// killLoop SIGKILLs a random worker every -chaos.kill-every for duration and restarts it
// at once; complete says how far the tasks are, for the log.
func killLoop(t *testing.T, fl *fleet, duration time.Duration, n int, complete func() int) {
	t.Helper()
	if *flagKillEvery <= 0 {
		time.Sleep(duration)
		return
	}
	start := time.Now()
	tick := time.NewTicker(*flagKillEvery)
	defer tick.Stop()
	end := time.After(duration)
	for {
		select {
		case <-end:
			return
		case <-tick.C:
			slot := rand.IntN(len(fl.procs))
			pid, err := fl.killAndRestart(slot)
			require.NoError(t, err)
			t.Logf("%6.1fs: SIGKILL worker slot %d (pid %d), restarted; %d/%d tasks complete",
				time.Since(start).Seconds(), slot, pid, complete(), n)
		}
	}
}

// figures are what the test reports.
type figures struct {
	report
	kills, processes, complete                 int
	chaosStart, chaosEnd, createdAt, settledAt time.Time
	settledOK                                  bool
	total, duration                            time.Duration
	queue                                      string
}

func (f *figures) String(n, workers int) string {
	ms := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	var b strings.Builder
	fmt.Fprintf(&b, "  tasks %d (%d steps), queue %s, %d worker processes x concurrency %d, lease %s, worker built with -race: %v\n",
		n, 4*n, f.queue, workers, *flagConc, *flagLease, *flagRace)
	fmt.Fprintf(&b, "  kills %d (every %s for %s; %d processes started in all)\n",
		f.kills, *flagKillEvery, f.duration, f.processes)
	fmt.Fprintf(&b, "  handler runs %d for %d steps: repeats %d (%d steps ran more than once, at most %d times)\n",
		f.effects, f.steps, f.effects-f.stepsRun, f.stepsRepeated, f.maxRuns)
	fmt.Fprintf(&b, "  steps by attempts %s; tasks complete %d/%d\n", f.attempts, f.complete, n)
	fmt.Fprintf(&b, "  failed attempts by kind %v (lease_expired: rescued after a kill; from the attempt's start to its rescue %s)\n",
		f.failures, f.rescueWait)
	fmt.Fprintf(&b, "  step moves%s\n", f.moves)
	fmt.Fprintf(&b, "  time: chaos %s, creation done %s after it, settled %s after the chaos (settled: %v), total %s\n",
		ms(f.chaosEnd.Sub(f.chaosStart)), ms(f.createdAt.Sub(f.chaosEnd)), ms(f.settledAt.Sub(f.chaosEnd)), f.settledOK, ms(f.total))
	fmt.Fprintf(&b, "  throughput %.0f steps/s from the first creation to the last completion",
		float64(f.steps)/f.lastCompletion.Sub(f.firstCreation).Seconds())
	return b.String()
}

// buildWorker builds ./worker into a temporary directory.
func buildWorker(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	require.NoError(t, err, "the chaos test builds its worker program with the go command")
	bin := filepath.Join(t.TempDir(), "worker")
	args := []string{"build", "-o", bin}
	if *flagRace {
		args = append(args, "-race")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, goTool, append(args, "./worker")...).CombinedOutput()
	require.NoError(t, err, "go build ./internal/chaos/worker:\n%s", out)
	return bin
}

// withPoolSize sets pool_max_conns in a PostgreSQL URL or key=value DSN, unless it is there.
func withPoolSize(dsn string, n int) (string, error) {
	if strings.Contains(dsn, "pool_max_conns") {
		return dsn, nil
	}
	if !strings.Contains(dsn, "://") {
		return fmt.Sprintf("%s pool_max_conns=%d", dsn, n), nil
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return "", err
	}
	q := u.Query()
	q.Set("pool_max_conns", fmt.Sprint(n))
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// schemaQuery returns a function that puts the quoted schema in place of {s}.
func schemaQuery(schema string) func(string) string {
	quoted := pgx.Identifier{schema}.Sanitize()
	return func(sql string) string { return strings.ReplaceAll(sql, "{s}", quoted) }
}

// createTasks creates n diamond tasks evenly over window, from a few goroutines so that the pace
// holds while the database is busy.
func createTasks(ctx context.Context, e *tasker.Engine, n int, window time.Duration) error {
	const creators = 3
	start := time.Now()
	errs := make(chan error, creators)
	for c := range creators {
		go func() {
			for i := c; i < n; i += creators {
				if d := time.Until(start.Add(window * time.Duration(i) / time.Duration(n))); d > 0 {
					time.Sleep(d)
				}
				if _, err := e.CreateTask(ctx, tasker.TaskRequest{Namespace: chaos.Namespace, Name: chaos.TaskName,
					Context: map[string]any{"i": i, "customer": fmt.Sprintf("c%d", i%chaosCustomers)}}); err != nil {
					errs <- fmt.Errorf("task %d: %w", i, err)
					return
				}
			}
			errs <- nil
		}()
	}
	var first error
	for range creators {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// waitSettled waits until all n tasks are settled (terminal or blocked), at most bound, and gives
// up early when no step transition is recorded for stall. It returns how many tasks are complete.
func waitSettled(ctx context.Context, pool *pgxpool.Pool, sq func(string) string, n int, bound, stall time.Duration) (int, error) {
	deadline := time.Now().Add(bound)
	var lastID int64 = -1
	lastMove := time.Now()
	for {
		var complete, other int
		var maxID int64
		err := pool.QueryRow(ctx, sq(`
			SELECT count(*) FILTER (WHERE state = 'complete'),
			       count(*) FILTER (WHERE state IN ('error', 'cancelled', 'resolved_manually', 'blocked_by_failures')),
			       (SELECT coalesce(max(id), 0) FROM {s}.step_transitions)
			  FROM {s}.tasks`)).Scan(&complete, &other, &maxID)
		if err != nil {
			return 0, err
		}
		if complete+other >= n {
			return complete, nil
		}
		if maxID != lastID {
			lastID, lastMove = maxID, time.Now()
		}
		switch {
		case time.Since(lastMove) > stall:
			return complete, fmt.Errorf("no step moved for %s: %d of %d tasks complete, %d settled otherwise", stall, complete, n, other)
		case time.Now().After(deadline):
			return complete, fmt.Errorf("not settled after %s: %d of %d tasks complete, %d settled otherwise", bound, complete, n, other)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// sampleInProgress counts the steps in progress every 3 ms until stop, which fails the test if a
// sample was over limit, and logs the samples.
func sampleInProgress(t *testing.T, pool *pgxpool.Pool, sq func(string) string, limit int, count string) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var samples, over, peak int
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			var n int
			if err := pool.QueryRow(ctx, sq(count)).Scan(&n); err == nil {
				samples++
				peak = max(peak, n)
				if n > limit {
					over++
				}
			}
			time.Sleep(3 * time.Millisecond)
		}
	}()
	return func() {
		cancel()
		<-done
		t.Logf("global limit %d: %d samples of the steps in progress (of the fullest group), at most %d", limit, samples, peak)
		if over > 0 {
			t.Errorf("global limit %d: %d samples over it (at most %d)", limit, over, peak)
		}
		if peak < limit {
			t.Errorf("global limit %d: the steps in progress never reached it (at most %d)", limit, peak)
		}
	}
}

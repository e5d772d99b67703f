// Command worker is the chaos test's worker process: it registers the chaos diamond and its
// handler and runs an engine's workers on one schema until SIGTERM or SIGINT (or until its parent
// process goes away). The chaos test starts several of these and SIGKILLs them at random.
//
//	worker -database-url postgres://postgres@127.0.0.1:5432/postgres?pool_max_conns=5 -schema t_0123
//
// With -rabbitmq-url the engine's queue is RabbitMQ (queue/rabbitmq, with -rabbitmq-prefix); the
// store stays PostgreSQL. -create N creates N diamond tasks before the workers start, and
// -stall-publish N makes the Nth publish to RabbitMQ (after a commit) log stalledLine and block
// forever, so that the test can SIGKILL the process between a commit and its publish.
//
// With -family it registers the child crash test's parent and child templates (internal/chaos
// family.go) instead of the diamond; -hold names the points where their handlers wait for the
// test's gates, and -namespaces limits the namespaces the engine serves (tasker.Config.Namespaces),
// so that the parent's step and the child's run in different processes.
//
// Every flag also reads an environment variable (TASKER_CHAOS_DATABASE_URL, TASKER_CHAOS_SCHEMA,
// TASKER_CHAOS_WORKER_ID, ...); a flag given on the command line wins. It exits 0 after a clean stop.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/chaos"
	"github.com/tasker-systems/tasker/queue"
	"github.com/tasker-systems/tasker/queue/rabbitmq"
	"github.com/tasker-systems/tasker/store/postgres"
)

// runningLine is logged once the worker has its signal handler and is about to take work; the
// test tells a worker stopped before it (SIGTERM during start-up, fatal to a Go program that has
// not called signal.Notify yet) from one that failed to stop.
const runningLine = "chaos worker running"

// stalledLine is logged (on stdout) when -stall-publish holds a publish; createdLine precedes the
// ID of each task -create made.
const (
	stalledLine = "chaos worker publish stalled"
	createdLine = "chaos worker created task"
)

type options struct {
	url, schema, workerID  string
	concurrency            int
	lease, shutdown        time.Duration
	leaderTTL, rescueEvery time.Duration
	minSleep, maxSleep     time.Duration
	verbose                bool
	rabbitURL, rabbitPref  string
	republishAfter         time.Duration
	create, stallPublish   int
	globalLimit            int // tasker.Config.GlobalConcurrency of the chaos namespace; 0: none
	keyLimit               int // a tasker.Limit of the chaos namespace per customer (a context field); 0: none
	family                 bool
	namespaces, holds      []string
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos worker:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx = stopWithParent(ctx)
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "chaos worker:", err)
		os.Exit(1)
	}
}

func env(name, def string) string {
	if v := os.Getenv("TASKER_CHAOS_" + name); v != "" {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(env(name, "")); err == nil {
		return d
	}
	return def
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(env(name, "")); err == nil {
		return n
	}
	return def
}

func parseFlags(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.StringVar(&o.url, "database-url", env("DATABASE_URL", ""), "PostgreSQL URL; put pool_max_conns in it to size the pool (TASKER_CHAOS_DATABASE_URL)")
	fs.StringVar(&o.schema, "schema", env("SCHEMA", ""), "migrated tasker schema, which also holds chaos_effects (TASKER_CHAOS_SCHEMA)")
	fs.StringVar(&o.workerID, "worker-id", env("WORKER_ID", ""), "engine worker ID; empty means host-pid-random (TASKER_CHAOS_WORKER_ID)")
	fs.IntVar(&o.concurrency, "concurrency", envInt("CONCURRENCY", 8), "handlers run at once (TASKER_CHAOS_CONCURRENCY)")
	fs.DurationVar(&o.lease, "lease", envDuration("LEASE", 2*time.Second), "step lease, tasker.Config.Lease (TASKER_CHAOS_LEASE)")
	fs.DurationVar(&o.shutdown, "shutdown-timeout", envDuration("SHUTDOWN_TIMEOUT", 5*time.Second), "tasker.Config.ShutdownTimeout (TASKER_CHAOS_SHUTDOWN_TIMEOUT)")
	fs.DurationVar(&o.leaderTTL, "leader-ttl", envDuration("LEADER_TTL", 0), "tasker.Config.LeaderTTL; 0 means the engine's default (TASKER_CHAOS_LEADER_TTL)")
	fs.DurationVar(&o.rescueEvery, "rescue-interval", envDuration("RESCUE_INTERVAL", 0), "tasker.Config.RescueInterval; 0 means the engine's default (TASKER_CHAOS_RESCUE_INTERVAL)")
	fs.DurationVar(&o.minSleep, "min-sleep", envDuration("MIN_SLEEP", 5*time.Millisecond), "shortest handler sleep (TASKER_CHAOS_MIN_SLEEP)")
	fs.DurationVar(&o.maxSleep, "max-sleep", envDuration("MAX_SLEEP", 50*time.Millisecond), "longest handler sleep (TASKER_CHAOS_MAX_SLEEP)")
	fs.StringVar(&o.rabbitURL, "rabbitmq-url", env("RABBITMQ_URL", ""), "RabbitMQ URL: the engine's queue is RabbitMQ instead of PostgreSQL (TASKER_CHAOS_RABBITMQ_URL)")
	fs.StringVar(&o.rabbitPref, "rabbitmq-prefix", env("RABBITMQ_PREFIX", "tasker-chaos."), "prefix of the broker queues (TASKER_CHAOS_RABBITMQ_PREFIX)")
	fs.DurationVar(&o.republishAfter, "republish-after", envDuration("REPUBLISH_AFTER", 0), "tasker.Config.RepublishAfter; 0 means the engine's default (TASKER_CHAOS_REPUBLISH_AFTER)")
	fs.IntVar(&o.create, "create", envInt("CREATE", 0), "diamond tasks to create before the workers start (TASKER_CHAOS_CREATE)")
	fs.IntVar(&o.stallPublish, "stall-publish", envInt("STALL_PUBLISH", 0), "block forever in the Nth RabbitMQ publish, after logging a line; 0 never (TASKER_CHAOS_STALL_PUBLISH)")
	fs.BoolVar(&o.verbose, "v", env("VERBOSE", "") != "", "log every step attempt (TASKER_CHAOS_VERBOSE)")
	fs.IntVar(&o.globalLimit, "global-limit", envInt("GLOBAL_LIMIT", 0), "global concurrency limit of the chaos namespace; 0 none (TASKER_CHAOS_GLOBAL_LIMIT)")
	fs.IntVar(&o.keyLimit, "key-limit", envInt("KEY_LIMIT", 0), "global concurrency limit of the chaos namespace per customer (context field customer); 0 none (TASKER_CHAOS_KEY_LIMIT)")
	fs.BoolVar(&o.family, "family", env("FAMILY", "") != "", "run the child crash test's parent and child templates instead of the diamond (TASKER_CHAOS_FAMILY)")
	namespaces := fs.String("namespaces", env("NAMESPACES", ""), "comma-separated namespaces the engine serves; empty means all (TASKER_CHAOS_NAMESPACES)")
	holds := fs.String("hold", env("HOLD", ""), "with -family, comma-separated hold points: child, parent-created, parent-result (TASKER_CHAOS_HOLD)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	o.namespaces, o.holds = splitList(*namespaces), splitList(*holds)
	for _, h := range o.holds {
		switch h {
		case chaos.HoldChild, chaos.HoldParentCreated, chaos.HoldParentResult:
		default:
			return nil, fmt.Errorf("-hold: unknown hold point %q", h)
		}
	}
	if len(o.holds) > 0 && !o.family {
		return nil, errors.New("-hold needs -family")
	}
	if o.url == "" || o.schema == "" {
		return nil, errors.New("-database-url and -schema are required")
	}
	if o.create > 0 && o.family {
		return nil, errors.New("-create makes diamond tasks: not with -family")
	}
	if o.stallPublish > 0 && o.rabbitURL == "" {
		return nil, errors.New("-stall-publish needs -rabbitmq-url")
	}
	if o.maxSleep < o.minSleep {
		return nil, fmt.Errorf("-max-sleep %s is below -min-sleep %s", o.maxSleep, o.minSleep)
	}
	return o, nil
}

// splitList splits a comma-separated list, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// stopWithParent ends ctx when the parent process goes away, so that a worker never outlives the
// test that started it, even when the test binary itself is killed.
func stopWithParent(ctx context.Context) context.Context {
	ctx, cancel := context.WithCancel(ctx)
	parent := os.Getppid()
	go func() {
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if os.Getppid() != parent {
					cancel()
					return
				}
			}
		}
	}()
	return ctx
}

func run(ctx context.Context, o *options) error {
	pool, err := pgxpool.New(context.WithoutCancel(ctx), o.url)
	if err != nil {
		return fmt.Errorf("database URL: %w", err)
	}
	defer pool.Close()

	level := slog.LevelInfo
	if o.verbose {
		level = slog.LevelDebug - 1
	}
	logger := logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	var q queue.Queue // nil: the engine's PostgreSQL queue
	if o.rabbitURL != "" {
		rq, err := rabbitmq.New(o.rabbitURL, rabbitmq.WithPrefix(o.rabbitPref), rabbitmq.WithPrefetch(o.concurrency),
			rabbitmq.WithLogger(logger), rabbitmq.WithConnectionName("tasker-chaos "+o.workerID))
		if err != nil {
			return err
		}
		defer rq.Close()
		q = &stallingPublisher{Queue: rq, stallAt: int64(o.stallPublish)}
	}
	engine, err := tasker.NewEngine(tasker.Config{
		Store:             postgres.New(pool, postgres.WithSchema(o.schema)),
		Queue:             q,
		RepublishAfter:    o.republishAfter,
		Logger:            logger,
		WorkerID:          o.workerID,
		Concurrency:       o.concurrency,
		Lease:             o.lease,
		ShutdownTimeout:   o.shutdown,
		LeaderTTL:         o.leaderTTL,
		RescueInterval:    o.rescueEvery,
		GlobalConcurrency: map[string]int{chaos.Namespace: o.globalLimit},
		Limits:            keyLimits(o.keyLimit),
		Namespaces:        o.namespaces,
	})
	if err != nil {
		return err
	}
	if o.family {
		tmpls, err := chaos.FamilyTemplates()
		if err != nil {
			return err
		}
		for _, t := range tmpls {
			if err := engine.Register(t); err != nil {
				return err
			}
		}
		parent, child := chaos.FamilyHandlers(pool, o.schema, engine.WorkerID(), o.holds, o.minSleep, o.maxSleep)
		engine.Handle(chaos.ParentHandler, parent)
		engine.Handle(chaos.ChildHandler, child)
	} else {
		tmpl, err := chaos.Template()
		if err != nil {
			return err
		}
		if err := engine.Register(tmpl); err != nil {
			return err
		}
		engine.Handle(chaos.Handler, chaos.Work(pool, o.schema, engine.WorkerID(), o.minSleep, o.maxSleep))
	}

	for range o.create {
		task, err := engine.CreateTask(ctx, tasker.TaskRequest{Namespace: chaos.Namespace, Name: chaos.TaskName})
		if err != nil {
			return err
		}
		fmt.Println(createdLine, task.ID)
	}
	logger.Info(runningLine, "pid", os.Getpid(), "worker_id", engine.WorkerID(), "schema", o.schema,
		"concurrency", o.concurrency, "lease", o.lease)
	if err := engine.RunWorkers(ctx); err != nil {
		return err
	}
	logger.Info("chaos worker stopped", "pid", os.Getpid())
	return nil
}

// stallingPublisher is the RabbitMQ queue, except that its stallAt-th Publish prints stalledLine and
// then never returns: the process is to be killed there, between a commit and its publish.
type stallingPublisher struct {
	*rabbitmq.Queue
	stallAt int64
	calls   atomic.Int64
}

func (q *stallingPublisher) Publish(ctx context.Context, name string, payloads [][]byte, delay time.Duration) error {
	if n := q.calls.Add(1); q.stallAt > 0 && n == q.stallAt {
		fmt.Println(stalledLine, len(payloads))
		select {}
	}
	return q.Queue.Publish(ctx, name, payloads, delay)
}

// keyLimits is the chaos namespace's limit of n steps in progress per customer; none for n = 0.
func keyLimits(n int) []tasker.Limit {
	if n <= 0 {
		return nil
	}
	return []tasker.Limit{{Namespace: chaos.Namespace, ContextKey: "customer", Concurrency: n}}
}

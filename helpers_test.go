package tasker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
	"github.com/tasker-systems/tasker/store/memory"
	"github.com/tasker-systems/tasker/store/postgres"
)

// bundle is one test's engine on its own store: a fresh PostgreSQL schema, or a fresh memory store.
type bundle struct {
	backend string          // backendPostgres, backendRabbitMQ or backendMemory
	db      *testdb.DB      // nil on the memory backend
	store   *postgres.Store // nil on the memory backend
	st      store.Store     // the engine's store, whatever the backend
	engine  *tasker.Engine
	cfg     tasker.Config // the engine's configuration, for sibling
	stop    func()
}

type setupOpt func(*tasker.Config)

// setupFunc makes a test's bundle on one backend.
type setupFunc func(t testing.TB, opts ...setupOpt) *bundle

// The backends of the engine-level suite: every test written with eachBackend runs on each.
const (
	backendPostgres = "postgres+pgqueue"
	backendRabbitMQ = "postgres+rabbitmq"
	backendMemory   = "memory"
)

var backends = []string{backendPostgres, backendRabbitMQ, backendMemory}

// eachBackend runs f as a parallel subtest on every backend, with a setup that makes bundles on it.
// A test uses it by naming the parameter setup, so that its body reads as a PostgreSQL test does.
func eachBackend(t *testing.T, f func(t *testing.T, setup setupFunc)) {
	t.Helper()
	for _, be := range backends {
		t.Run(be, func(t *testing.T) {
			t.Parallel()
			f(t, func(t testing.TB, opts ...setupOpt) *bundle { return setupOn(t, be, opts...) })
		})
	}
}

func testLogger() logr.Logger {
	if os.Getenv("TASKER_TEST_LOG") == "" {
		return logr.Discard()
	}
	return logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug - 1}))
}

// setup returns an engine on a fresh PostgreSQL schema with its pgqueue; call b.start to run its
// workers (stopped at cleanup).
func setup(t *testing.T, opts ...setupOpt) *bundle { return setupOn(t, backendPostgres, opts...) }

// setupB is setup for tests and benchmarks.
func setupB(t testing.TB, opts ...setupOpt) *bundle { return setupOn(t, backendPostgres, opts...) }

// setupOn returns an engine on a fresh store of the named backend. On postgres+rabbitmq the queue
// has its own prefix, and the broker queues of the namespaces registered through b.register are
// deleted when the test ends.
func setupOn(t testing.TB, backend string, opts ...setupOpt) *bundle {
	t.Helper()
	b := &bundle{backend: backend}
	cfg := tasker.Config{Logger: testLogger(), Lease: 3 * time.Second, ShutdownTimeout: 2 * time.Second}
	switch backend {
	case backendPostgres, backendRabbitMQ:
		b.db = testdb.New(t, testdb.WithMaxConns(20))
		b.store = postgres.New(b.db.Pool, postgres.WithSchema(b.db.Schema))
		b.st = b.store
		if backend == backendRabbitMQ {
			cfg.Queue = newTestRabbitMQ(t)
		}
	case backendMemory:
		b.st = memory.New()
	default:
		t.Fatalf("unknown backend %q", backend)
	}
	cfg.Store = b.st
	for _, o := range opts {
		o(&cfg)
	}
	eng, err := tasker.NewEngine(cfg)
	require.NoError(t, err)
	b.engine = eng
	b.cfg = cfg
	return b
}

// sibling returns another engine on the bundle's store and queue, as a second process would have
// on the same database (on the memory backend: the same store value); opts apply to a copy of the
// bundle's configuration.
func (b *bundle) sibling(t testing.TB, opts ...setupOpt) *bundle {
	t.Helper()
	cfg := b.cfg
	cfg.WorkerID = ""
	for _, o := range opts {
		o(&cfg)
	}
	eng, err := tasker.NewEngine(cfg)
	require.NoError(t, err)
	s := *b
	s.engine, s.cfg, s.stop = eng, cfg, nil
	return &s
}

// taskEvents lists the task's own transition events.
func taskEvents(trs []tasker.Transition) []string {
	var out []string
	for _, tr := range trs {
		if tr.StepName == "" {
			out = append(out, tr.Event)
		}
	}
	return out
}

// memStore is the bundle's memory store; the test fails on another backend.
func (b *bundle) memStore(t testing.TB) *memory.Store {
	t.Helper()
	m, ok := b.st.(*memory.Store)
	require.True(t, ok, "the bundle's store is %T, not the memory store", b.st)
	return m
}

// start runs the engine's workers until the test ends.
func (b *bundle) start(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.engine.RunWorkers(ctx) }()
	stopped := false
	b.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(30 * time.Second):
			t.Error("RunWorkers did not return within 30s of its context ending")
		}
	}
	t.Cleanup(b.stop)
}

func (b *bundle) register(t testing.TB, yaml string) *tasker.Template {
	t.Helper()
	tmpl, err := tasker.ParseTemplate([]byte(yaml))
	require.NoError(t, err)
	require.NoError(t, b.engine.Register(tmpl))
	return tmpl
}

func (b *bundle) wait(t testing.TB, id uuid.UUID) *tasker.Task {
	t.Helper()
	return b.waitWithin(t, id, 60*time.Second)
}

// waitWithin waits for the task to come to rest, for at most d; on a timeout it logs the task's
// state (dumpTask) before it fails the test.
func (b *bundle) waitWithin(t testing.TB, id uuid.UUID, d time.Duration) *tasker.Task {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	task, err := b.engine.WaitTask(ctx, id)
	if err != nil {
		b.dumpTask(t, id) // what the task is stuck in
	}
	require.NoError(t, err)
	return task
}

func (b *bundle) create(t testing.TB, ns, name string, input any) *tasker.Task {
	t.Helper()
	task, err := b.engine.CreateTask(context.Background(), tasker.TaskRequest{Namespace: ns, Name: name, Context: input})
	require.NoError(t, err)
	return task
}

// requireLegalTransitions checks that the task's and every step's recorded transitions form a
// legal path of the state machines, with no hop that keeps the state.
func requireLegalTransitions(t *testing.T, eng *tasker.Engine, id uuid.UUID) []tasker.Transition {
	t.Helper()
	trs, err := eng.Transitions(context.Background(), id)
	require.NoError(t, err)
	var taskPath []statemachine.TaskState
	stepPaths := map[uuid.UUID][]statemachine.StepState{}
	for _, tr := range trs {
		if tr.StepID == uuid.Nil {
			if len(taskPath) > 0 {
				require.Equal(t, string(taskPath[len(taskPath)-1]), tr.From, "task transition chain broken at %s", tr.Event)
			}
			taskPath = append(taskPath, statemachine.TaskState(tr.To))
			continue
		}
		p := stepPaths[tr.StepID]
		if len(p) > 0 {
			require.Equal(t, string(p[len(p)-1]), tr.From, "step %s transition chain broken at %s", tr.StepName, tr.Event)
		}
		stepPaths[tr.StepID] = append(p, statemachine.StepState(tr.To))
	}
	require.NoError(t, statemachine.ValidateTaskPath(taskPath))
	for id, p := range stepPaths {
		require.NoError(t, statemachine.ValidateStepPath(p), "step %s", id)
	}
	return trs
}

func jsonInt(t *testing.T, raw json.RawMessage) int64 {
	t.Helper()
	var n int64
	require.NoError(t, json.Unmarshal(raw, &n))
	return n
}

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }

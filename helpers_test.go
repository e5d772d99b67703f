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
	"github.com/tasker-systems/tasker/store/postgres"
)

// bundle is one test's engine on its own schema.
type bundle struct {
	db     *testdb.DB
	engine *tasker.Engine
	store  *postgres.Store
	stop   func()
}

type setupOpt func(*tasker.Config)

func testLogger() logr.Logger {
	if os.Getenv("TASKER_TEST_LOG") == "" {
		return logr.Discard()
	}
	return logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug - 1}))
}

// setup returns an engine on a fresh schema; call b.start to run its workers (stopped at cleanup).
func setup(t *testing.T, opts ...setupOpt) *bundle { return setupB(t, opts...) }

// setupB is setup for tests and benchmarks.
func setupB(t testing.TB, opts ...setupOpt) *bundle {
	t.Helper()
	db := testdb.New(t, testdb.WithMaxConns(20))
	st := postgres.New(db.Pool, postgres.WithSchema(db.Schema))
	cfg := tasker.Config{Store: st, Logger: testLogger(), Lease: 3 * time.Second, ShutdownTimeout: 2 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	eng, err := tasker.NewEngine(cfg)
	require.NoError(t, err)
	return &bundle{db: db, engine: eng, store: st}
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
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	task, err := b.engine.WaitTask(ctx, id)
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

package tasker_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/migrations"
	"github.com/tasker-systems/tasker/store/postgres"
)

const outageYAML = `
name: charge
namespace_name: outage
version: 1.0.0
steps:
  - name: charge
    handler: {callable: charge}
    retry: {retryable: false}
  - {name: receipt, handler: {callable: receipt}, dependencies: [charge]}
`

// outageLease is the lease of the engines under test: well beyond the outage of outageDown, which
// is itself well beyond the 3s after which outcomes used to be given up.
const (
	outageLease = 15 * time.Second
	outageDown  = 7 * time.Second
)

// outageBundle is an engine on a private cluster whose "charge" handler signals when it runs and
// returns success once released.
type outageBundle struct {
	*bundle
	cluster *testdb.Cluster
	logs    *logCapture
	runs    atomic.Int32
	started chan struct{}
	release chan struct{}
	once    sync.Once
}

func newOutageBundle(t *testing.T) *outageBundle {
	t.Helper()
	cluster := testdb.NewCluster(t)
	const schema = "outage"
	admin := faultPool(t, cluster.URL, "tasker-outage-admin", 2)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, migrations.Migrate(ctx, admin, migrations.WithSchema(schema)))
	pool := faultPool(t, cluster.URL, "tasker-outage-e0", 10)
	st := postgres.New(pool, postgres.WithSchema(schema))
	o := &outageBundle{cluster: cluster, logs: newLogCapture(), started: make(chan struct{}), release: make(chan struct{})}
	t.Cleanup(func() { o.once.Do(func() { close(o.release) }) })
	eng, err := tasker.NewEngine(tasker.Config{Store: st, Logger: o.logs.logger(), WorkerID: "engine-0",
		Lease: outageLease, ShutdownTimeout: 2 * time.Second})
	require.NoError(t, err)
	o.bundle = &bundle{engine: eng, store: st}
	o.register(t, outageYAML)
	eng.HandleFunc("charge", func(ctx context.Context, s *tasker.Step) (any, error) {
		if o.runs.Add(1) == 1 {
			close(o.started)
		}
		<-o.release
		return map[string]any{"charged": true}, nil
	})
	eng.HandleFunc("receipt", func(context.Context, *tasker.Step) (any, error) { return "sent", nil })
	return o
}

// runHandlerIntoOutage creates a task, waits for its handler to run, stops the server and lets
// the handler return success while the server is down.
func (o *outageBundle) runHandlerIntoOutage(t *testing.T) uuid.UUID {
	t.Helper()
	task := o.create(t, "outage", "charge", map[string]any{"amount": 5})
	select {
	case <-o.started:
	case <-time.After(30 * time.Second):
		t.Fatal("the handler did not start")
	}
	require.NoError(t, o.cluster.Stop("fast"))
	o.once.Do(func() { close(o.release) })
	return task.ID
}

// requireChargedOnce checks that the charge step completed in its first attempt, its handler ran
// once, and nobody rescued it.
func (o *outageBundle) requireChargedOnce(t *testing.T, id uuid.UUID) *tasker.Task {
	t.Helper()
	task := waitSettled(t, o.engine, []uuid.UUID{id}, 60*time.Second)[id]
	if task == nil {
		t.Fatal("no task")
	}
	charge, ok := task.Step("charge")
	require.True(t, ok)
	require.Equal(t, tasker.StepComplete, charge.State, "the outcome was kept through the outage (error: %+v)", charge.LastError)
	require.Equal(t, 1, charge.Attempts)
	require.Nil(t, charge.LastError)
	require.Equal(t, int32(1), o.runs.Load(), "the handler ran exactly once")
	for _, tr := range requireLegalTransitions(t, o.engine, id) {
		if f := tr.Failure(); f != nil {
			require.NotEqual(t, "lease_expired", f.Kind, "step %s was rescued: %s", tr.StepName, f.Message)
		}
		require.NotEqual(t, "fail_permanent", tr.Event, "step %s", tr.StepName)
	}
	return task
}

// TestFaultOutcomeKeptThroughOutage: a handler returns success while PostgreSQL is down for
// several seconds — longer than the 3s after which the outcome used to be given up, shorter than
// the lease. The outcome is kept and recorded once the server is back: the step completes in its
// first attempt, its handler ran once, the task completes, and no lease_expired is recorded.
// Before, the rescuer failed the step with lease_expired once the lease ran out, and the task was
// blocked although its handler had succeeded.
func TestFaultOutcomeKeptThroughOutage(t *testing.T) {
	t.Parallel()
	t.Run("running engine", func(t *testing.T) {
		t.Parallel()
		o := newOutageBundle(t)
		o.start(t)
		id := o.runHandlerIntoOutage(t)
		time.Sleep(outageDown)
		require.NoError(t, o.cluster.Start())
		task := o.requireChargedOnce(t, id)
		require.Equal(t, tasker.TaskComplete, task.State)
		require.True(t, o.logs.contains("step outcome recorded after the database came back"))
		var retries int
		o.logs.mu.Lock()
		for _, l := range o.logs.lines {
			if strings.Contains(l, "trying again while its lease lasts") {
				retries++
			}
		}
		o.logs.mu.Unlock()
		require.Positive(t, retries, "the wait is reported")
		require.LessOrEqual(t, retries, int(outageDown/(5*time.Second))+2, "the wait is reported at a sane rate")
	})

	// An engine told to stop while the database is away still records the finished outcome once
	// the database is back, within its lease, before RunWorkers returns.
	t.Run("stopping engine", func(t *testing.T) {
		t.Parallel()
		o := newOutageBundle(t)
		o.start(t)
		id := o.runHandlerIntoOutage(t)
		stopped := make(chan time.Duration, 1)
		go func() {
			t0 := time.Now()
			o.stop()
			stopped <- time.Since(t0)
		}()
		time.Sleep(5 * time.Second)
		require.NoError(t, o.cluster.Start())
		select {
		case took := <-stopped:
			t.Logf("RunWorkers returned %s after its context ended", took.Round(time.Millisecond))
			require.Greater(t, took, 5*time.Second, "RunWorkers waited for the outcome")
		case <-time.After(outageLease + 15*time.Second):
			t.Fatal("RunWorkers did not return within its bound")
		}
		got, err := o.engine.GetTask(context.Background(), id)
		require.NoError(t, err)
		charge, _ := got.Step("charge")
		require.Equal(t, tasker.StepComplete, charge.State, "the outcome was recorded before RunWorkers returned (error: %+v)", charge.LastError)
		require.Equal(t, 1, charge.Attempts)

		// The next RunWorkers finishes the task, and nobody rescued the charge.
		o.start(t)
		task := o.requireChargedOnce(t, id)
		require.Equal(t, tasker.TaskComplete, task.State)
	})
}

package tasker_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/store"
)

// claimAsDeadWorker claims a step for a worker that then vanishes: its lease runs out unrenewed.
func claimAsDeadWorker(t testing.TB, b *bundle, task *tasker.Task, step string) {
	t.Helper()
	got, err := b.engine.GetTask(context.Background(), task.ID)
	require.NoError(t, err)
	s, ok := got.Step(step)
	require.True(t, ok)
	_, err = b.st.ClaimStep(context.Background(), store.ClaimStepParams{StepID: s.ID, WorkerID: "dead-worker", Lease: 50 * time.Millisecond})
	require.NoError(t, err)
}

func TestRescuerRetriesAStepWhoseWorkerDied(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		b := setup(t, func(c *tasker.Config) { c.Lease = time.Second; c.RescueInterval = 100 * time.Millisecond })
		b.register(t, linearYAML)
		b.engine.HandleFunc("add_one", addOne)
		task := b.create(t, "test", "linear", nil)
		claimAsDeadWorker(t, b, task, "a")
		b.start(t)

		got := b.wait(t, task.ID)
		require.Equal(t, tasker.TaskComplete, got.State)
		a, _ := got.Step("a")
		require.Equal(t, 2, a.Attempts, "the dead worker's attempt counts")
		require.Equal(t, "lease_expired", a.LastError.Kind)
		require.Contains(t, a.LastError.Message, "dead-worker")
		trs := requireLegalTransitions(t, b.engine, task.ID)
		var failure *tasker.StepFailure
		for _, tr := range trs {
			if tr.StepName == "a" && tr.Event == "fail_retryable" {
				failure = tr.Failure()
				require.Contains(t, string(tr.Metadata), `"worker_id": "dead-worker"`)
			}
		}
		require.NotNil(t, failure, "the crash is in the step's error history")
		require.Equal(t, 1, failure.Attempt)
	})
}

func TestRescuerFailsAStepWithNoAttemptLeft(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		b := setup(t, func(c *tasker.Config) { c.Lease = time.Second; c.RescueInterval = 100 * time.Millisecond })
		b.register(t, flakyTemplate(1, "5"))
		b.engine.HandleFunc("flaky", addOne)
		b.engine.HandleFunc("add_one", addOne)
		task := b.create(t, "test", "flaky", nil)
		claimAsDeadWorker(t, b, task, "first")
		b.start(t)

		got := b.wait(t, task.ID)
		require.Equal(t, tasker.TaskBlockedByFailures, got.State)
		first, _ := got.Step("first")
		require.Equal(t, tasker.StepError, first.State)
		require.Equal(t, 1, first.Attempts)
		require.Equal(t, "lease_expired", first.LastError.Kind)
		requireLegalTransitions(t, b.engine, task.ID)
	})
}

// TestLongHandlerKeepsItsLease runs a handler for several lease lengths: its heartbeat renews the
// lease, so the rescuer never mistakes it for a dead one.
func TestLongHandlerKeepsItsLease(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		b := setup(t, func(c *tasker.Config) { c.Lease = 600 * time.Millisecond; c.RescueInterval = 100 * time.Millisecond })
		b.register(t, flakyTemplate(3, "10"))
		b.engine.HandleFunc("flaky", func(ctx context.Context, s *tasker.Step) (any, error) {
			select {
			case <-time.After(2 * time.Second):
				return 41, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		})
		b.engine.HandleFunc("add_one", addOne)
		b.start(t)
		got := b.wait(t, b.create(t, "test", "flaky", nil).ID)
		require.Equal(t, tasker.TaskComplete, got.State)
		first, _ := got.Step("first")
		require.Equal(t, 1, first.Attempts, "no rescue of a live handler")
		require.Nil(t, first.LastError)
	})
}

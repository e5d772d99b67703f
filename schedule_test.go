package tasker_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
)

// TestRunAtTaskDoesNotStartEarly creates tasks scheduled a little ahead, with workers running, and
// checks that no handler of theirs runs before RunAt, that each starts soon after, and that they are
// listed as scheduled until then.
func TestRunAtTaskDoesNotStartEarly(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		b := setup(t)
		b.register(t, linearYAML)
		var mu sync.Mutex
		first := map[uuid.UUID]time.Time{}
		b.engine.HandleFunc("add_one", func(ctx context.Context, s *tasker.Step) (any, error) {
			now := time.Now()
			mu.Lock()
			if _, ok := first[s.TaskID]; !ok {
				first[s.TaskID] = now
			}
			mu.Unlock()
			return addOne(ctx, s)
		})
		b.start(t)
		ctx := context.Background()

		now := time.Now()
		const n = 3
		var tasks []*tasker.Task
		for i := range n {
			runAt := now.Add(1500*time.Millisecond + time.Duration(i)*300*time.Millisecond)
			task, err := b.engine.CreateTask(ctx, tasker.TaskRequest{Namespace: "test", Name: "linear",
				Context: map[string]any{"i": i}, RunAt: runAt})
			require.NoError(t, err)
			require.Equal(t, tasker.TaskWaitingForRetry, task.State, "a scheduled task waits")
			require.NotNil(t, task.RunAt)
			require.False(t, task.RunAt.Before(runAt), "RunAt is kept, never earlier")
			require.Less(t, task.RunAt.Sub(runAt), time.Microsecond)
			a, _ := task.Step("a")
			require.Equal(t, tasker.StepWaitingForRetry, a.State)
			require.Equal(t, 0, a.Attempts)
			tasks = append(tasks, task)
		}
		plain := b.create(t, "test", "linear", map[string]any{"plain": true})
		require.Nil(t, plain.RunAt)

		listed, err := b.engine.ListTasks(ctx, tasker.ListOptions{Scheduled: true})
		require.NoError(t, err)
		require.Len(t, listed, n, "only the scheduled tasks are listed as scheduled")
		got, err := b.engine.GetTask(ctx, tasks[0].ID)
		require.NoError(t, err)
		require.Equal(t, *tasks[0].RunAt, *got.RunAt)

		for _, task := range tasks {
			done := b.wait(t, task.ID)
			require.Equal(t, tasker.TaskComplete, done.State)
			require.Nil(t, done.RunAt, "a started task is no longer scheduled")
			mu.Lock()
			started := first[task.ID]
			mu.Unlock()
			require.False(t, started.Before(*task.RunAt), "started %s before its RunAt", task.RunAt.Sub(started))
			// pgqueue and memqueue wake at the message's time; RabbitMQ's delayed message too.
			require.Less(t, started.Sub(*task.RunAt), time.Second, "started %s after its RunAt", started.Sub(*task.RunAt))
			for _, s := range done.Steps {
				require.Equal(t, 1, s.Attempts, "waiting for the start spent no attempt")
			}
			trs := requireLegalTransitions(t, b.engine, task.ID)
			require.Equal(t, []string{"create", "start", "initialized", "steps_enqueued", "evaluate", "awaiting_retry",
				"evaluate", "ready_steps_found", "steps_enqueued", "evaluate", "all_steps_complete"}, taskEvents(trs))
		}
		listed, err = b.engine.ListTasks(ctx, tasker.ListOptions{Scheduled: true})
		require.NoError(t, err)
		require.Empty(t, listed)
	})
}

// TestRunAtBounds: a RunAt in the past starts the task now; one beyond MaxRunAtAhead is refused and
// writes nothing; a scheduled task can be cancelled before its start.
func TestRunAtBounds(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		b := setup(t)
		b.register(t, linearYAML)
		b.engine.HandleFunc("add_one", addOne)
		ctx := context.Background()

		past, err := b.engine.CreateTask(ctx, tasker.TaskRequest{Namespace: "test", Name: "linear",
			Context: map[string]any{"past": true}, RunAt: time.Now().Add(-time.Hour)})
		require.NoError(t, err)
		require.Equal(t, tasker.TaskStepsInProcess, past.State, "a RunAt in the past means now")
		require.Nil(t, past.RunAt)

		_, err = b.engine.CreateTask(ctx, tasker.TaskRequest{Namespace: "test", Name: "linear",
			Context: map[string]any{"far": true}, RunAt: time.Now().Add(tasker.MaxRunAtAhead + time.Hour)})
		var inErr *tasker.InputError
		require.True(t, errors.As(err, &inErr), "got %v", err)
		all, err := b.engine.ListTasks(ctx, tasker.ListOptions{})
		require.NoError(t, err)
		require.Len(t, all, 1, "the refused request wrote nothing")

		later, err := b.engine.CreateTask(ctx, tasker.TaskRequest{Namespace: "test", Name: "linear",
			Context: map[string]any{"later": true}, RunAt: time.Now().Add(time.Hour)})
		require.NoError(t, err)
		b.start(t)
		require.NoError(t, b.engine.CancelTask(ctx, later.ID, "not needed"))
		got, err := b.engine.GetTask(ctx, later.ID)
		require.NoError(t, err)
		require.Equal(t, tasker.TaskCancelled, got.State)
		require.Nil(t, got.RunAt)
		require.Equal(t, tasker.TaskComplete, b.wait(t, past.ID).State)
	})
}

// TestRunAtSurvivesRestart: the schedule lives in the store, so a task scheduled while no engine
// runs workers starts once one does, after its RunAt.
func TestRunAtSurvivesRestart(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		b := setup(t)
		b.register(t, linearYAML)
		ctx := context.Background()
		runAt := time.Now().Add(300 * time.Millisecond)
		task, err := b.engine.CreateTask(ctx, tasker.TaskRequest{Namespace: "test", Name: "linear", RunAt: runAt})
		require.NoError(t, err)
		time.Sleep(500 * time.Millisecond) // the start passes with no worker running

		next := b.sibling(t)
		next.register(t, linearYAML)
		var started time.Time
		var once sync.Once
		next.engine.HandleFunc("add_one", func(ctx context.Context, s *tasker.Step) (any, error) {
			once.Do(func() { started = time.Now() })
			return addOne(ctx, s)
		})
		next.start(t)
		done := next.wait(t, task.ID)
		require.Equal(t, tasker.TaskComplete, done.State)
		require.False(t, started.Before(runAt))
	})
}

// TestRunAtInCallersTransaction: a task scheduled inside the caller's transaction starts after its
// RunAt once the transaction commits, on pgqueue and on RabbitMQ (whose first messages go out when
// the store announces the commit).
func TestRunAtInCallersTransaction(t *testing.T) {
	t.Parallel()
	for _, be := range []string{backendPostgres, backendRabbitMQ} {
		t.Run(be, func(t *testing.T) {
			t.Parallel()
			b := setupOn(t, be)
			b.register(t, linearYAML)
			var started time.Time
			var once sync.Once
			b.engine.HandleFunc("add_one", func(ctx context.Context, s *tasker.Step) (any, error) {
				once.Do(func() { started = time.Now() })
				return addOne(ctx, s)
			})
			b.start(t)
			ctx := context.Background()
			time.Sleep(200 * time.Millisecond) // the engine listens and leads
			tx, err := b.db.Pool.Begin(ctx)
			require.NoError(t, err)
			runAt := time.Now().Add(700 * time.Millisecond)
			task, err := b.engine.CreateTaskTx(ctx, tx, tasker.TaskRequest{Namespace: "test", Name: "linear", RunAt: runAt})
			require.NoError(t, err)
			require.NoError(t, tx.Commit(ctx))
			done := b.wait(t, task.ID)
			require.Equal(t, tasker.TaskComplete, done.State)
			require.False(t, started.Before(runAt))
			require.Less(t, started.Sub(runAt), 2*time.Second)
		})
	}
}

// TestWaitingByDesignIsNotStale: a task scheduled ahead and a task parked on a signal wait in
// waiting_for_retry past the max_waiting_for_retry threshold without being stale, while a real
// retry's wait is measured.
func TestWaitingByDesignIsNotStale(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		b := setup(t, func(c *tasker.Config) {
			c.Staleness = tasker.StalenessConfig{Disabled: true, Defaults: tasker.StalenessThresholds{
				MaxWaitingForRetry: 300 * time.Millisecond, Action: tasker.StalenessReport}}
		})
		b.register(t, linearYAML)
		b.register(t, signalYAML("approval", "{timeout_seconds: 60}"))
		b.engine.HandleFunc("add_one", addOne)
		b.engine.HandleFunc("sig_after", passOn)
		b.start(t)
		ctx := context.Background()
		later, err := b.engine.CreateTask(ctx, tasker.TaskRequest{Namespace: "test", Name: "linear", RunAt: time.Now().Add(time.Hour)})
		require.NoError(t, err)
		parked := b.create(t, "sig", "approval", nil)
		waitParked(t, b, "wait", parked.ID)
		time.Sleep(500 * time.Millisecond)
		reports, err := b.engine.Staleness(ctx, tasker.StalenessOptions{})
		require.NoError(t, err)
		require.Len(t, reports, 2)
		for _, r := range reports {
			require.Equal(t, tasker.TaskWaitingForRetry, r.State)
			require.Equal(t, tasker.BandHealthy, r.Band, "task %s (the scheduled one is %s) waits by design", r.TaskID, later.ID)
			require.NotEqual(t, "max_waiting_for_retry", r.Threshold)
		}
	})
}

package engine

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

// completeOneStep creates a one-step task and runs it to completion.
func completeOneStep(t *testing.T, e *Engine) uuid.UUID {
	t.Helper()
	ctx := context.Background()
	taskID, stepID := createOneStep(t, e, 1)
	c, err := e.store.ClaimStep(ctx, store.ClaimStepParams{StepID: stepID, WorkerID: "w", Lease: time.Minute})
	require.NoError(t, err)
	_, err = e.store.RecordOutcome(ctx, store.OutcomeParams{TaskID: taskID, StepID: stepID, WorkerID: "w", Attempt: c.Step.Attempts,
		Kind: store.OutcomeSuccess, Result: json.RawMessage(`{}`), Namespace: "ns", Enqueuer: e.NewEnqueuer()})
	require.NoError(t, err)
	return taskID
}

func serviceNames(w *workers) []string {
	var out []string
	for _, s := range w.services() {
		out = append(out, s.name)
	}
	return out
}

// TestRetentionIsOffWithoutAPeriod: without a period the service does not run; with one it does,
// at its interval.
func TestRetentionIsOffWithoutAPeriod(t *testing.T) {
	t.Parallel()
	_, off, _ := testEngine(t, nil, nil)
	require.NotContains(t, serviceNames(off), "retention")
	_, on, _ := testEngine(t, nil, func(c *Config) {
		c.Retention = RetentionConfig{Period: time.Hour, Interval: 7 * time.Second, BatchSize: 10, MaxBatches: 1}
	})
	i := slices.IndexFunc(on.services(), func(s service) bool { return s.name == "retention" })
	require.GreaterOrEqual(t, i, 0)
	require.Equal(t, 7*time.Second, on.services()[i].interval)
}

// TestRetentionPurgesInBoundedPasses completes five tasks and keeps one running: once the period
// has passed, a pass purges at most BatchSize × MaxBatches tasks, oldest first, the next pass the
// rest, and the running task is never touched; a task that ended within the period waits.
func TestRetentionPurgesInBoundedPasses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e, w, st := testEngine(t, nil, func(c *Config) {
		c.Retention = RetentionConfig{Period: 300 * time.Millisecond, Interval: time.Second, BatchSize: 2, MaxBatches: 2}
	})
	var done []uuid.UUID
	for range 5 {
		done = append(done, completeOneStep(t, e))
	}
	running, runningStep := createOneStep(t, e, 1)
	_, err := e.store.ClaimStep(ctx, store.ClaimStepParams{StepID: runningStep, WorkerID: "w", Lease: time.Minute})
	require.NoError(t, err)

	require.NoError(t, w.retain(ctx))
	for _, id := range done {
		_, err := e.store.GetTask(ctx, id)
		require.NoError(t, err, "ended within the period: kept")
	}
	time.Sleep(350 * time.Millisecond)
	recent := completeOneStep(t, e)

	exists := func(id uuid.UUID) bool {
		_, err := e.store.GetTask(ctx, id)
		if err != nil {
			require.ErrorIs(t, err, store.ErrNotFound)
		}
		return err == nil
	}
	require.NoError(t, w.retain(ctx))
	for i, id := range done {
		require.Equal(t, i >= 4, exists(id), "task %d: the pass stops after 2 batches of 2, oldest first", i)
	}
	require.NoError(t, w.retain(ctx))
	for _, id := range done {
		require.False(t, exists(id))
	}
	require.True(t, exists(recent), "ended within the period")
	task, err := e.store.GetTask(ctx, running)
	require.NoError(t, err)
	require.Equal(t, statemachine.TaskStepsInProcess, task.State, "the running task is untouched")
	require.Equal(t, statemachine.StepInProgress, stepOf(t, e, running, runningStep).State)
	require.Empty(t, st.ArchivedTasks())
}

// TestRetentionArchives: with Archive, the purged tasks are kept in the archive.
func TestRetentionArchives(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e, w, st := testEngine(t, nil, func(c *Config) {
		c.Retention = RetentionConfig{Period: time.Millisecond, Interval: time.Second, BatchSize: 10, MaxBatches: 1, Archive: true}
	})
	id := completeOneStep(t, e)
	time.Sleep(5 * time.Millisecond)
	require.NoError(t, w.retain(ctx))
	require.Equal(t, []uuid.UUID{id}, st.ArchivedTasks())
}

// TestRetentionReportsTheStoreError: a pass that cannot purge returns the error, for the
// service's status.
func TestRetentionReportsTheStoreError(t *testing.T) {
	t.Parallel()
	_, w, _ := testEngine(t, nil, func(c *Config) {
		c.Retention = RetentionConfig{Period: time.Millisecond, Interval: time.Second, BatchSize: 10, MaxBatches: 1}
	})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, w.retain(ctx), context.Canceled)
}

type noHandler struct{}

func (noHandler) Handle(context.Context, *Attempt) Return { return Return{} }

// TestMessageOfAPurgedTaskIsDropped: a message left in a queue outside the store's transactions
// (memqueue here, RabbitMQ in production) for a step of a task that ended and was purged is
// acked, not read again and again: its claim finds no step (store.ErrConflict).
func TestMessageOfAPurgedTaskIsDropped(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e, w, st := testEngine(t, nil, nil)
	e.Handle("h", noHandler{})
	taskID, _ := createOneStep(t, e, 1) // its step's message waits in the queue
	_, err := e.store.CancelTask(ctx, store.CancelTaskParams{TaskID: taskID})
	require.NoError(t, err)
	res, err := e.store.PurgeTasks(ctx, store.PurgeTasksParams{})
	require.NoError(t, err)
	require.Equal(t, []uuid.UUID{taskID}, res.Tasks)

	msgs, err := st.DefaultQueue().Read(ctx, "ns", 10, 50*time.Millisecond)
	require.NoError(t, err)
	require.Len(t, msgs, 1, "the leftover message")
	w.slots <- struct{}{}
	w.inflight.Add(1)
	w.execute("ns", msgs[0])
	time.Sleep(100 * time.Millisecond) // past the visibility timeout: an unacked message is back
	msgs, err = st.DefaultQueue().Read(ctx, "ns", 10, time.Minute)
	require.NoError(t, err)
	require.Empty(t, msgs, "the message was acked")
}

package engine

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
	"github.com/tasker-systems/tasker/store/postgres"
)

// exhaust claims the step for a worker that vanishes on its last attempt and rescues it: the step
// fails for good with every attempt used, and its task is blocked.
func exhaust(t *testing.T, e *Engine, w *workers, stepIDs ...uuid.UUID) {
	t.Helper()
	ctx := context.Background()
	for _, id := range stepIDs {
		_, err := e.store.ClaimStep(ctx, store.ClaimStepParams{StepID: id, WorkerID: "vanished", Lease: 10 * time.Millisecond})
		require.NoError(t, err)
	}
	time.Sleep(30 * time.Millisecond)
	require.NoError(t, w.rescue(ctx))
}

// TestDeadLetterExhaustedWritesOneEntryPerTask blocks two tasks on steps with no attempt left and
// leaves a third running: a pass writes one max_retries_exceeded entry for each blocked task, with
// its snapshot, and leaves them blocked; passes run again, and by two engines at once, write
// nothing more. An entry resolved while the task stays blocked is not written again.
func TestDeadLetterExhaustedWritesOneEntryPerTask(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e, w, st := testEngine(t, nil, nil)
	t1, s1 := createOneStep(t, e, 1)
	t2, s2 := createOneStep(t, e, 1)
	t3, _ := createOneStep(t, e, 3)
	exhaust(t, e, w, s1, s2)

	require.NoError(t, w.deadLetterExhausted(ctx))
	list, err := st.ListDeadLetters(ctx, store.ListDeadLettersParams{})
	require.NoError(t, err)
	require.Len(t, list, 2)
	byTask := map[uuid.UUID]store.DeadLetter{}
	for _, d := range list {
		byTask[d.TaskID] = d
	}
	require.NotContains(t, byTask, t3, "a task still running is not dead-lettered")
	for _, id := range []uuid.UUID{t1, t2} {
		d, ok := byTask[id]
		require.True(t, ok)
		require.Equal(t, store.ReasonMaxRetriesExceeded, d.Reason)
		require.Equal(t, statemachine.DeadLetterPending, d.Status)
		require.Equal(t, statemachine.TaskBlockedByFailures, d.OriginalState)
		require.Equal(t, statemachine.TaskBlockedByFailures, d.TaskState, "the task stays blocked: an entry requeues nothing")
		var snap store.Snapshot
		require.NoError(t, json.Unmarshal(d.Snapshot, &snap))
		require.Len(t, snap.Steps, 1)
		require.Equal(t, statemachine.StepError, snap.Steps[0].State)
		require.Equal(t, "retries_exhausted", snap.Detail["writer"])
		task, err := st.GetTask(ctx, id)
		require.NoError(t, err)
		require.Equal(t, statemachine.TaskBlockedByFailures, task.State)
	}

	// Again, and by two engines on the same store at once: nothing more is written.
	w2 := newWorkers(New(e.cfg))
	w2.dbctx = context.Background()
	require.NoError(t, w.deadLetterExhausted(ctx))
	var wg sync.WaitGroup
	for _, x := range []*workers{w, w2} {
		wg.Add(1)
		go func() { defer wg.Done(); require.NoError(t, x.deadLetterExhausted(ctx)) }()
	}
	wg.Wait()
	list, err = st.ListDeadLetters(ctx, store.ListDeadLettersParams{})
	require.NoError(t, err)
	require.Len(t, list, 2)

	// An entry cancelled while its task stays blocked is not written again for the same blocking.
	_, err = st.ResolveDeadLetter(ctx, store.ResolveDeadLetterParams{ID: byTask[t1].ID, Status: statemachine.DeadLetterCancelled, ResolvedBy: "op"})
	require.NoError(t, err)
	require.NoError(t, w.deadLetterExhausted(ctx))
	list, err = st.ListDeadLetters(ctx, store.ListDeadLettersParams{})
	require.NoError(t, err)
	require.Len(t, list, 2)
}

// testEngineOnPostgres is testEngine on a fresh PostgreSQL schema with its own queue.
func testEngineOnPostgres(t *testing.T) (*Engine, *workers) {
	t.Helper()
	db := testdb.New(t)
	st := postgres.New(db.Pool, postgres.WithSchema(db.Schema))
	e := New(Config{Store: st, Queue: st.DefaultQueue(), WorkerID: "test-worker", Concurrency: 4, Lease: time.Minute,
		ShutdownTimeout: time.Second, MaxPayloadBytes: 1 << 20, LeaderTTL: time.Second, RescueInterval: time.Second,
		RepublishAfter: time.Second, MaxDecisionSteps: 10})
	w := newWorkers(e)
	w.dbctx = context.Background()
	return e, w
}

// TestDeadLetterExhaustedRaces runs passes of two engines at once over many blocked tasks, on
// memory and on PostgreSQL: each task gets exactly one entry.
func TestDeadLetterExhaustedRaces(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"memory", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			var e *Engine
			var w *workers
			if backend == "memory" {
				e, w, _ = testEngine(t, nil, nil)
			} else {
				e, w = testEngineOnPostgres(t)
			}
			var steps []uuid.UUID
			for range 20 {
				_, s := createOneStep(t, e, 1)
				steps = append(steps, s)
			}
			exhaust(t, e, w, steps...)
			w2 := newWorkers(New(e.cfg))
			w2.dbctx = context.Background()
			var wg sync.WaitGroup
			for i := range 6 {
				x := []*workers{w, w2}[i%2]
				wg.Add(1)
				go func() { defer wg.Done(); require.NoError(t, x.deadLetterExhausted(ctx)) }()
			}
			wg.Wait()
			list, err := e.store.ListDeadLetters(ctx, store.ListDeadLettersParams{Limit: 100})
			require.NoError(t, err)
			require.Len(t, list, 20)
			seen := map[uuid.UUID]bool{}
			for _, d := range list {
				require.False(t, seen[d.TaskID], "task %s has two entries", d.TaskID)
				seen[d.TaskID] = true
				require.Equal(t, store.ReasonMaxRetriesExceeded, d.Reason)
			}
		})
	}
}

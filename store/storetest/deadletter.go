package storetest

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

func testDeadLetters(t *testing.T, h Harness) {
	parallelTest(t, h, "FailTaskWritesOneEntry", testFailTaskWritesOneEntry)
	parallelTest(t, h, "ResolveAndStats", testResolveAndStats)
	parallelTest(t, h, "ListBothWays", testListDeadLettersBothWays)
}

// testFailTaskWritesOneEntry measures a task, fails it with a dead letter under the measured
// state, and checks that a second attempt with the same measure is refused: the move happens once.
func testFailTaskWritesOneEntry(t *testing.T, b *bundle) {
	ctx := context.Background()
	g := b.createGraph(t, b.newStep("a"), b.newStep("b", 0))
	b.sent(t)
	act, err := b.Store.ActiveTasks(ctx, store.ActiveTasksParams{})
	require.NoError(t, err)
	require.Len(t, act, 1)
	a := act[0]
	require.Equal(t, g.task, a.ID)
	require.Greater(t, a.StateSortKey, 0)
	require.GreaterOrEqual(t, a.Age, a.StateAge)

	none, err := b.Store.ActiveTasks(ctx, store.ActiveTasksParams{MinAge: time.Hour})
	require.NoError(t, err)
	require.Empty(t, none, "MinAge keeps younger tasks out")

	p := store.FailTaskParams{TaskID: g.task, From: a.State, FromSortKey: a.StateSortKey,
		Meta:       map[string]any{"threshold": "steps_in_process"},
		DeadLetter: &store.NewDeadLetter{ID: uuid.Must(uuid.NewV7()), Reason: store.ReasonStalenessTimeout, Detail: map[string]any{"threshold": "steps_in_process"}}}
	res, err := b.Store.FailTask(ctx, p)
	require.NoError(t, err)
	require.Equal(t, statemachine.TaskError, res.TaskState)
	require.NotNil(t, res.DeadLetter)
	require.Equal(t, a.State, res.DeadLetter.OriginalState)
	var snap store.Snapshot
	require.NoError(t, json.Unmarshal(res.DeadLetter.Snapshot, &snap))
	require.Len(t, snap.Steps, 2)
	require.Equal(t, a.State, snap.Task.State)
	require.Equal(t, map[string]statemachine.StepState{"a": "cancelled", "b": "cancelled"}, b.states(t, g.task))
	task := b.task(t, g.task)
	require.Equal(t, [2]int{0, 0}, [2]int{task.StepsUnfinished, task.StepsActive})
	last := taskPath(t, b, g.task)
	require.Equal(t, statemachine.TaskError, last[len(last)-1])

	_, err = b.Store.FailTask(ctx, p)
	require.ErrorIs(t, err, store.ErrConflict, "the task moved: the measure no longer holds")
	list, err := b.Store.ListDeadLetters(ctx, store.ListDeadLettersParams{})
	require.NoError(t, err)
	require.Len(t, list, 1)
	_, err = b.Store.AddDeadLetter(ctx, store.AddDeadLetterParams{TaskID: g.task,
		Entry: store.NewDeadLetter{ID: uuid.Must(uuid.NewV7()), Reason: store.ReasonManual}})
	require.ErrorIs(t, err, store.ErrDeadLetterOpen)
}

// testResolveAndStats resolves an entry once, refuses a second resolution, and counts.
func testResolveAndStats(t *testing.T, b *bundle) {
	ctx := context.Background()
	id := b.create(t, b.newStep("a"))
	d, err := b.Store.AddDeadLetter(ctx, store.AddDeadLetterParams{TaskID: id,
		Entry: store.NewDeadLetter{ID: uuid.Must(uuid.NewV7()), Reason: store.ReasonManual}})
	require.NoError(t, err)
	require.Equal(t, statemachine.DeadLetterPending, d.Status)
	got, err := b.Store.TaskDeadLetter(ctx, id)
	require.NoError(t, err)
	require.Equal(t, d.ID, got.ID)

	r, err := b.Store.ResolveDeadLetter(ctx, store.ResolveDeadLetterParams{ID: d.ID, Status: statemachine.DeadLetterCancelled, Notes: "n", ResolvedBy: "op"})
	require.NoError(t, err)
	require.Equal(t, statemachine.DeadLetterCancelled, r.Status)
	require.NotNil(t, r.ResolvedAt)
	require.Equal(t, [2]string{"n", "op"}, [2]string{r.Notes, r.ResolvedBy})
	_, err = b.Store.ResolveDeadLetter(ctx, store.ResolveDeadLetterParams{ID: d.ID, Status: statemachine.DeadLetterManuallyResolved})
	require.ErrorIs(t, err, store.ErrConflict)
	_, err = b.Store.ResolveDeadLetter(ctx, store.ResolveDeadLetterParams{ID: uuid.New(), Status: statemachine.DeadLetterCancelled})
	require.ErrorIs(t, err, store.ErrNotFound)

	stats, err := b.Store.DeadLetterStats(ctx, store.DeadLetterStatsParams{})
	require.NoError(t, err)
	require.Len(t, stats, 1)
	require.Equal(t, store.ReasonManual, stats[0].Reason)
	require.Equal(t, 1, stats[0].Total)
	require.Equal(t, 1, stats[0].ByStatus[statemachine.DeadLetterCancelled])
}

// testListDeadLettersBothWays pages through the entries newest first and oldest first, with
// keyset paging in each direction: every entry once, in order.
func testListDeadLettersBothWays(t *testing.T, b *bundle) {
	ctx := context.Background()
	var ids []uuid.UUID
	for range 5 {
		task := b.create(t, b.newStep("a"))
		d, err := b.Store.AddDeadLetter(ctx, store.AddDeadLetterParams{TaskID: task,
			Entry: store.NewDeadLetter{ID: uuid.Must(uuid.NewV7()), Reason: store.ReasonManual}})
		require.NoError(t, err)
		ids = append(ids, d.ID)
	}
	page := func(oldest bool) []uuid.UUID {
		var got []uuid.UUID
		var after uuid.UUID
		for {
			list, err := b.Store.ListDeadLetters(ctx, store.ListDeadLettersParams{AfterID: after, Limit: 2, OldestFirst: oldest})
			require.NoError(t, err)
			for _, d := range list {
				got = append(got, d.ID)
			}
			if len(list) < 2 {
				return got
			}
			after = list[len(list)-1].ID
		}
	}
	require.Equal(t, ids, page(true), "oldest first")
	newest := slices.Clone(ids)
	slices.Reverse(newest)
	require.Equal(t, newest, page(false), "newest first")
}

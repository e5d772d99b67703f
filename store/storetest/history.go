package storetest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

func testHistory(t *testing.T, h Harness) {
	parallelTest(t, h, "PurgeRemovesEndedTasksAndKeepsTheRest", func(t *testing.T, b *bundle) { testPurge(t, b, false) })
	parallelTest(t, h, "PurgeArchives", func(t *testing.T, b *bundle) { testPurge(t, b, true) })
	parallelTest(t, h, "PurgeWaitsForThePeriod", testPurgeWaitsForThePeriod)
	parallelTest(t, h, "Analytics", testAnalytics)
}

// rowsOf counts what a task holds in the store, per purge table (queue messages aside), read
// through the seam.
func (b *bundle) rowsOf(t *testing.T, id uuid.UUID) map[string]int64 {
	t.Helper()
	ctx := context.Background()
	out := map[string]int64{}
	if _, err := b.Store.GetTask(ctx, id); err == nil {
		out["tasks"] = 1
	} else {
		require.ErrorIs(t, err, store.ErrNotFound)
	}
	steps, err := b.Store.GetSteps(ctx, id)
	require.NoError(t, err)
	out["steps"] = int64(len(steps))
	edges, err := b.Store.Edges(ctx, id)
	require.NoError(t, err)
	out["edges"] = int64(len(edges))
	trs, err := b.Store.Transitions(ctx, id)
	require.NoError(t, err)
	for _, tr := range trs {
		if tr.StepID == uuid.Nil {
			out["task_transitions"]++
		} else {
			out["step_transitions"]++
		}
	}
	dls, err := b.Store.ListDeadLetters(ctx, store.ListDeadLettersParams{Limit: 1000})
	require.NoError(t, err)
	for _, d := range dls {
		if d.TaskID == id {
			out["dead_letters"]++
		}
	}
	return out
}

// addRows adds one task's counts to a total.
func addRows(total, rows map[string]int64) {
	for k, v := range rows {
		total[k] += v
	}
}

// completeWithRetry runs a one-step task to completion in two attempts.
func (b *bundle) completeWithRetry(t *testing.T, name string) uuid.UUID {
	t.Helper()
	ctx := context.Background()
	g := b.createGraph(t, b.newStep(name))
	p := b.outcomeParams(b.claim(t, g.id[name]), store.OutcomeRetry)
	_, err := b.Store.RecordOutcome(ctx, p)
	require.NoError(t, err)
	require.NoError(t, b.Store.PromoteRetry(ctx, store.PromoteRetryParams{StepID: g.id[name]}))
	b.run(t, g.id[name])
	require.Equal(t, statemachine.TaskComplete, b.task(t, g.task).State)
	return g.task
}

// testPurge ends tasks in each purgeable state (a diamond, a step retried, a cancelled task, a task
// with a resolved dead-letter entry) beside tasks that must stay (running, in error, complete with
// a pending entry); it purges in batches and checks that the first are gone from every read, with
// the rows counted per table, and that the others did not change.
func testPurge(t *testing.T, b *bundle, archive bool) {
	ctx := context.Background()
	d := b.diamond(t)
	for _, n := range []string{"start", "left", "right", "join"} {
		b.run(t, d.id[n])
	}
	retried := b.completeWithRetry(t, "retried")
	resolved := b.createGraph(t, b.newStep("r"))
	b.run(t, resolved.id["r"])
	entry, err := b.Store.AddDeadLetter(ctx, store.AddDeadLetterParams{TaskID: resolved.task,
		Entry: store.NewDeadLetter{ID: uuid.Must(uuid.NewV7()), Reason: store.ReasonManual}})
	require.NoError(t, err)
	_, err = b.Store.ResolveDeadLetter(ctx, store.ResolveDeadLetterParams{ID: entry.ID, Status: statemachine.DeadLetterManuallyResolved})
	require.NoError(t, err)

	// What must stay: a running task, a task in error, a complete one whose entry is pending.
	running := b.createGraph(t, b.newStep("running"), b.newStep("after", 0))
	b.claim(t, running.id["running"])
	failed := b.create(t, b.newStep("failing"))
	_, err = b.Store.FailTask(ctx, store.FailTaskParams{TaskID: failed, From: b.task(t, failed).State})
	require.NoError(t, err)
	pending := b.createGraph(t, b.newStep("p"))
	b.run(t, pending.id["p"])
	_, err = b.Store.AddDeadLetter(ctx, store.AddDeadLetterParams{TaskID: pending.task,
		Entry: store.NewDeadLetter{ID: uuid.Must(uuid.NewV7()), Reason: store.ReasonManual}})
	require.NoError(t, err)
	kept := []uuid.UUID{running.task, failed, pending.task}

	// Last, a task cancelled with its root step's message still in the queue: a leftover.
	b.sent(t)
	cancelled := b.create(t, b.newStep("cancelme"))
	_, err = b.Store.CancelTask(ctx, store.CancelTaskParams{TaskID: cancelled, Reason: "test"})
	require.NoError(t, err)
	purged := []uuid.UUID{d.task, retried, resolved.task, cancelled} // in the order they ended

	before := map[uuid.UUID]snapshot{}
	for _, id := range kept {
		before[id] = b.snapshot(t, id)
	}

	want := map[string]int64{}
	for _, id := range purged {
		addRows(want, b.rowsOf(t, id))
	}
	require.Equal(t, int64(4), want["tasks"])
	require.Equal(t, int64(4+1+1+1), want["steps"])
	require.Equal(t, int64(4), want["edges"], "the diamond's")
	require.Equal(t, int64(1), want["dead_letters"], "the resolved entry")

	// Two batches: the limit holds, oldest first (the order they ended).
	first, err := b.Store.PurgeTasks(ctx, store.PurgeTasksParams{Limit: 3, Archive: archive})
	require.NoError(t, err)
	require.Equal(t, purged[:3], first.Tasks)
	require.Equal(t, archive, first.Archived)
	second, err := b.Store.PurgeTasks(ctx, store.PurgeTasksParams{Limit: 3, Archive: archive})
	require.NoError(t, err)
	require.Equal(t, purged[3:], second.Tasks, "a short batch: nothing else is purgeable")
	got := map[string]int64{}
	for _, res := range []*store.PurgeResult{first, second} {
		for _, name := range store.PurgeTableNames {
			require.Contains(t, res.Rows, name)
		}
		addRows(got, res.Rows)
	}
	queued := got["queue_messages"]
	delete(got, "queue_messages")
	require.Equal(t, want, got, "rows deleted per table")
	if b.caps.OwnsQueue {
		require.Equal(t, int64(1), queued, "the cancelled task's message, left in the queue")
		require.NotContains(t, b.sent(t), "cancelme")
	} else {
		require.Zero(t, queued)
	}

	for _, id := range purged {
		rows := b.rowsOf(t, id)
		for name, n := range rows {
			require.Zero(t, n, "task %s still has rows in %s", id, name)
		}
		_, err := b.Store.TaskDeadLetter(ctx, id)
		require.ErrorIs(t, err, store.ErrNotFound)
	}
	for _, id := range kept {
		require.Equal(t, before[id], b.snapshot(t, id), "a task that is not purgeable is untouched")
	}
	none, err := b.Store.PurgeTasks(ctx, store.PurgeTasksParams{Archive: archive})
	require.NoError(t, err)
	require.Empty(t, none.Tasks, "the pending entry keeps its task")
	active, err := b.Store.ActiveTasks(ctx, store.ActiveTasksParams{})
	require.NoError(t, err)
	require.True(t, slices.ContainsFunc(active, func(a store.ActiveTask) bool { return a.ID == running.task }))

	// The identity of a purged task is free again.
	p := b.createParams(b.newStep("again"))
	p.IdentityHash = "same"
	res, err := b.Store.CreateTask(ctx, nil, p)
	require.NoError(t, err)
	b.run(t, p.Steps[0].StepID)
	out, err := b.Store.PurgeTasks(ctx, store.PurgeTasksParams{})
	require.NoError(t, err)
	require.Equal(t, []uuid.UUID{res.Task.ID}, out.Tasks)
	p.TaskID, p.Steps = uuid.Must(uuid.NewV7()), []store.NewStep{b.newStep("again")}
	res, err = b.Store.CreateTask(ctx, nil, p)
	require.NoError(t, err)
	require.False(t, res.Duplicate, "a purged task's identity no longer deduplicates")
}

// testPurgeWaitsForThePeriod checks that a task is purged only once it ended OlderThan ago, on the
// store's clock.
func testPurgeWaitsForThePeriod(t *testing.T, b *bundle) {
	ctx := context.Background()
	g := b.createGraph(t, b.newStep("a"))
	b.run(t, g.id["a"])
	res, err := b.Store.PurgeTasks(ctx, store.PurgeTasksParams{OlderThan: 300 * time.Millisecond})
	require.NoError(t, err)
	require.Empty(t, res.Tasks, "ended too recently")
	require.Equal(t, statemachine.TaskComplete, b.task(t, g.task).State)
	time.Sleep(400 * time.Millisecond)
	res, err = b.Store.PurgeTasks(ctx, store.PurgeTasksParams{OlderThan: 300 * time.Millisecond})
	require.NoError(t, err)
	require.Equal(t, []uuid.UUID{g.task}, res.Tasks)
}

// testAnalytics runs tasks whose steps take known minimum times and checks the counts exactly and
// the durations by order.
func testAnalytics(t *testing.T, b *bundle) {
	ctx := context.Background()
	start := time.Now().Add(-time.Second)
	for range 3 {
		g := b.createGraph(t, b.newStep("fast"), b.newStep("slow", 0))
		b.run(t, g.id["fast"])
		c := b.claim(t, g.id["slow"])
		time.Sleep(50 * time.Millisecond)
		b.succeed(t, c)
	}
	b.completeWithRetry(t, "retried")
	failed := b.create(t, b.newStep("fast"))
	_, err := b.Store.FailTask(ctx, store.FailTaskParams{TaskID: failed, From: b.task(t, failed).State})
	require.NoError(t, err)
	cancelled := b.create(t, b.newStep("slow"))
	_, err = b.Store.CancelTask(ctx, store.CancelTaskParams{TaskID: cancelled})
	require.NoError(t, err)
	errored := b.createGraph(t, b.newStep("fast"))
	_, err = b.Store.RecordOutcome(ctx, b.outcomeParams(b.claim(t, errored.id["fast"]), store.OutcomePermanent))
	require.NoError(t, err)

	a, err := b.Store.Analytics(ctx, store.AnalyticsParams{Since: start})
	require.NoError(t, err)
	require.Len(t, a.Templates, 1)
	tm := a.Templates[0]
	require.Equal(t, [3]string{Namespace, "t", "1"}, [3]string{tm.Namespace, tm.Name, tm.Version})
	require.Equal(t, [4]int{7, 4, 1, 1}, [4]int{tm.Tasks, tm.Completed, tm.Failed, tm.Cancelled}, "tasks, complete, error, cancelled")
	require.Greater(t, tm.DurationP50, time.Duration(0))
	require.GreaterOrEqual(t, tm.DurationP95, tm.DurationP50)

	require.Len(t, a.Steps, 3)
	byName := map[string]store.StepAnalytics{}
	for _, s := range a.Steps {
		byName[s.Step] = s
	}
	require.Equal(t, []string{"fast", "retried", "slow"}, []string{a.Steps[0].Step, a.Steps[1].Step, a.Steps[2].Step}, "in key order")
	fast, slow := byName["fast"], byName["slow"]
	require.Equal(t, [5]int{5, 3, 1, 3 + 0 + 1, 0}, [5]int{fast.Steps, fast.Completed, fast.Failed, fast.Attempts, fast.Retries},
		"3 run, 1 cancelled with its task, 1 in error whose attempt counts")
	require.Equal(t, [5]int{1, 1, 0, 2, 1}, [5]int{byName["retried"].Steps, byName["retried"].Completed, byName["retried"].Failed,
		byName["retried"].Attempts, byName["retried"].Retries})
	require.Equal(t, [4]int{4, 3, 0, 3}, [4]int{slow.Steps, slow.Completed, slow.Failed, slow.Attempts})
	require.GreaterOrEqual(t, slow.DurationP50, 50*time.Millisecond)
	require.Greater(t, slow.DurationP50, fast.DurationP95, "the slow step is slower")
	require.GreaterOrEqual(t, slow.DurationP95, slow.DurationP50)

	for _, p := range []store.AnalyticsParams{{Since: time.Now().Add(time.Hour)}, {Until: start}, {Namespace: "other"}} {
		empty, err := b.Store.Analytics(ctx, p)
		require.NoError(t, err)
		require.Empty(t, empty.Templates, "%+v", p)
		require.Empty(t, empty.Steps, "%+v", p)
	}
	all, err := b.Store.Analytics(ctx, store.AnalyticsParams{Namespace: Namespace, Until: time.Now().Add(time.Hour)})
	require.NoError(t, err)
	require.Equal(t, a, all)
}

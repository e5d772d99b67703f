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

func testReads(t *testing.T, h Harness) {
	t.Run("ListTasksFilters", func(t *testing.T) {
		t.Parallel()
		testListTasksFilters(t, setup(t, h))
	})

	parallelTest(t, h, "ListTasksPagesWithoutGapsOrDuplicates", testReadListTasksPagesWithoutGapsOrDuplicates)
	parallelTest(t, h, "TaskAndStepLookups", testReadTaskAndStepLookups)
}

// testListTasksFilters lists by namespace, name, states and creation time.
func testListTasksFilters(t *testing.T, b *bundle) {
	ctx := context.Background()
	var tasks []store.Task
	for i, tmpl := range []struct{ ns, name string }{{"ns", "t"}, {"ns", "t"}, {"ns", "u"}, {"other", "t"}, {"ns", "t"}} {
		p := b.createParams(b.newStep("a"))
		p.Namespace, p.Name = tmpl.ns, tmpl.name
		p.Template.Namespace, p.Template.Name = tmpl.ns, tmpl.name
		res, err := b.Store.CreateTask(ctx, nil, p)
		require.NoError(t, err, i)
		tasks = append(tasks, res.Task)
		time.Sleep(2 * time.Millisecond) // distinct creation times, for the range filters
	}
	_, err := b.Store.CancelTask(ctx, store.CancelTaskParams{TaskID: tasks[1].ID})
	require.NoError(t, err)

	list := func(p store.ListTasksParams) []int {
		t.Helper()
		ts, err := b.Store.ListTasks(ctx, p)
		require.NoError(t, err)
		out := []int{}
		for _, task := range ts {
			out = append(out, slices.IndexFunc(tasks, func(x store.Task) bool { return x.ID == task.ID }))
		}
		return out
	}
	require.Equal(t, []int{4, 3, 2, 1, 0}, list(store.ListTasksParams{}), "newest first")
	require.Equal(t, []int{4, 3}, list(store.ListTasksParams{Limit: 2}))
	require.Equal(t, []int{4, 2, 1, 0}, list(store.ListTasksParams{Namespace: "ns"}))
	require.Equal(t, []int{4, 3, 1, 0}, list(store.ListTasksParams{Name: "t"}))
	require.Equal(t, []int{4, 1, 0}, list(store.ListTasksParams{Namespace: "ns", Name: "t"}))
	require.Equal(t, []int{1}, list(store.ListTasksParams{States: []statemachine.TaskState{statemachine.TaskCancelled}}))
	require.Equal(t, []int{4, 3, 2, 1, 0}, list(store.ListTasksParams{States: []statemachine.TaskState{statemachine.TaskCancelled, statemachine.TaskStepsInProcess}}))
	require.Equal(t, []int{}, list(store.ListTasksParams{States: []statemachine.TaskState{statemachine.TaskComplete}}))
	require.Equal(t, []int{4, 3, 2}, list(store.ListTasksParams{CreatedAfter: tasks[2].CreatedAt}), "CreatedAfter is inclusive")
	require.Equal(t, []int{1, 0}, list(store.ListTasksParams{CreatedBefore: tasks[2].CreatedAt}), "CreatedBefore is exclusive")
	require.Equal(t, []int{2, 1}, list(store.ListTasksParams{CreatedAfter: tasks[1].CreatedAt, CreatedBefore: tasks[3].CreatedAt}))
	require.Equal(t, []int{2, 0}, list(store.ListTasksParams{Namespace: "ns", AfterID: tasks[4].ID, States: []statemachine.TaskState{statemachine.TaskStepsInProcess}}),
		"paging combines with the filters")
}

func testReadListTasksPagesWithoutGapsOrDuplicates(t *testing.T, b *bundle) {
	ctx := context.Background()
	var created []uuid.UUID
	for range 7 {
		created = append(created, b.create(t, b.newStep("a")))
	}
	slices.Reverse(created) // newest first
	for _, limit := range []int{1, 2, 3, 7, 100} {
		var got []uuid.UUID
		var after uuid.UUID
		for page := 0; ; page++ {
			require.Less(t, page, 10, "limit %d: paging does not end", limit)
			ts, err := b.Store.ListTasks(ctx, store.ListTasksParams{Limit: limit, AfterID: after})
			require.NoError(t, err)
			require.LessOrEqual(t, len(ts), limit)
			if len(ts) == 0 {
				break
			}
			for _, task := range ts {
				got = append(got, task.ID)
			}
			after = ts[len(ts)-1].ID
		}
		require.Equal(t, created, got, "limit %d", limit)
	}
	ts, err := b.Store.ListTasks(ctx, store.ListTasksParams{AfterID: uuid.New()})
	require.NoError(t, err)
	require.Empty(t, ts, "after an unknown task")
}

func testReadTaskAndStepLookups(t *testing.T, b *bundle) {
	ctx := context.Background()
	g := b.diamond(t)
	other := b.diamond(t)

	task, ns, err := b.Store.StepTask(ctx, g.id["join"])
	require.NoError(t, err)
	require.Equal(t, g.task, task)
	require.Equal(t, Namespace, ns)
	_, _, err = b.Store.StepTask(ctx, uuid.New())
	require.ErrorIs(t, err, store.ErrNotFound)

	names, err := b.Store.StepNames(ctx, g.task)
	require.NoError(t, err)
	slices.Sort(names)
	require.Equal(t, []string{"join", "left", "right", "start"}, names)
	names, err = b.Store.StepNames(ctx, uuid.New())
	require.NoError(t, err)
	require.Empty(t, names)

	steps, err := b.Store.GetSteps(ctx, other.task)
	require.NoError(t, err)
	require.Len(t, steps, 4, "only the task's own steps")
	for _, st := range steps {
		require.Equal(t, other.id[st.Name], st.ID)
	}
	steps, err = b.Store.GetSteps(ctx, uuid.New())
	require.NoError(t, err)
	require.Empty(t, steps)

	_, err = b.Store.GetTask(ctx, uuid.New())
	require.ErrorIs(t, err, store.ErrNotFound)
	trs, err := b.Store.Transitions(ctx, uuid.New())
	require.NoError(t, err)
	require.Empty(t, trs)
}

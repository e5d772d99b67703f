package engine

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/dag"
)

// diamondWithDecision is a → {b, c} → d, where b is a decision whose child e exists only once it
// chooses it, and w is a batch worker of c.
func diamondWithDecision(t *testing.T) *Template {
	t.Helper()
	steps := []Step{
		{Name: "a", Type: StepStandard},
		{Name: "b", Type: StepDecision, Dependencies: []string{"a"}},
		{Name: "c", Type: StepBatchable, Dependencies: []string{"a"}},
		{Name: "d", Type: StepStandard, Dependencies: []string{"b", "c"}},
		{Name: "e", Type: StepStandard, Dependencies: []string{"b"}},
		{Name: "w", Type: StepBatchWorker, Dependencies: []string{"c"}},
		{Name: "z", Type: StepDeferredConvergence, Dependencies: []string{"w"}},
	}
	nodes := make([]dag.Node, len(steps))
	for i, s := range steps {
		nodes[i] = dag.Node{Name: s.Name, Deps: s.Dependencies}
	}
	g, err := dag.Build(nodes)
	require.NoError(t, err)
	tmpl := &Template{Namespace: "ns", Name: "t", Version: "1.0.0", Steps: steps, Graph: g}
	tmpl.ClassifyDynamic()
	return tmpl
}

func TestTemplate(t *testing.T) {
	t.Parallel()
	tmpl := diamondWithDecision(t)
	require.Equal(t, "ns/t@1.0.0", tmpl.Key())
	require.Equal(t, map[string]bool{"a": false, "b": false, "c": false, "d": true, "e": true, "w": true, "z": true}, tmpl.Dynamic)

	s, ok := tmpl.Step("c")
	require.True(t, ok)
	require.Equal(t, StepBatchable, s.Type)
	_, ok = tmpl.Step("nope")
	require.False(t, ok)

	anc, ok := tmpl.Ancestors("d")
	require.True(t, ok)
	require.Equal(t, []string{"a", "b", "c"}, anc)
	again, _ := tmpl.Ancestors("d")
	require.Same(t, &anc[0], &again[0], "the second lookup is served from the cache")
	_, ok = tmpl.Ancestors("nope")
	require.False(t, ok)
}

func TestRegistries(t *testing.T) {
	t.Parallel()
	t.Run("runs", func(t *testing.T) {
		t.Parallel()
		var r RunRegistry
		task, step := uuid.New(), uuid.New()
		ctx, cancel := context.WithCancelCause(context.Background())
		r.Add(task, step, 1, cancel)
		r.CancelTask(task)
		require.ErrorIs(t, context.Cause(ctx), ErrTaskCancelled)
		r.Remove(task, step, 1)
		require.Empty(t, r.m)
	})
	t.Run("waiters", func(t *testing.T) {
		t.Parallel()
		var w WaiterRegistry
		id := uuid.New()
		ch := w.Subscribe(id)
		w.Notify(id)
		w.Notify(id) // does not block
		<-ch
		w.Unsubscribe(id, ch)
		require.Empty(t, w.m)
	})
	t.Run("waiting", func(t *testing.T) {
		t.Parallel()
		var r WaitingRegistry
		_, ok := r.LastDecline("ns")
		require.False(t, ok)
		r.Declined("ns")
		_, ok = r.LastDecline("ns")
		require.True(t, ok)
		task, step := uuid.New(), uuid.New()
		enqueued := time.Now().Add(-time.Minute)
		require.True(t, r.Note("ns", task, step, "h", "no_handler", enqueued), "the first of its kind")
		require.False(t, r.Note("ns", task, step, "h", "no_handler", enqueued), "seen before")
		require.False(t, r.Note("ns", task, uuid.New(), "h", "no_handler", time.Time{}), "not the first of its kind")
		snap := r.Snapshot()
		require.Len(t, snap, 2)
		r.Forget([]uuid.UUID{step})
		require.Len(t, r.Snapshot(), 1)
	})
}

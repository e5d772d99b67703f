package tasker_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
)

// TestTemplatesAndEdges: the registered templates are listed by key with their defaults applied,
// one is found by version (or "" for the highest), and a task's edges follow its DAG; unknown keys
// and tasks are the typed errors.
func TestTemplatesAndEdges(t *testing.T) {
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		b := setup(t)
		for _, v := range []string{"1.2.0", "1.10.0"} {
			b.register(t, `
name: diamond
namespace_name: inspect
version: `+v+`
steps:
  - {name: a, handler: {callable: ok}}
  - {name: b, handler: {callable: ok}, dependencies: [a]}
  - {name: c, handler: {callable: ok}, dependencies: [a]}
  - {name: d, handler: {callable: ok}, dependencies: [b, c]}
`)
		}
		b.register(t, `
name: alpha
namespace_name: inspect
steps: [{name: s, handler: {callable: ok}}]
`)
		var keys []string
		for _, tm := range b.engine.Templates() {
			keys = append(keys, tm.Key())
			require.NotZero(t, tm.Steps[0].Retry.MaxAttempts, "defaults applied")
		}
		require.Equal(t, []string{"inspect/alpha@0.0.0", "inspect/diamond@1.2.0", "inspect/diamond@1.10.0"}, keys)
		tm, err := b.engine.Template("inspect", "diamond", "")
		require.NoError(t, err)
		require.Equal(t, "1.10.0", tm.Version)
		_, err = b.engine.Template("inspect", "diamond", "9")
		require.ErrorIs(t, err, tasker.ErrTemplateNotFound)

		task := b.create(t, "inspect", "diamond", nil)
		edges, err := b.engine.TaskEdges(context.Background(), task.ID)
		require.NoError(t, err)
		id := func(name string) uuid.UUID { s, ok := task.Step(name); require.True(t, ok); return s.ID }
		require.ElementsMatch(t, []tasker.StepEdge{{From: id("a"), To: id("b")}, {From: id("a"), To: id("c")},
			{From: id("b"), To: id("d")}, {From: id("c"), To: id("d")}}, edges)
		_, err = b.engine.TaskEdges(context.Background(), uuid.New())
		require.ErrorIs(t, err, tasker.ErrTaskNotFound)
	})
}

package tasker_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
)

const registryYAML = `
name: registry_pipeline
namespace_name: registry
version: 1.2.0
input_schema:
  type: object
  required: [n]
  properties:
    n: {type: integer, minimum: 1, maximum: 10}
    label: {type: string}
steps:
  - name: first
    handler: {callable: noop}
  - name: second
    handler: {callable: noop}
    dependencies: [first]
`

// TestRegisteredTemplates: another process (a sibling engine that registered nothing) lists the
// registry, rebuilds the template from its stored definition, and creates a task with it under the
// stored checksum.
func TestRegisteredTemplates(t *testing.T) {
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		ctx := context.Background()
		b := setup(t)
		b.register(t, registryYAML)
		b.create(t, "registry", "registry_pipeline", map[string]any{"n": 2})

		other := b.sibling(t)
		list, err := other.engine.RegisteredTemplates(ctx)
		require.NoError(t, err)
		require.Len(t, list, 1)
		r := list[0]
		require.Equal(t, []string{"registry", "registry_pipeline", "1.2.0"}, []string{r.Namespace, r.Name, r.Version})
		require.Len(t, r.Checksum, 64)
		require.False(t, r.CreatedAt.IsZero())

		tmpl, err := r.Template()
		require.NoError(t, err)
		require.Len(t, tmpl.Steps, 2)
		require.NoError(t, other.engine.Register(tmpl))
		task, err := other.engine.CreateTask(ctx, tasker.TaskRequest{Namespace: "registry", Name: "registry_pipeline", Context: map[string]any{"n": 3}})
		require.NoError(t, err, "the rebuilt template must match the stored checksum")
		require.Len(t, task.Steps, 2)
		_, err = other.engine.CreateTask(ctx, tasker.TaskRequest{Namespace: "registry", Name: "registry_pipeline", Context: map[string]any{"n": 30}})
		require.ErrorIs(t, err, tasker.ErrInvalidInput, "the rebuilt template keeps its input_schema")
	})
}

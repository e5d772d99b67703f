package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/store"
)

// testRegisterTemplate covers the registry's rule: versions are immutable.
func testRegisterTemplate(t *testing.T, h Harness) {
	parallelTest(t, h, "SameDefinitionAgainIsANoOp", testRegisterSameDefinitionAgain)
	parallelTest(t, h, "DifferentDefinitionIsAConflict", testRegisterDifferentDefinition)
	parallelTest(t, h, "CreateTaskRefusesADifferentDefinition", testCreateRefusesADifferentDefinition)
}

func templateRow(checksum string) store.RegisterTemplateParams {
	return store.RegisterTemplateParams{Namespace: Namespace, Name: "t", Version: "1",
		Definition: json.RawMessage(`{"checksum":"` + checksum + `"}`), Checksum: checksum}
}

func requireConflict(t *testing.T, err error, existing, proposed string) {
	t.Helper()
	require.ErrorIs(t, err, store.ErrTemplateConflict)
	var ce *store.TemplateConflictError
	require.True(t, errors.As(err, &ce), "%v is not a *store.TemplateConflictError", err)
	require.Equal(t, store.TemplateConflictError{Namespace: Namespace, Name: "t", Version: "1", Existing: existing, Proposed: proposed}, *ce)
}

func testRegisterSameDefinitionAgain(t *testing.T, b *bundle) {
	ctx := context.Background()
	require.NoError(t, b.Store.RegisterTemplate(ctx, templateRow("c1")))
	require.NoError(t, b.Store.RegisterTemplate(ctx, templateRow("c1")))
	// Another version of the same template is another key.
	other := templateRow("c2")
	other.Version = "2"
	require.NoError(t, b.Store.RegisterTemplate(ctx, other))
}

func testRegisterDifferentDefinition(t *testing.T, b *bundle) {
	ctx := context.Background()
	require.NoError(t, b.Store.RegisterTemplate(ctx, templateRow("c1")))
	requireConflict(t, b.Store.RegisterTemplate(ctx, templateRow("c2")), "c1", "c2")
	// The first definition is kept: registering it again is still a no-op, the other still a conflict.
	require.NoError(t, b.Store.RegisterTemplate(ctx, templateRow("c1")))
	requireConflict(t, b.Store.RegisterTemplate(ctx, templateRow("c2")), "c1", "c2")
}

func testCreateRefusesADifferentDefinition(t *testing.T, b *bundle) {
	ctx := context.Background()
	require.NoError(t, b.Store.RegisterTemplate(ctx, templateRow("c0")))
	p := b.createParams(b.newStep("a"))
	_, err := b.Store.CreateTask(ctx, nil, p) // its row has checksum c1
	requireConflict(t, err, "c0", "c1")
	requireNoTasks(t, b)
	b.requireSent(t)

	// With the registered definition, the same task is created.
	row := templateRow("c0")
	p.Template = &row
	res, err := b.Store.CreateTask(ctx, nil, p)
	require.NoError(t, err)
	require.False(t, res.Duplicate)
	b.requireSent(t, "a")
}

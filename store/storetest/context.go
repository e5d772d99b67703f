package storetest

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/store"
)

func testEndedContext(t *testing.T, h Harness) {
	parallelTest(t, h, "WritesNothing", testEndedContextWritesNothing)
}

func testEndedContextWritesNothing(t *testing.T, b *bundle) {
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	p := b.createParams(b.newStep("a"))
	_, err := b.Store.CreateTask(ended, nil, p)
	require.ErrorIs(t, err, context.Canceled)
	requireNoTasks(t, b)
	b.requireSent(t)

	g := b.createGraph(t, b.newStep("a"), b.newStep("b", 0))
	c := b.claim(t, g.id["a"])
	before := b.snapshot(t, g.task)
	_, err = b.Store.RecordOutcome(ended, b.outcomeParams(c, store.OutcomeSuccess))
	require.ErrorIs(t, err, context.Canceled)
	_, err = b.Store.CancelTask(ended, store.CancelTaskParams{TaskID: g.task})
	require.ErrorIs(t, err, context.Canceled)
	_, err = b.Store.GetTask(ended, uuid.New())
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, before, b.snapshot(t, g.task))
}

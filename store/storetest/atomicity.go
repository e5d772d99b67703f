package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

// errAck is what a failing BeforeCommit returns.
var errAck = errors.New("storetest: ack failed")

// markerQueue is where BeforeCommit hooks write, apart from the steps' queue.
const markerQueue = "marker"

func testAtomicity(t *testing.T, h Harness) {
	parallelTest(t, h, "BeforeCommitErrorRecordsNothing", testAtomicityBeforeCommitErrorRecordsNothing)

	t.Run("BeforeCommitJoinsTheTransaction", func(t *testing.T) {
		t.Parallel()
		if !h.Capabilities.Transactions {
			t.Skip("the backend has no transactions (Capabilities.Transactions)")
		}
		b := setup(t, h)
		ctx := context.Background()
		g := b.createGraph(t, b.newStep("a"))
		c := b.claim(t, g.id["a"])
		mark := func(fail error) func(ctx context.Context, tx pgx.Tx) error {
			return func(ctx context.Context, tx pgx.Tx) error {
				if err := b.Queue.SendTx(ctx, tx, markerQueue, [][]byte{[]byte(`{"mark": 1}`)}, 0); err != nil {
					return err
				}
				return fail
			}
		}
		p := b.outcomeParams(c, store.OutcomeSuccess)
		p.BeforeCommit = mark(errAck)
		_, err := b.Store.RecordOutcome(ctx, p)
		require.ErrorIs(t, err, errAck)
		require.Zero(t, countMessages(t, b, markerQueue), "rolled back with the outcome")
		p.BeforeCommit = mark(nil)
		_, err = b.Store.RecordOutcome(ctx, p)
		require.NoError(t, err)
		require.Equal(t, 1, countMessages(t, b, markerQueue), "committed with the outcome")
	})

	t.Run("EnqueueErrorRecordsNothing", func(t *testing.T) {
		t.Parallel()
		for _, fe := range []struct {
			name string
			enq  store.Enqueuer
		}{{"EnqueueTx", failingEnqueuer{}}, {"EnqueueBatch", failingBatchEnqueuer{}}} {
			t.Run(fe.name, func(t *testing.T) {
				t.Parallel()
				testEnqueueError(t, setup(t, h), fe.enq)
			})
		}
	})
}

// testEnqueueError: outcomes and operator actions whose messages cannot be sent change nothing.
func testEnqueueError(t *testing.T, b *bundle, failing store.Enqueuer) {
	ctx := context.Background()
	g := b.createGraph(t, b.newStep("a"), b.newStep("b", 0), b.newStep("c"))
	b.requireSent(t, "a", "c")
	c := b.claim(t, g.id["a"])
	before := b.snapshot(t, g.task)
	for _, kind := range []store.OutcomeKind{store.OutcomeSuccess, store.OutcomeRetry} {
		p := b.outcomeParams(c, kind) // each sends: b is released, or a's retry timer
		p.Enqueuer = failing
		_, err := b.Store.RecordOutcome(ctx, p)
		require.ErrorIs(t, err, errQueueDown, "kind %d", kind)
		require.Equal(t, before, b.snapshot(t, g.task), "kind %d: nothing recorded", kind)
		b.requireSent(t)
	}
	require.Equal(t, 1, b.succeed(t, c).Released)
	b.requireSent(t, "b")

	// An operator's retry whose message cannot be sent leaves the step in error.
	_, err := b.Store.RecordOutcome(ctx, b.outcomeParams(b.claim(t, g.id["c"]), store.OutcomePermanent))
	require.NoError(t, err)
	before = b.snapshot(t, g.task)
	_, err = b.Store.OperatorAction(ctx, store.OperatorParams{StepID: g.id["c"], Action: store.OperatorRetry, Operator: "op",
		Namespace: Namespace, Enqueuer: failing})
	require.ErrorIs(t, err, errQueueDown)
	require.Equal(t, before, b.snapshot(t, g.task))
	require.Equal(t, statemachine.StepError, b.step(t, g.task, g.id["c"]).State)
	b.requireSent(t)
}

// countMessages reads (hiding them for an hour) every visible message of a queue and counts them.
func countMessages(t *testing.T, b *bundle, queueName string) int {
	t.Helper()
	msgs, err := b.Queue.Read(context.Background(), queueName, 100, time.Hour)
	require.NoError(t, err)
	return len(msgs)
}

func testAtomicityBeforeCommitErrorRecordsNothing(t *testing.T, b *bundle) {
	ctx := context.Background()
	g := b.createGraph(t, b.newStep("a"), b.newStep("b", 0))
	b.requireSent(t, "a")
	c := b.claim(t, g.id["a"])
	before := b.snapshot(t, g.task)
	for _, kind := range []store.OutcomeKind{store.OutcomeSuccess, store.OutcomeRetry, store.OutcomePermanent} {
		p := b.outcomeParams(c, kind)
		var gotTx pgx.Tx
		p.BeforeCommit = func(_ context.Context, tx pgx.Tx) error { gotTx = tx; return errAck }
		_, err := b.Store.RecordOutcome(ctx, p)
		require.ErrorIs(t, err, errAck, "kind %d", kind)
		if b.caps.Transactions {
			require.NotNil(t, gotTx, "BeforeCommit runs in the store's transaction")
		}
		require.Equal(t, before, b.snapshot(t, g.task), "kind %d: nothing recorded", kind)
		b.requireSent(t)
	}
	p := b.outcomeParams(c, store.OutcomeSuccess)
	called := false
	p.BeforeCommit = func(context.Context, pgx.Tx) error { called = true; return nil }
	res, err := b.Store.RecordOutcome(ctx, p)
	require.NoError(t, err, "the attempt is still held")
	require.True(t, called)
	require.Equal(t, 1, res.Released)
	b.requireSent(t, "b")
}

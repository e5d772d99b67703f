package queuetest

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/queue"
)

const skipNoTransactions = "the backend cannot join a transaction (Capabilities.Transactions)"

func testTransactions(t *testing.T, h Harness) {
	t.Run("SendTxCommitsWithTheTransaction", func(t *testing.T) {
		t.Parallel()
		if !h.Capabilities.Transactions {
			t.Skip(skipNoTransactions)
		}
		b := setup(t, h)
		tx := b.begin(t)
		require.NoError(t, b.sendTx(tx, `"rolled back"`))
		b.none(t, QueueMain) // not before commit
		require.NoError(t, tx.Rollback(b.ctx))
		b.none(t, QueueMain)

		tx = b.begin(t)
		require.NoError(t, b.sendTx(tx, `"committed"`))
		b.none(t, QueueMain)
		require.NoError(t, tx.Commit(b.ctx))
		requirePayloads(t, []string{`"committed"`}, b.read(t, QueueMain, 1, hidden))
		b.none(t, QueueMain)
	})

	t.Run("InvalidJSONLeavesTheTransactionUsable", func(t *testing.T) {
		t.Parallel()
		if !h.Capabilities.Transactions {
			t.Skip(skipNoTransactions)
		}
		b := setup(t, h)
		tx := b.begin(t)
		require.Error(t, b.Queue.SendTx(b.ctx, tx, QueueMain, toBytes([]string{`{}`, `{"broken":`}), 0))
		require.NoError(t, b.sendTx(tx, `"ok"`), "checked before anything was sent")
		require.NoError(t, b.sendTx(tx), "no payloads is a no-op")
		require.NoError(t, tx.Commit(b.ctx))
		requirePayloads(t, []string{`"ok"`}, b.read(t, QueueMain, 1, hidden))
		b.none(t, QueueMain)
	})

	t.Run("AckTxCommitsWithTheTransaction", func(t *testing.T) {
		t.Parallel()
		if !h.Capabilities.Transactions {
			t.Skip(skipNoTransactions)
		}
		b := setup(t, h)
		b.send(t, QueueMain, 0, `1`)
		m := b.read(t, QueueMain, 1, hidden)[0]

		tx := b.begin(t)
		require.NoError(t, b.Queue.AckTx(b.ctx, tx, QueueMain, m.ID))
		require.NoError(t, tx.Rollback(b.ctx))
		require.NoError(t, b.Queue.RetryLater(b.ctx, QueueMain, m.ID, 0), "a rolled-back ack keeps the message")
		m = b.read(t, QueueMain, 1, hidden)[0]

		tx = b.begin(t)
		require.NoError(t, b.Queue.AckTx(b.ctx, tx, QueueMain, m.ID))
		require.NoError(t, tx.Commit(b.ctx))
		require.ErrorIs(t, b.Queue.Extend(b.ctx, QueueMain, m.ID, time.Minute), queue.ErrNotFound, "committed: gone")
		b.none(t, QueueMain)
	})

	t.Run("AckTxWithoutATransactionActsAtOnce", func(t *testing.T) {
		t.Parallel()
		if h.Capabilities.Transactions {
			t.Skip("the backend joins transactions: AckTx needs one (see AckTxCommitsWithTheTransaction)")
		}
		b := setup(t, h)
		b.send(t, QueueMain, 0, `1`)
		m := b.read(t, QueueMain, 1, 300*time.Millisecond)[0]
		require.NoError(t, b.Queue.AckTx(b.ctx, nil, QueueMain, m.ID))
		require.ErrorIs(t, b.Queue.Extend(b.ctx, QueueMain, m.ID, time.Minute), queue.ErrNotFound)
		b.noneFor(t, QueueMain, 500*time.Millisecond) // past the timeout: acked for good
	})

	t.Run("PublisherSendTxIsNotTransactional", func(t *testing.T) {
		t.Parallel()
		b := setup(t, h)
		if _, ok := b.Queue.(queue.Publisher); !ok {
			t.Skip("the queue is no queue.Publisher")
		}
		err := b.Queue.SendTx(b.ctx, nil, QueueMain, toBytes([]string{`1`}), 0)
		require.ErrorIs(t, err, queue.ErrNotTransactional)
		b.none(t, QueueMain)
	})
}

func testBatchSender(t *testing.T, h Harness) {
	// setupBatch skips unless the queue is a queue.BatchSender that can run its batch in a
	// transaction.
	setupBatch := func(t *testing.T) (*bundle, queue.BatchSender) {
		t.Helper()
		if !h.Capabilities.Transactions {
			t.Skip("a queue.BatchSender's batch runs in a transaction; " + skipNoTransactions)
		}
		b := setup(t, h)
		bs, ok := b.Queue.(queue.BatchSender)
		if !ok {
			t.Skip("the queue is no queue.BatchSender")
		}
		return b, bs
	}

	t.Run("SendsWhenTheBatchCommits", func(t *testing.T) {
		t.Parallel()
		b, bs := setupBatch(t)
		began := time.Now()
		tx := b.begin(t)
		batch := &pgx.Batch{}
		require.NoError(t, bs.QueueSend(batch, QueueMain, toBytes([]string{`{"n": 1}`, `{"n": 2}`}), 0))
		require.NoError(t, bs.QueueSend(batch, QueueMain, nil, 0), "no payloads is a no-op")
		queued := batch.Len()
		require.Error(t, bs.QueueSend(batch, QueueMain, toBytes([]string{`{}`, `{"broken":`}), 0))
		require.Error(t, bs.QueueSend(batch, "", toBytes([]string{`1`}), 0))
		require.Equal(t, queued, batch.Len(), "refused sends queue nothing")
		require.NoError(t, bs.QueueSend(batch, QueueMain, toBytes([]string{`"delayed"`}), 300*time.Millisecond))
		require.NoError(t, tx.SendBatch(b.ctx, batch).Close())
		b.none(t, QueueMain) // not before commit
		require.NoError(t, tx.Commit(b.ctx))

		msgs := b.read(t, QueueMain, 2, hidden)
		requirePayloadSet(t, []string{`{"n": 1}`, `{"n": 2}`}, msgs)
		delayed := b.await(t, QueueMain, 1, hidden)
		requireNotBefore(t, began, 300*time.Millisecond, "the delayed message")
		requirePayloads(t, []string{`"delayed"`}, delayed)
	})

	t.Run("RolledBackBatchLeavesNothing", func(t *testing.T) {
		t.Parallel()
		b, bs := setupBatch(t)
		tx := b.begin(t)
		batch := &pgx.Batch{}
		require.NoError(t, bs.QueueSend(batch, QueueMain, toBytes([]string{`1`, `2`}), 0))
		require.NoError(t, tx.SendBatch(b.ctx, batch).Close())
		require.NoError(t, tx.Rollback(b.ctx))
		b.none(t, QueueMain)
	})
}

func testBatchAcker(t *testing.T, h Harness) {
	t.Run("AcksWhenTheBatchCommits", func(t *testing.T) {
		t.Parallel()
		if !h.Capabilities.Transactions {
			t.Skip("a queue.BatchAcker's batch runs in a transaction; " + skipNoTransactions)
		}
		b := setup(t, h)
		ba, ok := b.Queue.(queue.BatchAcker)
		if !ok {
			t.Skip("the queue is no queue.BatchAcker")
		}
		b.send(t, QueueMain, 0, `1`)
		m := b.read(t, QueueMain, 1, hidden)[0]
		batch := &pgx.Batch{}
		require.Error(t, ba.QueueAck(batch, "", m.ID), "an empty queue name")
		require.NoError(t, ba.QueueAck(batch, QueueMain), "no ids is a no-op")
		require.Zero(t, batch.Len(), "refused acks queue nothing")

		tx := b.begin(t)
		batch = &pgx.Batch{}
		require.NoError(t, ba.QueueAck(batch, QueueMain, m.ID))
		require.NoError(t, tx.SendBatch(b.ctx, batch).Close())
		require.NoError(t, tx.Rollback(b.ctx))
		require.NoError(t, b.Queue.RetryLater(b.ctx, QueueMain, m.ID, 0), "a rolled-back ack keeps the message")
		m = b.read(t, QueueMain, 1, hidden)[0]

		tx = b.begin(t)
		batch = &pgx.Batch{}
		require.NoError(t, ba.QueueAck(batch, QueueMain, m.ID))
		require.NoError(t, tx.SendBatch(b.ctx, batch).Close())
		require.NoError(t, tx.Commit(b.ctx))
		require.ErrorIs(t, b.Queue.Extend(b.ctx, QueueMain, m.ID, time.Minute), queue.ErrNotFound, "committed: gone")
		b.none(t, QueueMain)
	})
}

func testBatchHolder(t *testing.T, h Harness) {
	t.Run("HeldMessageIsHiddenAndReadOnce", func(t *testing.T) {
		t.Parallel()
		if !h.Capabilities.Transactions {
			t.Skip("a queue.BatchHolder's batch runs in a transaction; " + skipNoTransactions)
		}
		b := setup(t, h)
		bh, ok := b.Queue.(queue.BatchHolder)
		if !ok {
			t.Skip("the queue is no queue.BatchHolder")
		}
		var id int64
		batch := &pgx.Batch{}
		require.Error(t, bh.QueueSendHeld(batch, "", []byte(`1`), time.Second, &id), "an empty queue name")
		require.Error(t, bh.QueueSendHeld(batch, QueueMain, []byte(`{`), time.Second, &id), "invalid JSON")
		require.Error(t, bh.QueueSendHeld(batch, QueueMain, []byte(`1`), 0, &id), "no visibility timeout")
		require.Zero(t, batch.Len(), "refused sends queue nothing")

		tx := b.begin(t)
		batch = &pgx.Batch{}
		require.NoError(t, bh.QueueSendHeld(batch, QueueMain, []byte(`{"held": true}`), time.Second, &id))
		require.NoError(t, tx.SendBatch(b.ctx, batch).Close())
		require.NoError(t, tx.Rollback(b.ctx))
		b.noneFor(t, QueueMain, 1500*time.Millisecond) // rolled back: never appears

		tx = b.begin(t)
		batch = &pgx.Batch{}
		sent := time.Now() // the hold runs from the send, which comes after this
		require.NoError(t, bh.QueueSendHeld(batch, QueueMain, []byte(`{"held": true}`), 600*time.Millisecond, &id))
		require.NoError(t, tx.SendBatch(b.ctx, batch).Close())
		require.NoError(t, tx.Commit(b.ctx))
		require.NotZero(t, id)
		// Held: hidden until its timeout passes (checked only while that moment is ahead, so that
		// a slow machine's late commit does not pass for a visible held message).
		b.noneBefore(t, QueueMain, sent.Add(600*time.Millisecond))
		msgs := b.await(t, QueueMain, 1, hidden) // surfaces once its timeout passes
		require.Equal(t, id, msgs[0].ID)
		require.Equal(t, 2, msgs[0].ReadCount, "held counts as one read")
		require.NoError(t, b.Queue.Ack(b.ctx, QueueMain, id))
	})
}

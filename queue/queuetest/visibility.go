package queuetest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/queue"
)

// unknownID is a message id that no backend hands out during a test.
const unknownID = int64(1) << 40

func testAck(t *testing.T, h Harness) {
	t.Run("RemovesForGood", func(t *testing.T) {
		t.Parallel()
		b := setup(t, h)
		b.send(t, QueueMain, 0, `"acked"`, `"kept"`)
		readAt := time.Now()
		msgs := b.read(t, QueueMain, 2, 300*time.Millisecond)
		requirePayloadSet(t, []string{`"acked"`, `"kept"`}, msgs)
		acked := byPayload(t, msgs, `"acked"`)
		b.ack(t, QueueMain, acked)

		// The unacked one comes back when its timeout passes; the acked one never does.
		back := b.await(t, QueueMain, 1, hidden)
		requireNotBefore(t, readAt, 300*time.Millisecond, "redelivered")
		requirePayloads(t, []string{`"kept"`}, back)
		require.Equal(t, 2, back[0].ReadCount)
		b.noneFor(t, QueueMain, 300*time.Millisecond)
		require.ErrorIs(t, b.Queue.Extend(b.ctx, QueueMain, acked.ID, time.Minute), queue.ErrNotFound)
		b.ack(t, QueueMain, back...)
	})

	t.Run("TwiceAndUnknownIdsAreHarmless", func(t *testing.T) {
		t.Parallel()
		b := setup(t, h)
		b.send(t, QueueMain, 0, `"first"`, `"second"`)
		msgs := b.read(t, QueueMain, 2, hidden)
		first, second := byPayload(t, msgs, `"first"`), byPayload(t, msgs, `"second"`)

		require.NoError(t, b.Queue.Ack(b.ctx, QueueMain, unknownID, first.ID), "an unknown id beside a known one")
		require.ErrorIs(t, b.Queue.Extend(b.ctx, QueueMain, first.ID, time.Minute), queue.ErrNotFound, "acked")
		require.NoError(t, b.Queue.Extend(b.ctx, QueueMain, second.ID, time.Minute), "not acked")
		require.NoError(t, b.Queue.Ack(b.ctx, QueueMain, first.ID), "acking twice is harmless")
		require.NoError(t, b.Queue.Ack(b.ctx, QueueMain), "acking nothing is a no-op")
		require.NoError(t, b.Queue.Ack(b.ctx, QueueUnused, unknownID), "on a queue never used")
		b.ack(t, QueueMain, second)
		require.ErrorIs(t, b.Queue.Extend(b.ctx, QueueMain, second.ID, time.Minute), queue.ErrNotFound)
	})

	t.Run("ExtendAndRetryLaterOfAGoneMessageAreNotFound", func(t *testing.T) {
		t.Parallel()
		b := setup(t, h)
		b.send(t, QueueMain, 0, `1`)
		m := b.read(t, QueueMain, 1, hidden)[0]
		b.ack(t, QueueMain, m)
		require.ErrorIs(t, b.Queue.Extend(b.ctx, QueueMain, m.ID, time.Minute), queue.ErrNotFound)
		require.ErrorIs(t, b.Queue.RetryLater(b.ctx, QueueMain, m.ID, 0), queue.ErrNotFound)
		require.ErrorIs(t, b.Queue.RetryLater(b.ctx, QueueMain, m.ID, time.Second), queue.ErrNotFound)
		require.ErrorIs(t, b.Queue.Extend(b.ctx, QueueMain, unknownID, time.Minute), queue.ErrNotFound, "never existed")
		require.ErrorIs(t, b.Queue.RetryLater(b.ctx, QueueMain, unknownID, 0), queue.ErrNotFound, "never existed")
		b.none(t, QueueMain)
	})
}

func testVisibilityTimeout(t *testing.T, h Harness) {
	t.Run("ExpiryRedeliversWithAHigherReadCount", func(t *testing.T) {
		t.Parallel()
		b := setup(t, h)
		b.send(t, QueueMain, 0, `{"k": "v"}`)
		readAt := time.Now()
		first := b.read(t, QueueMain, 1, 500*time.Millisecond)[0]
		require.Equal(t, 1, first.ReadCount)
		b.none(t, QueueMain) // hidden while its timeout runs

		again := b.await(t, QueueMain, 1, hidden)[0]
		requireNotBefore(t, readAt, 500*time.Millisecond, "redelivered")
		require.Equal(t, 2, again.ReadCount)
		require.JSONEq(t, `{"k": "v"}`, string(again.Payload))
		require.Equal(t, QueueMain, again.Queue)
		require.True(t, first.EnqueuedAt.Equal(again.EnqueuedAt), "EnqueuedAt is kept: %v, then %v", first.EnqueuedAt, again.EnqueuedAt)
		b.ack(t, QueueMain, again)
	})

	t.Run("ReadCountsEveryRead", func(t *testing.T) {
		t.Parallel()
		if !h.Capabilities.ExactReadCounts {
			t.Skip("the backend reports read counts above 2 as 2 (Capabilities.ExactReadCounts)")
		}
		b := setup(t, h)
		b.send(t, QueueMain, 0, `1`)
		// Given back each of the three ways: RetryLater now, RetryLater later, timeout.
		m := b.read(t, QueueMain, 1, hidden)[0]
		require.Equal(t, 1, m.ReadCount)
		require.NoError(t, b.Queue.RetryLater(b.ctx, QueueMain, m.ID, 0))
		m = b.read(t, QueueMain, 1, hidden)[0]
		require.Equal(t, 2, m.ReadCount)
		require.NoError(t, b.Queue.RetryLater(b.ctx, QueueMain, m.ID, 100*time.Millisecond))
		m = b.await(t, QueueMain, 1, 200*time.Millisecond)[0]
		require.Equal(t, 3, m.ReadCount)
		m = b.await(t, QueueMain, 1, hidden)[0]
		require.Equal(t, 4, m.ReadCount)
		b.ack(t, QueueMain, m)
	})
}

func testExtend(t *testing.T, h Harness) {
	t.Run("KeepsAMessageHiddenPastItsTimeout", func(t *testing.T) {
		t.Parallel()
		b := setup(t, h)
		b.send(t, QueueMain, 0, `"extended"`, `"not extended"`)
		readAt := time.Now()
		msgs := b.read(t, QueueMain, 2, 400*time.Millisecond)
		extended := byPayload(t, msgs, `"extended"`)
		require.NoError(t, b.Queue.Extend(b.ctx, QueueMain, extended.ID, time.Minute))

		// The other one comes back when the timeout both started with passes; the extended one
		// stays hidden well after.
		back := b.await(t, QueueMain, 1, hidden)
		requireNotBefore(t, readAt, 400*time.Millisecond, "redelivered")
		requirePayloads(t, []string{`"not extended"`}, back)
		b.noneUntil(t, QueueMain, readAt.Add(time.Second))
		require.NoError(t, b.Queue.Extend(b.ctx, QueueMain, extended.ID, time.Minute), "extending again, as a heartbeat")
		b.ack(t, QueueMain, extended, back[0])
	})

	t.Run("RejectsANonPositiveTimeout", func(t *testing.T) {
		t.Parallel()
		b := setup(t, h)
		b.send(t, QueueMain, 0, `1`)
		m := b.read(t, QueueMain, 1, hidden)[0]
		require.Error(t, b.Queue.Extend(b.ctx, QueueMain, m.ID, 0))
		require.Error(t, b.Queue.Extend(b.ctx, QueueMain, m.ID, -time.Second))
		b.none(t, QueueMain) // still hidden: the refused calls changed nothing
		b.ack(t, QueueMain, m)
	})
}

func testRetryLater(t *testing.T, h Harness) {
	t.Run("NowMakesItVisibleAtOnce", func(t *testing.T) {
		t.Parallel()
		b := setup(t, h)
		b.send(t, QueueMain, 0, `{"k": "v"}`)
		first := b.read(t, QueueMain, 1, hidden)[0]
		require.NoError(t, b.Queue.RetryLater(b.ctx, QueueMain, first.ID, 0))

		again := b.read(t, QueueMain, 1, hidden)[0]
		require.Equal(t, 2, again.ReadCount, "the read count is kept, and the new read counted")
		require.JSONEq(t, `{"k": "v"}`, string(again.Payload))
		require.True(t, first.EnqueuedAt.Equal(again.EnqueuedAt), "EnqueuedAt is kept: %v, then %v", first.EnqueuedAt, again.EnqueuedAt)
		b.ack(t, QueueMain, again)
	})

	t.Run("DelayKeepsItHiddenUntilThen", func(t *testing.T) {
		t.Parallel()
		b := setup(t, h)
		b.send(t, QueueMain, 0, `{"k": "v"}`)
		first := b.read(t, QueueMain, 1, hidden)[0]
		givenBack := time.Now()
		require.NoError(t, b.Queue.RetryLater(b.ctx, QueueMain, first.ID, 400*time.Millisecond))
		b.noneBefore(t, QueueMain, givenBack.Add(400*time.Millisecond))

		again := b.await(t, QueueMain, 1, hidden)[0]
		requireNotBefore(t, givenBack, 400*time.Millisecond, "given back")
		require.Equal(t, 2, again.ReadCount, "the read count is kept, and the new read counted")
		require.JSONEq(t, `{"k": "v"}`, string(again.Payload))
		require.True(t, first.EnqueuedAt.Equal(again.EnqueuedAt), "EnqueuedAt is kept: %v, then %v", first.EnqueuedAt, again.EnqueuedAt)
		b.ack(t, QueueMain, again)
	})
}

func testDelay(t *testing.T, h Harness) {
	t.Run("DelayedSendIsHiddenUntilDue", func(t *testing.T) {
		t.Parallel()
		b := setup(t, h)
		sent := time.Now()
		// A long delay first: it must not hold up a shorter one sent after it.
		b.send(t, QueueMain, 900*time.Millisecond, `"later"`)
		b.send(t, QueueMain, 0, `"now"`)
		b.send(t, QueueMain, 400*time.Millisecond, `"soon"`)
		sendsDone := time.Now()

		now := b.read(t, QueueMain, 1, hidden)
		requirePayloads(t, []string{`"now"`}, now)
		b.noneBefore(t, QueueMain, sent.Add(400*time.Millisecond))

		soon := b.await(t, QueueMain, 1, hidden)
		requireNotBefore(t, sent, 400*time.Millisecond, `"soon"`)
		requirePayloads(t, []string{`"soon"`}, soon)
		later := b.await(t, QueueMain, 1, hidden)
		requireNotBefore(t, sent, 900*time.Millisecond, `"later"`)
		requirePayloads(t, []string{`"later"`}, later)
		require.Equal(t, 1, later[0].ReadCount)
		require.False(t, later[0].EnqueuedAt.Before(sent.Add(-time.Second)), "EnqueuedAt %v is before the send (%v)", later[0].EnqueuedAt, sent)
		require.True(t, later[0].EnqueuedAt.Before(sendsDone.Add(300*time.Millisecond)),
			"EnqueuedAt %v is when the message was sent (%v), not when it was due", later[0].EnqueuedAt, sent)
		b.ack(t, QueueMain, now[0], soon[0], later[0])
	})
}

// byPayload returns the message of msgs whose payload is doc, compared as JSON.
func byPayload(t testing.TB, msgs []queue.Message, doc string) queue.Message {
	t.Helper()
	want := canonical(t, []byte(doc))
	for _, m := range msgs {
		if canonical(t, m.Payload) == want {
			return m
		}
	}
	require.FailNowf(t, "no such message", "no message %s among %s", doc, payloadsOf(msgs))
	return queue.Message{}
}

package queuetest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// wakeWithin bounds how long a wake-up caused by a send may take.
const wakeWithin = 2 * time.Second

// listening starts a Listener on the named queues and waits until the backend listens: Listen
// wakes every queue once it does (a backend's connection is in place), and the test must not
// mistake a later one of those wake-ups for one it caused.
func listening(t *testing.T, b *bundle, queues ...string) *Listener {
	t.Helper()
	l := Listen(t, b.Queue, queues...)
	for _, name := range queues {
		l.Expect(name, waitTimeout)
	}
	l.Quiet(300 * time.Millisecond)
	return l
}

func testListen(t *testing.T, h Harness) {
	t.Run("WakesAfterASend", func(t *testing.T) {
		t.Parallel()
		b := setup(t, h)
		l := listening(t, b, QueueMain)
		b.send(t, QueueMain, 0, `1`)
		l.Expect(QueueMain, wakeWithin)
		requirePayloads(t, []string{`1`}, b.read(t, QueueMain, 1, hidden))
		b.send(t, QueueOther, 0, `2`) // Stop fails the test if Listen wakes a queue it does not listen to

		l.Stop()
		l.Drain() // wake-ups from before Listen returned (a poll that ran beside the send, say)
		b.send(t, QueueMain, 0, `3`)
		l.ExpectNone(QueueMain, 200*time.Millisecond) // nothing Listen started outlives it
	})

	t.Run("WakesOnCommitOnly", func(t *testing.T) {
		t.Parallel()
		if !h.Capabilities.Transactions {
			t.Skip(skipNoTransactions)
		}
		b := setup(t, h)
		l := listening(t, b, QueueMain)
		tx := b.begin(t)
		require.NoError(t, b.sendTx(tx, `1`))
		l.ExpectNone(QueueMain, 200*time.Millisecond)
		require.NoError(t, tx.Commit(b.ctx))
		l.Expect(QueueMain, wakeWithin)

		tx = b.begin(t)
		require.NoError(t, b.sendTx(tx, `2`))
		require.NoError(t, tx.Rollback(b.ctx))
		l.ExpectNone(QueueMain, 300*time.Millisecond)
	})

	t.Run("Polls", func(t *testing.T) {
		t.Parallel()
		b := setupWith(t, h, 50*time.Millisecond)
		l := Listen(t, b.Queue, QueueMain)
		// Nothing is sent: beyond the wake-ups that say it listens (one or two), only the poll
		// can wake it.
		l.Expect(QueueMain, waitTimeout)
		for range 5 {
			l.Expect(QueueMain, time.Second)
		}
	})

	t.Run("ReturnsNilWhenItsContextEnds", func(t *testing.T) {
		t.Parallel()
		b := setup(t, h)
		l := listening(t, b, QueueMain, QueueOther)
		start := time.Now()
		l.Stop() // fails the test unless Listen returns nil within StopTimeout
		require.Less(t, time.Since(start), StopTimeout)

		ctx, cancel := context.WithCancel(b.ctx)
		cancel()
		done := make(chan error, 1)
		go func() { done <- b.Queue.Listen(ctx, []string{QueueMain}, func(string) {}) }()
		select {
		case err := <-done:
			require.NoError(t, err, "a context ended before Listen began")
		case <-time.After(StopTimeout):
			t.Fatal("Listen with an ended context did not return")
		}
	})

	t.Run("RejectsBadArguments", func(t *testing.T) {
		t.Parallel()
		b := setup(t, h)
		// Should Listen block instead of failing, the deadline ends it with nil, which fails.
		ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
		defer cancel()
		require.Error(t, b.Queue.Listen(ctx, nil, func(string) {}), "no queues")
		require.Error(t, b.Queue.Listen(ctx, []string{QueueMain}, nil), "nil wake function")
	})
}

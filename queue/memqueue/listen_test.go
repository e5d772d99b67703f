package memqueue

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/queue/queuetest"
)

// TestListenWakesWhenAMessageBecomesVisible: beyond sends, memqueue wakes a queue when a delayed
// message is due, when a visibility timeout passes, and when a message is given back, each at once.
func TestListenWakesWhenAMessageBecomesVisible(t *testing.T) {
	t.Parallel()
	q := New(WithPollInterval(time.Hour)) // so a wake-up can only come from a change
	ctx := context.Background()
	l := queuetest.Listen(t, q, "a")
	l.Expect("a", time.Second)

	sent := time.Now()
	require.NoError(t, q.SendTx(ctx, nil, "a", [][]byte{[]byte(`1`)}, 300*time.Millisecond))
	l.ExpectNone("a", 200*time.Millisecond) // not before it is due
	l.Expect("a", time.Second)
	require.GreaterOrEqual(t, time.Since(sent), 300*time.Millisecond)
	msgs, err := q.Read(ctx, "a", 1, 200*time.Millisecond)
	require.NoError(t, err)
	require.Len(t, msgs, 1)

	l.Expect("a", time.Second) // its visibility timeout passed
	msgs, err = q.Read(ctx, "a", 1, time.Minute)
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	require.Equal(t, 2, msgs[0].ReadCount)

	require.NoError(t, q.RetryLater(ctx, "a", msgs[0].ID, 0))
	l.Expect("a", 100*time.Millisecond) // given back now
}

// TestListenersAreIndependent: every Listen of a queue is woken, once per change even when it names
// the queue twice, and only by its own Queue.
func TestListenersAreIndependent(t *testing.T) {
	t.Parallel()
	q := New(WithPollInterval(time.Hour))
	ctx := context.Background()
	l1 := queuetest.Listen(t, q, "a")
	l2 := queuetest.Listen(t, q, "a", "a")
	l1.Expect("a", time.Second)
	l2.Expect("a", time.Second)
	l2.ExpectNone("a", 100*time.Millisecond)

	require.NoError(t, q.SendTx(ctx, nil, "a", [][]byte{[]byte(`1`)}, 0))
	l1.Expect("a", 100*time.Millisecond)
	l2.Expect("a", 100*time.Millisecond)
	l2.ExpectNone("a", 100*time.Millisecond)

	other := New(WithPollInterval(time.Hour))
	require.NoError(t, other.SendTx(ctx, nil, "a", [][]byte{[]byte(`1`)}, 0))
	l1.ExpectNone("a", 100*time.Millisecond) // same queue name, other Queue
}

// TestListenForgetsItsListener: once Listen returns, the Queue holds nothing of it, and a Listen
// whose context has already ended returns at once without waking anyone.
func TestListenForgetsItsListener(t *testing.T) {
	t.Parallel()
	q := New(WithPollInterval(time.Hour))
	l := queuetest.Listen(t, q, "a")
	l.Expect("a", time.Second)
	require.NoError(t, q.SendTx(context.Background(), nil, "a", [][]byte{[]byte(`1`)}, time.Hour)) // a timer is armed
	l.Stop()
	q.mu.Lock()
	require.Empty(t, q.listeners, "the listener is gone")
	q.mu.Unlock()

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	woken := false
	require.NoError(t, q.Listen(ctx, []string{"a"}, func(string) { woken = true }))
	require.False(t, woken)
}

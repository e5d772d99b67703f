package memqueue

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// wakes records wake-ups without ever blocking the listener.
type wakes chan string

func (w wakes) wake(queueName string) {
	select {
	case w <- queueName:
	default:
	}
}

// expect waits for a wake-up of queueName, skipping others.
func (w wakes) expect(t *testing.T, queueName string, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case got := <-w:
			if got == queueName {
				return
			}
		case <-deadline:
			t.Fatalf("no wake-up for queue %q within %v", queueName, within)
		}
	}
}

// expectNone checks that queueName is not woken for a while.
func (w wakes) expectNone(t *testing.T, queueName string, during time.Duration) {
	t.Helper()
	deadline := time.After(during)
	for {
		select {
		case got := <-w:
			require.NotEqual(t, queueName, got, "unexpected wake-up")
		case <-deadline:
			return
		}
	}
}

// listen runs q.Listen until the test ends and checks that it returns nil, promptly.
func listen(t *testing.T, q *Queue, queues ...string) wakes {
	t.Helper()
	w := make(wakes, 1024)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Listen(ctx, queues, w.wake) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(5 * time.Second):
			t.Error("Listen did not return after its context ended")
		}
	})
	return w
}

func TestListenWakesOnSend(t *testing.T) {
	t.Parallel()
	b := setup(t, WithPollInterval(time.Minute)) // so a wake-up can only come from a change
	w := listen(t, b.q, "a", "b")
	// Starting wakes every queue once, as pgqueue does once LISTEN is in place.
	w.expect(t, "a", time.Second)
	w.expect(t, "b", time.Second)
	w.expectNone(t, "a", 100*time.Millisecond)

	b.send(t, "a", 0, `1`)
	w.expect(t, "a", 100*time.Millisecond)
	b.send(t, "b", 0, `2`)
	w.expect(t, "b", 100*time.Millisecond)

	// A queue nobody listens to wakes nobody.
	b.send(t, "unlistened", 0, `4`)
	w.expectNone(t, "a", 200*time.Millisecond)
	w.expectNone(t, "unlistened", 0)
}

func TestListenWakesWhenADelayedMessageIsDue(t *testing.T) {
	t.Parallel()
	b := setup(t, WithPollInterval(time.Minute))
	w := listen(t, b.q, "a")
	w.expect(t, "a", time.Second)

	sent := time.Now()
	b.send(t, "a", 300*time.Millisecond, `1`)
	w.expectNone(t, "a", 200*time.Millisecond) // not before it is due
	w.expect(t, "a", time.Second)
	require.GreaterOrEqual(t, time.Since(sent), 300*time.Millisecond)
	msgs, err := b.q.Read(b.ctx, "a", 1, 200*time.Millisecond)
	require.NoError(t, err)
	require.Len(t, msgs, 1)

	// A message whose visibility timeout passes is visible again: its queue is woken.
	w.expect(t, "a", time.Second)
	msgs, err = b.q.Read(b.ctx, "a", 1, time.Minute)
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	require.Equal(t, 2, msgs[0].ReadCount)

	// Given back now: woken at once.
	require.NoError(t, b.q.RetryLater(b.ctx, "a", msgs[0].ID, 0))
	w.expect(t, "a", 100*time.Millisecond)
}

func TestListenPolls(t *testing.T) {
	t.Parallel()
	b := setup(t, WithPollInterval(50*time.Millisecond))
	w := listen(t, b.q, "a")
	// One wake-up comes from starting; the rest can only be the poll.
	for range 5 {
		w.expect(t, "a", time.Second)
	}
}

func TestListenersAreIndependent(t *testing.T) {
	t.Parallel()
	b := setup(t, WithPollInterval(time.Minute))
	w1 := listen(t, b.q, "a")
	w2 := listen(t, b.q, "a", "a") // a queue named twice is woken once per change
	w1.expect(t, "a", time.Second)
	w2.expect(t, "a", time.Second)
	w2.expectNone(t, "a", 100*time.Millisecond)
	b.send(t, "a", 0, `1`)
	w1.expect(t, "a", 100*time.Millisecond)
	w2.expect(t, "a", 100*time.Millisecond)

	other := New(WithPollInterval(time.Minute))
	require.NoError(t, other.SendTx(b.ctx, nil, "a", [][]byte{[]byte(`1`)}, 0))
	w1.expectNone(t, "a", 100*time.Millisecond) // same queue name, other Queue
}

func TestListenStopsPromptly(t *testing.T) {
	t.Parallel()
	b := setup(t, WithPollInterval(time.Minute))
	w := make(wakes, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.q.Listen(ctx, []string{"a"}, w.wake) }()
	w.expect(t, "a", time.Second)
	b.send(t, "a", time.Hour, `1`) // a timer is armed

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(time.Second):
		t.Fatal("Listen did not return after its context ended")
	}
	b.q.mu.Lock()
	require.Empty(t, b.q.listeners, "the listener is gone")
	b.q.mu.Unlock()

	// An ended context returns at once, without waking anyone.
	w2 := make(wakes, 16)
	require.NoError(t, b.q.Listen(ctx, []string{"a"}, w2.wake))
	require.Empty(t, w2)
}

func TestListenRejectsBadArguments(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.ErrorContains(t, b.q.Listen(b.ctx, nil, func(string) {}), "no queues")
	require.ErrorContains(t, b.q.Listen(b.ctx, []string{"a"}, nil), "nil wake")
}

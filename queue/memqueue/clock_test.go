package memqueue

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/queue/queuetest"
)

// handClock is a clock moved by advance (taskertest.Clock, which imports this package, is the
// users' one).
type handClock struct {
	mu     sync.Mutex
	now    time.Time
	timers map[*handTimer]struct{}
}

type handTimer struct {
	at time.Time
	f  func()
}

func (c *handClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *handClock) At(t time.Time, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !t.After(c.now) {
		go f()
		return func() bool { return false }
	}
	tm := &handTimer{at: t, f: f}
	c.timers[tm] = struct{}{}
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		_, ok := c.timers[tm]
		delete(c.timers, tm)
		return ok
	}
}

func (c *handClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []func()
	for tm := range c.timers {
		if !tm.at.After(c.now) {
			due = append(due, tm.f)
			delete(c.timers, tm)
		}
	}
	c.mu.Unlock()
	for _, f := range due {
		f()
	}
}

// TestClockDecidesVisibility: with WithClock, a message delayed an hour is invisible until the
// clock has moved an hour on, whatever the real time, and Listen wakes its queue when the clock
// gets there; a read's visibility timeout runs on the clock too, and messages are dated by it.
func TestClockDecidesVisibility(t *testing.T) {
	t.Parallel()
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := &handClock{now: start, timers: map[*handTimer]struct{}{}}
	q := New(WithPollInterval(time.Hour), WithClock(clk)) // a wake-up can only come from the clock or a change
	ctx := context.Background()
	l := queuetest.Listen(t, q, "a")
	l.Expect("a", time.Second) // Listen's first wake-up

	require.NoError(t, q.SendTx(ctx, nil, "a", [][]byte{[]byte(`1`)}, time.Hour))
	clk.advance(59 * time.Minute)
	msgs, err := q.Read(ctx, "a", 1, time.Minute)
	require.NoError(t, err)
	require.Empty(t, msgs, "not visible before its delay on the clock")
	l.ExpectNone("a", 50*time.Millisecond)

	clk.advance(time.Minute)
	l.Expect("a", time.Second)
	msgs, err = q.Read(ctx, "a", 1, time.Minute)
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	require.Equal(t, start, msgs[0].EnqueuedAt.UTC(), "dated by the clock")

	again, err := q.Read(ctx, "a", 1, time.Minute)
	require.NoError(t, err)
	require.Empty(t, again, "hidden for its visibility timeout")
	clk.advance(time.Minute)
	l.Expect("a", time.Second)
	again, err = q.Read(ctx, "a", 1, time.Minute)
	require.NoError(t, err)
	require.Len(t, again, 1, "visible again once the clock passes its timeout")
	require.Equal(t, 2, again[0].ReadCount)
}

package taskertest

import (
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/tasker-systems/tasker"
)

// Clock is a clock the test moves by hand (a tasker.Clock, and a memqueue.Clock): time stands
// still until Advance moves it. Give it to the harness with WithClock, and a test of a scheduled
// start, a cron schedule, a durable sleep, a signal's timeout or a retry's backoff takes
// milliseconds of real time:
//
//	clk := taskertest.NewClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
//	h := taskertest.New(t, tmpl, handlers, taskertest.WithClock(clk))
//	task := h.StartRequest(ctx, tasker.TaskRequest{..., RunAt: clk.Now().Add(time.Hour)})
//	clk.Advance(time.Hour) // the task starts now
//	task = h.Wait(ctx, task.ID)
//
// It is safe for concurrent use.
type Clock struct {
	mu     sync.Mutex
	now    time.Time
	seq    int64
	timers map[*clockTimer]struct{}
}

var _ tasker.Clock = (*Clock)(nil)

// clockTimer is one pending At.
type clockTimer struct {
	at  time.Time
	seq int64 // arming order, for timers due at the same time
	f   func()
}

// NewClock returns a clock that reads start until it is advanced.
func NewClock(start time.Time) *Clock {
	return &Clock{now: start, timers: map[*clockTimer]struct{}{}}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// At runs f once the clock reaches t: in Advance's goroutine, before Advance returns, or in a
// goroutine of its own when t is not after Now already. The returned function cancels it and
// reports whether it did so before f ran.
func (c *Clock) At(t time.Time, f func()) (stop func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !t.After(c.now) {
		go f()
		return func() bool { return false }
	}
	c.seq++
	tm := &clockTimer{at: t, seq: c.seq, f: f}
	c.timers[tm] = struct{}{}
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		_, pending := c.timers[tm]
		delete(c.timers, tm)
		return pending
	}
}

// Advance moves the clock d on (a negative d is refused with a panic: the clock does not go back)
// and, before it returns, runs every timer that is due then, earliest deadline first: the workers
// waiting for a delayed message, a retry's or a parked step's wake-up, and the scheduler wake up
// at once and do their work in their own goroutines (wait for it with Harness.Wait or
// Harness.WaitStep).
//
// Leases stay on the system clock, as the heartbeats that renew them do: a step whose handler runs
// while the clock jumps keeps its worker, and its handler is timed out once the clock passes the
// step's timeout_seconds. Wait for a step to park (Harness.WaitStep) before advancing past its
// wake-up: a step that parks after the jump counts its wait from the clock's new time.
func (c *Clock) Advance(d time.Duration) {
	if d < 0 {
		panic("taskertest: Clock.Advance with a negative duration")
	}
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []*clockTimer
	for tm := range c.timers {
		if !tm.at.After(c.now) {
			due = append(due, tm)
			delete(c.timers, tm)
		}
	}
	c.mu.Unlock()
	slices.SortFunc(due, func(a, b *clockTimer) int {
		if n := a.at.Compare(b.at); n != 0 {
			return n
		}
		return cmp.Compare(a.seq, b.seq)
	})
	for _, tm := range due {
		tm.f()
	}
}

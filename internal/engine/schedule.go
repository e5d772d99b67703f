package engine

import (
	"context"
	"time"

	"github.com/tasker-systems/tasker/internal/clock"
)

// schedulerHook is the root's schedules: every leadership gets a fresh pass function from
// newPass, so that a pass knows what its leadership has created already and a new leader looks
// back for the runs missed during the handover. A pass returns the time of the next run it has
// not created (the zero time when none is known), and the scheduler wakes then, on the engine's
// clock, as well as every interval.
type schedulerHook struct {
	interval time.Duration
	newPass  func() func(ctx context.Context) (time.Time, error)
}

// SetScheduler makes the elected engine run newPass's passes every interval and when a pass's
// next run is due on the engine's clock (the root's schedules, which create tasks through the root
// API). It applies from the next leadership.
func (e *Engine) SetScheduler(interval time.Duration, newPass func() func(ctx context.Context) (time.Time, error)) {
	e.scheduler.Store(&schedulerHook{interval: interval, newPass: newPass})
}

// scheduleServices is the scheduler service, when the root has set one.
func (w *workers) scheduleServices() []service {
	h := w.e.scheduler.Load()
	if h == nil {
		return nil
	}
	pass := h.newPass()
	var next time.Time // the loop's own: run and due are called from one goroutine
	return []service{{name: "scheduler", interval: h.interval,
		run: func(ctx context.Context) error {
			var err error
			next, err = pass(ctx)
			return err
		},
		due: func() time.Time { return next }}}
}

// everyOrDue runs fn at once, then every interval and whenever the clock reaches the time due
// returns (after each run; the zero time: none; due must return a time after the pass's, lest
// the loop spin), until ctx ends.
func everyOrDue(ctx context.Context, clk clock.Clock, interval time.Duration, due func() time.Time, fn func(ctx context.Context)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		fn(ctx)
		var timer *clock.Timer
		var fired <-chan struct{}      // nil: no wake-up but the interval's
		if at := due(); !at.IsZero() { // due by now (the clock moved since the pass): at once
			timer = clock.NewTimer(clk, at)
			fired = timer.C
		}
		select {
		case <-ctx.Done():
		case <-t.C:
		case <-fired:
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// Package clock is the time the engine, store/memory and queue/memqueue read: the system's by
// default, or one a test controls (taskertest.NewClock). tasker.Clock and memqueue.Clock declare
// the same interface for users; its methods name no type of this package, so a value of one is a
// value of the others.
package clock

import "time"

// Clock tells the time and runs functions when it reaches a given time.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// At runs f once the clock reaches t (at once when t is not after Now), and returns a
	// function that cancels it, reporting whether it did so before f ran. f must not block.
	At(t time.Time, f func()) (stop func() bool)
}

// Real is the system clock.
type Real struct{}

// Now implements Clock.
func (Real) Now() time.Time { return time.Now() }

// At implements Clock with time.AfterFunc: f runs in its own goroutine.
func (Real) At(t time.Time, f func()) func() bool { return time.AfterFunc(time.Until(t), f).Stop }

// Or returns c, or Real when c is nil.
func Or(c Clock) Clock {
	if c == nil {
		return Real{}
	}
	return c
}

// IsReal reports whether c is the system clock (nil or Real), for code that keeps its own
// timers of the standard library then.
func IsReal(c Clock) bool {
	switch c.(type) {
	case nil, Real:
		return true
	}
	return false
}

// Timer is a channel that receives once c reaches t, for a select; Stop releases it.
type Timer struct {
	C    <-chan struct{}
	stop func() bool
}

// NewTimer returns a Timer that fires once c reaches t.
func NewTimer(c Clock, t time.Time) *Timer {
	ch := make(chan struct{}, 1)
	stop := c.At(t, func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	})
	return &Timer{C: ch, stop: stop}
}

// Stop cancels the timer; it reports whether it did so before it fired.
func (t *Timer) Stop() bool { return t.stop() }

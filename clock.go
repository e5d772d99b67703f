package tasker

import (
	"time"

	"github.com/tasker-systems/tasker/internal/clock"
)

// Clock is the time the engine measures due times on (Config.Clock). The system clock is the
// default; taskertest.NewClock returns one a test moves by hand, so that a test of a scheduled
// start, a cron schedule, a durable sleep, a signal's timeout or a retry's backoff does not wait
// for them in real time.
//
// Its methods name only the standard library's types, so that memqueue.Clock, which store/memory
// and queue/memqueue take (memory.WithClock), is the same interface: one value serves both.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// At runs f once the clock reaches t (at once when t is not after Now), and returns a
	// function that cancels it, reporting whether it did so before f ran. f must not block.
	// The deadline is absolute, so that a clock moved between a reading and the arming of a
	// timer cannot make the timer late.
	At(t time.Time, f func()) (stop func() bool)
}

// SystemClock returns the system clock, Config.Clock's default: Now is time.Now and At runs f
// in its own goroutine, as time.AfterFunc does.
func SystemClock() Clock { return clock.Real{} }

// now is the time on the engine's clock.
func (e *Engine) now() time.Time { return e.core.Now() }

// now is the time on the clock of the engine running the step (the system's for a step built
// outside an engine).
func (s *Step) now() time.Time {
	if s.engine == nil {
		return time.Now()
	}
	return s.engine.now()
}

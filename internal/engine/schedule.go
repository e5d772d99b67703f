package engine

import (
	"context"
	"time"
)

// schedulerHook is the root's schedules: every leadership gets a fresh pass function from
// newPass, so that a pass knows what its leadership has created already and a new leader looks
// back for the runs missed during the handover.
type schedulerHook struct {
	interval time.Duration
	newPass  func() func(ctx context.Context) error
}

// SetScheduler makes the elected engine run newPass's passes every interval (the root's
// schedules, which create tasks through the root API). It applies from the next leadership.
func (e *Engine) SetScheduler(interval time.Duration, newPass func() func(ctx context.Context) error) {
	e.scheduler.Store(&schedulerHook{interval: interval, newPass: newPass})
}

// scheduleServices is the scheduler service, when the root has set one.
func (w *workers) scheduleServices() []service {
	h := w.e.scheduler.Load()
	if h == nil {
		return nil
	}
	return []service{{name: "scheduler", interval: h.interval, run: h.newPass()}}
}

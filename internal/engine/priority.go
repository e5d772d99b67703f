package engine

import "time"

// PriorityConfig sets what a point of task priority is worth, with its defaults applied.
type PriorityConfig struct {
	// Aging is the waiting one point of priority is worth: a ready step of a task of priority p
	// is read from the queue as if it had waited p × Aging longer.
	Aging time.Duration
	// MaxCredit caps that head start, so that a step never waits more than MaxCredit longer
	// than it would without priorities: low priority never starves.
	MaxCredit time.Duration
}

// PriorityCredit is the head start in the queue of the steps of a task of the given priority:
// priority × Aging, at most MaxCredit; none for a priority of 0 or less.
func (e *Engine) PriorityCredit(priority int) time.Duration {
	c := e.cfg.Priority
	if priority <= 0 || c.Aging <= 0 || c.MaxCredit <= 0 {
		return 0
	}
	if int64(priority) >= int64(c.MaxCredit/c.Aging) {
		return c.MaxCredit
	}
	return time.Duration(priority) * c.Aging
}

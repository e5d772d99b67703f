package tasker

import (
	"time"

	"github.com/tasker-systems/tasker/internal/engine"
)

// Priorities order ready steps in the queue, not in a separate structure: a ready step's message
// is sent dated back by its task's priority credit (Priority × Aging, at most MaxCredit), and
// workers read messages in order of visibility time (the queue's (queue, vt, msg_id) index on
// PostgreSQL, the same order in queue/memqueue). A step of priority p thus ranks as if it had
// waited p × Aging longer, and since a waiting message's time never moves while newer ones arrive,
// every step reaches the front: one of priority 0 waits at most MaxCredit longer than it would
// without priorities. The credit applies to a task's roots at creation and to the steps its
// outcomes release; retry timers, scheduled starts (RunAt) and messages sent again (rescues,
// the sweeper, operators) keep their own times. Brokers that cannot order by time (RabbitMQ)
// ignore priorities.

// PriorityAgingDefault is what one point of priority is worth by default: a minute of waiting.
const PriorityAgingDefault = time.Minute

// MaxPriorityCreditDefault caps a priority's head start by default: an hour.
const MaxPriorityCreditDefault = time.Hour

// PriorityConfig sets what a point of TaskRequest.Priority is worth. Zero values mean the
// defaults.
type PriorityConfig struct {
	// Aging is the waiting one point of priority is worth (PriorityAgingDefault).
	Aging time.Duration
	// MaxCredit caps a task's head start (MaxPriorityCreditDefault), and so bounds how much longer
	// a low-priority step can wait behind higher ones.
	MaxCredit time.Duration
}

// check refuses negative durations.
func (c PriorityConfig) check() error {
	switch {
	case c.Aging < 0:
		return &ConfigError{Field: "Priority.Aging", Value: c.Aging, Reason: "is negative (0 means the default)"}
	case c.MaxCredit < 0:
		return &ConfigError{Field: "Priority.MaxCredit", Value: c.MaxCredit, Reason: "is negative (0 means the default)"}
	}
	return nil
}

// engine is the configuration with its defaults applied.
func (c PriorityConfig) engine() engine.PriorityConfig {
	if c.Aging == 0 {
		c.Aging = PriorityAgingDefault
	}
	if c.MaxCredit == 0 {
		c.MaxCredit = MaxPriorityCreditDefault
	}
	return engine.PriorityConfig{Aging: c.Aging, MaxCredit: c.MaxCredit}
}

package tasker

import (
	"fmt"
	"time"

	"github.com/tasker-systems/tasker/internal/engine"
)

// Global limits hold across every engine on one store (see docs/flow-control.md): a claim of a
// limited namespace takes the limit's lock in the store, counts the namespace's steps in progress
// (Config.GlobalConcurrency) and those whose latest attempt started within the rate's window
// (Config.GlobalRate), claims at most what the limits leave and lets the lock go once its claim
// has committed. A step over a limit waits in the queue with no attempt spent. Every engine should
// set the same limits.

// RateLimit allows at most N step starts of a namespace in any window of Per. The window counts
// each step's latest attempt, so a step retried within it counts once.
type RateLimit struct {
	N   int
	Per time.Duration
}

// checkGlobalConcurrency refuses negative limits.
func checkGlobalConcurrency(limits map[string]int, rates map[string]RateLimit) error {
	for ns, n := range limits {
		if n < 0 {
			return &ConfigError{Field: fmt.Sprintf("GlobalConcurrency[%q]", ns), Value: n, Reason: "is negative (0 or no entry means no limit)"}
		}
	}
	for ns, r := range rates {
		if r.N < 0 || r.Per < 0 || (r.N > 0 && r.Per == 0) {
			return &ConfigError{Field: fmt.Sprintf("GlobalRate[%q]", ns), Value: r, Reason: "needs N >= 0 and, with N > 0, a positive Per"}
		}
	}
	return nil
}

// rateLimits is the engine's form of Config.GlobalRate.
func rateLimits(in map[string]RateLimit) map[string]engine.RateLimit {
	if len(in) == 0 {
		return nil
	}
	out := make(map[string]engine.RateLimit, len(in))
	for ns, r := range in {
		out[ns] = engine.RateLimit{N: r.N, Per: r.Per}
	}
	return out
}

package tasker

import (
	"math"
	"math/rand/v2"
	"time"
)

// BackoffJitter is the randomization factor applied to every backoff: a wait d becomes a random
// value in [d*(1-BackoffJitter), d*(1+BackoffJitter)], so that steps failing together do not
// retry together. The jitter never takes a wait past the step's cap (MaxBackoff): a wait at the
// cap is drawn from [cap*(1-BackoffJitter), cap].
const BackoffJitter = 0.2

// backoffDelay is the wait before the attempt after `attempt` (1-based) under a step's policy:
// the policy's wait, capped at maxWait (when positive), then jittered within the cap.
func backoffDelay(kind string, base, maxWait time.Duration, attempt int) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	var d float64
	switch BackoffKind(kind) {
	case BackoffNone:
		return 0
	case BackoffLinear:
		d = float64(base) * float64(attempt)
	default:
		// In floating point, so that a late attempt saturates instead of overflowing.
		d = float64(base) * math.Pow(2, float64(attempt-1))
	}
	limit := float64(math.MaxInt64)
	if maxWait > 0 {
		limit = float64(maxWait)
	}
	return jitterWithin(min(d, limit), limit)
}

// jitterWithin spreads d over [d*(1-BackoffJitter), d*(1+BackoffJitter)], clipped to limit.
func jitterWithin(d, limit float64) time.Duration {
	if d <= 0 {
		return 0
	}
	lo, hi := d*(1-BackoffJitter), min(d*(1+BackoffJitter), limit)
	v := lo + rand.Float64()*(hi-lo)
	if v >= limit {
		// float64(math.MaxInt64) rounds up past the largest Duration.
		v = math.Nextafter(limit, 0)
	}
	return max(time.Duration(v), 1)
}

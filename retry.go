package tasker

import (
	"math/rand/v2"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// BackoffJitter is the randomization factor applied to every backoff: a wait d becomes a random
// value in [d*(1-BackoffJitter), d*(1+BackoffJitter)], so that steps failing together do not
// retry together.
const BackoffJitter = 0.2

// backoffDelay is the wait before the attempt after `attempt` (1-based) under a step's policy.
func backoffDelay(kind string, base, maxWait time.Duration, attempt int) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	switch BackoffKind(kind) {
	case BackoffNone:
		return 0
	case BackoffLinear:
		d := base * time.Duration(attempt)
		if maxWait > 0 && d > maxWait {
			d = maxWait
		}
		return jitter(d)
	default:
		b := backoff.NewExponentialBackOff(
			backoff.WithInitialInterval(base),
			backoff.WithMultiplier(2),
			backoff.WithMaxInterval(maxWait),
			backoff.WithRandomizationFactor(BackoffJitter),
			backoff.WithMaxElapsedTime(0),
		)
		var d time.Duration
		for i := 0; i < attempt; i++ {
			d = b.NextBackOff()
		}
		return d
	}
}

func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	delta := BackoffJitter * float64(d)
	return time.Duration(float64(d) - delta + rand.Float64()*2*delta)
}

package tasker

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestBackoffDelayHoldsTheCap draws many delays for every attempt of exponential and linear
// policies whose waits reach their cap: each is positive and never past the cap (the jitter once
// took a 30s cap up to 36s), the waits below the cap keep their ±BackoffJitter spread, and the
// waits at the cap are still spread out rather than all equal to it.
func TestBackoffDelayHoldsTheCap(t *testing.T) {
	t.Parallel()
	const samples = 2000
	policies := []struct {
		kind      BackoffKind
		base, cap time.Duration
	}{
		{BackoffExponential, time.Second, 30 * time.Second},
		{BackoffExponential, 100 * time.Millisecond, 5 * time.Second},
		{BackoffLinear, time.Second, 10 * time.Second},
		{BackoffExponential, time.Millisecond, time.Millisecond}, // base = cap
	}
	for _, p := range policies {
		for attempt := 1; attempt <= 70; attempt++ { // far past the cap, and past 2^63 ns
			nominal := float64(p.base) * float64(attempt)
			if p.kind == BackoffExponential {
				nominal = float64(p.base) * float64(uint64(1)<<min(attempt-1, 62))
			}
			seen := map[time.Duration]bool{}
			lo, hi := time.Duration(1<<62), time.Duration(0)
			for range samples {
				d := backoffDelay(string(p.kind), p.base, p.cap, attempt)
				if d <= 0 || d > p.cap {
					t.Fatalf("%s base %s cap %s attempt %d: delay %s is not in (0, cap]", p.kind, p.base, p.cap, attempt, d)
				}
				seen[d] = true
				lo, hi = min(lo, d), max(hi, d)
			}
			require.Greater(t, len(seen), samples/2, "%s attempt %d: the delays are jittered (%d distinct of %d)", p.kind, attempt, len(seen), samples)
			if nominal*(1+BackoffJitter) < float64(p.cap) {
				require.GreaterOrEqual(t, float64(lo), nominal*(1-BackoffJitter)-1, "%s attempt %d", p.kind, attempt)
				require.LessOrEqual(t, float64(hi), nominal*(1+BackoffJitter)+1, "%s attempt %d", p.kind, attempt)
			} else {
				capped := min(nominal, float64(p.cap))
				require.GreaterOrEqual(t, float64(lo), capped*(1-BackoffJitter)-1, "%s attempt %d: near the cap, within the jitter below it", p.kind, attempt)
				require.Greater(t, float64(hi), capped*(1-BackoffJitter/2), "%s attempt %d: the spread reaches up towards the cap", p.kind, attempt)
			}
		}
	}
}

// TestBackoffDelayNone checks that the none policy does not wait, and that an uncapped policy
// saturates instead of overflowing.
func TestBackoffDelayNone(t *testing.T) {
	t.Parallel()
	require.Zero(t, backoffDelay(string(BackoffNone), time.Second, 30*time.Second, 3))
	for range 100 {
		d := backoffDelay(string(BackoffExponential), time.Second, 0, 200)
		require.Positive(t, d)
	}
}

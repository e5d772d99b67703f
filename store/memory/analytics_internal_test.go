package memory

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestPercentileIsPercentileCont: the memory store interpolates as PostgreSQL's percentile_cont
// does (store/postgres's TestAnalyticsPercentiles expects the same figures from SQL).
func TestPercentileIsPercentileCont(t *testing.T) {
	t.Parallel()
	ms := func(vs ...float64) []float64 {
		for i := range vs {
			vs[i] *= 1000
		}
		return vs
	}
	require.Equal(t, 25*time.Millisecond, percentile(ms(40, 10, 30, 20), 0.5))
	require.Equal(t, 38500*time.Microsecond, percentile(ms(40, 10, 30, 20), 0.95))
	require.Equal(t, 12500*time.Microsecond, percentile(ms(5, 10, 15, 20), 0.5))
	require.Equal(t, 19250*time.Microsecond, percentile(ms(5, 10, 15, 20), 0.95))
	require.Equal(t, 7*time.Millisecond, percentile(ms(7), 0.95))
	require.Zero(t, percentile(nil, 0.5))
}

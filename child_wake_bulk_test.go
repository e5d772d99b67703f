package tasker_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

const bulkCancelYAML = `
name: plain
namespace_name: plainns
version: 1.0.0
steps:
  - name: a
    handler: {callable: bulk_unbound}
`

// TestBulkCancelWakesBounded: 500 tasks cancelled in one caller's transaction reach the elected
// engine as 500 announcements, each asking for a parent's wake-up; the engine runs those a few
// at a time from a queue (maxParentWakes) rather than with a goroutine and a pool connection
// each at once.
func TestBulkCancelWakesBounded(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.register(t, bulkCancelYAML)
	b.start(t)
	const n = 500
	ids := make([]uuid.UUID, n)
	for i := range ids {
		ids[i] = b.create(t, "plainns", "plain", map[string]int{"i": i}).ID
	}
	require.Eventually(t, func() bool {
		h, err := b.engine.Health(context.Background())
		return err == nil && h.Leader.This
	}, 10*time.Second, 20*time.Millisecond, "the engine leads")
	ctx := context.Background()
	tx, err := b.db.Pool.Begin(ctx)
	require.NoError(t, err)
	for _, id := range ids {
		require.NoError(t, b.engine.CancelTaskTx(ctx, tx, id, "bulk"))
	}
	base := runtime.NumGoroutine()
	require.NoError(t, tx.Commit(ctx))
	peak := base
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(time.Millisecond) {
		peak = max(peak, runtime.NumGoroutine())
	}
	t.Logf("goroutines: %d before the commit, at most %d after", base, peak)
	require.Less(t, peak-base, 40, "the wake-ups of 500 cancellations run a few at a time")
}

package tasker_test

import (
	"bytes"
	"context"
	"runtime/pprof"
	"strings"
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
// It does not run in parallel: it counts the wake-up goroutines of the whole process.
func TestBulkCancelWakesBounded(t *testing.T) {
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
	require.NoError(t, tx.Commit(ctx))
	peak, seen := 0, false
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(2 * time.Millisecond) {
		n := wakeGoroutines(t)
		peak, seen = max(peak, n), seen || n > 0
	}
	t.Logf("wake-up goroutines at once: at most %d", peak)
	require.True(t, seen, "the announcements were heard and woke parents")
	require.LessOrEqual(t, peak, 8, "the wake-ups of 500 cancellations run a few at a time")
}

// wakeGoroutines counts the goroutines of the process that run a parent's wake-up, of any engine
// (the other tests' engines have none in flight unless they cancel children).
func wakeGoroutines(t *testing.T) int {
	var buf bytes.Buffer
	require.NoError(t, pprof.Lookup("goroutine").WriteTo(&buf, 2))
	n := 0
	for _, g := range strings.Split(buf.String(), "\n\n") {
		if strings.Contains(g, "(*parentWakes).work") {
			n++
		}
	}
	return n
}

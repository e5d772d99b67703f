package tasker_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/store"
)

const limitYAML = `
name: job
namespace_name: limited
version: 1.0.0
steps:
  - name: work
    handler: {callable: limited_work}
  - name: more
    handler: {callable: limited_work}
    dependencies: [work]
`

// TestGlobalConcurrencyLimit: three engines of 10 workers each share a global limit of 3 steps in
// progress for a namespace; sampled from the store, never more than 3 are in progress, and the
// work still keeps all 3 slots busy.
func TestGlobalConcurrencyLimit(t *testing.T) {
	t.Parallel()
	for _, be := range []string{backendPostgres, backendRabbitMQ, backendMemory} {
		t.Run(be, func(t *testing.T) {
			t.Parallel()
			const limit, work = 3, 40 * time.Millisecond
			opt := func(c *tasker.Config) {
				c.Concurrency = 10
				c.GlobalConcurrency = map[string]int{"limited": limit}
			}
			first := setupOn(t, be, opt)
			engines := []*bundle{first, first.sibling(t), first.sibling(t)}
			var running, peak atomic.Int32
			var spanMu sync.Mutex
			var firstStart, lastEnd time.Time
			for _, b := range engines {
				b.register(t, limitYAML)
				b.engine.HandleFunc("limited_work", func(context.Context, *tasker.Step) (any, error) {
					spanMu.Lock()
					if firstStart.IsZero() {
						firstStart = time.Now()
					}
					spanMu.Unlock()
					n := running.Add(1)
					for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
					}
					time.Sleep(work)
					running.Add(-1)
					spanMu.Lock()
					lastEnd = time.Now()
					spanMu.Unlock()
					return nil, nil
				})
			}
			ctx := context.Background()
			const tasks = 30
			var ids []uuid.UUID
			for i := range tasks {
				task, err := first.engine.CreateTask(ctx, tasker.TaskRequest{Namespace: "limited", Name: "job", Context: map[string]any{"i": i}})
				require.NoError(t, err)
				ids = append(ids, task.ID)
			}
			lim, ok := first.st.(store.Limiter)
			require.True(t, ok)
			sctx, stop := context.WithCancel(ctx)
			var wg sync.WaitGroup
			var sampled, overs atomic.Int32
			var maxSeen atomic.Int32
			wg.Add(1)
			go func() {
				defer wg.Done()
				for sctx.Err() == nil {
					n, err := lim.InProgress(sctx, "limited")
					if err == nil {
						sampled.Add(1)
						if int32(n) > maxSeen.Load() {
							maxSeen.Store(int32(n))
						}
						if n > limit {
							overs.Add(1)
						}
					}
					time.Sleep(2 * time.Millisecond)
				}
			}()
			for _, b := range engines {
				b.start(t)
			}
			for _, id := range ids {
				require.Equal(t, tasker.TaskComplete, first.wait(t, id).State)
			}
			took := lastEnd.Sub(firstStart) // from the first handler's start to the last one's end
			stop()
			wg.Wait()
			ideal := time.Duration(tasks*2) * work / limit
			t.Logf("%s: %d samples, at most %d in progress (handlers at once: %d); %d steps in %s (first start to last end), the ideal with %d slots being %s: %.0f%% busy",
				be, sampled.Load(), maxSeen.Load(), peak.Load(), tasks*2, took, limit, ideal, 100*float64(ideal)/float64(took))
			require.Zero(t, overs.Load(), "samples over the limit")
			require.LessOrEqual(t, peak.Load(), int32(limit), "handlers running at once")
			require.Equal(t, int32(limit), peak.Load(), "the work filled the 3 slots")
			if be != backendRabbitMQ { // a message put back on RabbitMQ goes through a delay queue: slow
				require.Less(t, took, 2*ideal, "the 3 slots stayed busy (at least half the time)")
			}
		})
	}
}

package tasker_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/store/postgres"
)

const diamondYAML = `
name: diamond
namespace_name: multi
version: 1.0.0
steps:
  - {name: a, handler: {callable: work}}
  - {name: b, handler: {callable: work}, dependencies: [a]}
  - {name: c, handler: {callable: work}, dependencies: [a]}
  - {name: d, handler: {callable: work}, dependencies: [b, c]}
`

// TestSeveralEnginesShareOneDatabase runs three engines on one schema: every task completes and
// every step's handler runs exactly once (no process crashes here, so no repeats are allowed).
func TestSeveralEnginesShareOneDatabase(t *testing.T) {
	t.Parallel()
	eachBackend(t, testSeveralEngines)
}

func testSeveralEngines(t *testing.T, setup setupFunc) {
	b := setup(t)
	const engines, tasks = 3, 60
	var mu sync.Mutex
	runs := map[string]int{}     // step ID -> handler runs
	byEngine := map[string]int{} // worker -> steps run
	var all []*bundle
	for i := range engines {
		eb := b.sibling(t, func(c *tasker.Config) {
			c.WorkerID, c.Concurrency = fmt.Sprintf("engine-%d", i), 4
			switch b.backend {
			case backendPostgres, backendRabbitMQ: // as another process: a store and a broker connection of its own
				c.Store = postgres.New(b.db.Pool, postgres.WithSchema(b.db.Schema))
				if rq, ok := c.Queue.(*testRabbitMQ); ok {
					c.Queue = rq.peer(t)
				}
			}
		})
		eng := eb.engine
		eb.register(t, diamondYAML)
		id := eng.WorkerID()
		eng.HandleFunc("work", func(ctx context.Context, s *tasker.Step) (any, error) {
			mu.Lock()
			runs[s.ID.String()]++
			byEngine[id]++
			mu.Unlock()
			time.Sleep(2 * time.Millisecond)
			return addOne(ctx, s)
		})
		eb.start(t)
		all = append(all, eb)
	}
	var created []*tasker.Task
	for i := range tasks {
		created = append(created, all[i%engines].create(t, "multi", "diamond", map[string]any{"i": i}))
	}
	for _, task := range created {
		got := all[0].wait(t, task.ID)
		require.Equal(t, tasker.TaskComplete, got.State)
		d, _ := got.Step("d")
		require.Equal(t, int64(3), jsonInt(t, d.Result))
		requireLegalTransitions(t, all[0].engine, task.ID)
	}
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, runs, tasks*4)
	for id, n := range runs {
		require.Equal(t, 1, n, "step %s ran %d times", id, n)
	}
	for i := range engines {
		require.Positive(t, byEngine[fmt.Sprintf("engine-%d", i)], "every engine took work: %v", byEngine)
	}
}

// TestConcurrencyLimits checks that neither the engine's nor a namespace's limit is exceeded.
func TestConcurrencyLimits(t *testing.T) {
	t.Parallel()
	const wide = `
name: wide
namespace_name: %s
version: 1.0.0
steps:
  - {name: s1, handler: {callable: slow}}
  - {name: s2, handler: {callable: slow}}
  - {name: s3, handler: {callable: slow}}
  - {name: s4, handler: {callable: slow}}
  - {name: s5, handler: {callable: slow}}
  - {name: s6, handler: {callable: slow}}
`
	b := setup(t, func(c *tasker.Config) {
		c.Concurrency = 5
		c.NamespaceConcurrency = map[string]int{"narrow": 2}
	})
	b.register(t, fmt.Sprintf(wide, "narrow"))
	b.register(t, fmt.Sprintf(wide, "broad"))
	var mu sync.Mutex
	cur := map[string]int{}
	peak := map[string]int{}
	var total, peakTotal atomic.Int32
	b.engine.HandleFunc("slow", func(_ context.Context, s *tasker.Step) (any, error) {
		mu.Lock()
		cur[s.Namespace]++
		peak[s.Namespace] = max(peak[s.Namespace], cur[s.Namespace])
		mu.Unlock()
		n := total.Add(1)
		for {
			p := peakTotal.Load()
			if n <= p || peakTotal.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(30 * time.Millisecond)
		total.Add(-1)
		mu.Lock()
		cur[s.Namespace]--
		mu.Unlock()
		return nil, nil
	})
	var ids []*tasker.Task
	for i := range 3 {
		ids = append(ids, b.create(t, "narrow", "wide", map[string]any{"i": i}), b.create(t, "broad", "wide", map[string]any{"i": i}))
	}
	b.start(t)
	for _, task := range ids {
		require.Equal(t, tasker.TaskComplete, b.wait(t, task.ID).State)
	}
	mu.Lock()
	defer mu.Unlock()
	require.LessOrEqual(t, peak["narrow"], 2, "namespace limit")
	require.Equal(t, 2, peak["narrow"], "the namespace limit is reached, so the check can fail")
	require.LessOrEqual(t, int(peakTotal.Load()), 5, "engine limit")
	require.GreaterOrEqual(t, int(peakTotal.Load()), 3, "steps do run in parallel, so the check can fail")
}

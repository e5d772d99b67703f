package tasker_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
)

const priorityYAML = `
name: job
namespace_name: prio
version: 1.0.0
steps:
  - name: work
    handler: {callable: prio_work}
`

// priorityBackends are the backends whose queues read in order of visibility time, where
// priorities apply (a RabbitMQ broker ignores them).
var priorityBackends = []string{backendPostgres, backendMemory}

// callLog records the order in which handlers were called, by task.
type callLog struct {
	mu    sync.Mutex
	order []uuid.UUID
	at    map[uuid.UUID]int
}

func (l *callLog) add(id uuid.UUID) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.at == nil {
		l.at = map[uuid.UUID]int{}
	}
	if _, ok := l.at[id]; !ok {
		l.at[id] = len(l.order)
		l.order = append(l.order, id)
	}
	return len(l.order)
}

func (l *callLog) pos(id uuid.UUID) (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p, ok := l.at[id]
	return p, ok
}

// TestHighPriorityOvertakesLowPriorityQueue: 200 low-priority tasks wait for 2 workers; a
// high-priority task created behind them runs before at least 90 % of them.
func TestHighPriorityOvertakesLowPriorityQueue(t *testing.T) {
	t.Parallel()
	for _, be := range priorityBackends {
		t.Run(be, func(t *testing.T) {
			t.Parallel()
			b := setupOn(t, be, func(c *tasker.Config) { c.Concurrency = 2 })
			b.register(t, priorityYAML)
			var log callLog
			b.engine.HandleFunc("prio_work", func(ctx context.Context, s *tasker.Step) (any, error) {
				log.add(s.TaskID)
				time.Sleep(5 * time.Millisecond)
				return nil, nil
			})
			ctx := context.Background()
			const lows = 200
			var lowIDs []uuid.UUID
			for i := range lows {
				task, err := b.engine.CreateTask(ctx, tasker.TaskRequest{Namespace: "prio", Name: "job", Context: map[string]any{"i": i}})
				require.NoError(t, err)
				lowIDs = append(lowIDs, task.ID)
			}
			b.start(t)
			require.Eventually(t, func() bool { log.mu.Lock(); defer log.mu.Unlock(); return len(log.order) >= 10 },
				30*time.Second, time.Millisecond, "the workers take the low-priority backlog")
			high, err := b.engine.CreateTask(ctx, tasker.TaskRequest{Namespace: "prio", Name: "job", Context: map[string]any{"high": true}, Priority: 5})
			require.NoError(t, err)
			// A control created with it at priority 0 waits behind the backlog.
			control, err := b.engine.CreateTask(ctx, tasker.TaskRequest{Namespace: "prio", Name: "job", Context: map[string]any{"control": true}})
			require.NoError(t, err)
			require.Equal(t, tasker.TaskComplete, b.wait(t, high.ID).State)
			require.Equal(t, tasker.TaskComplete, b.wait(t, control.ID).State)
			for _, id := range lowIDs {
				require.Equal(t, tasker.TaskComplete, b.wait(t, id).State)
			}
			pos, ok := log.pos(high.ID)
			require.True(t, ok)
			cpos, ok := log.pos(control.ID)
			require.True(t, ok)
			t.Logf("%s: of %d tasks, the high-priority one ran %d, its priority-0 control %d; both created when 10 had started",
				be, lows+2, pos+1, cpos+1)
			require.LessOrEqual(t, pos, lows/10, "the high-priority task ran after %d low-priority ones", pos)
			require.Greater(t, cpos, lows*9/10, "the control waited behind the backlog")
		})
	}
}

// TestLowPriorityIsNotStarved: a low-priority task waits behind a stream of high-priority ones
// that alone would keep the only worker busy, but no longer than the priority cap allows: every
// high-priority task that runs before it was created less than MaxCredit after it.
func TestLowPriorityIsNotStarved(t *testing.T) {
	t.Parallel()
	const maxCredit = 500 * time.Millisecond
	for _, be := range priorityBackends {
		t.Run(be, func(t *testing.T) {
			t.Parallel()
			b := setupOn(t, be, func(c *tasker.Config) {
				c.Concurrency = 1
				c.Priority = tasker.PriorityConfig{Aging: 10 * time.Millisecond, MaxCredit: maxCredit}
			})
			b.register(t, priorityYAML)
			var log callLog
			b.engine.HandleFunc("prio_work", func(ctx context.Context, s *tasker.Step) (any, error) {
				log.add(s.TaskID)
				time.Sleep(10 * time.Millisecond)
				return nil, nil
			})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			created := sync.Map{} // task ID → creation time
			mk := func(prio int) uuid.UUID {
				task, err := b.engine.CreateTask(context.Background(), tasker.TaskRequest{Namespace: "prio", Name: "job",
					Context: map[string]any{"n": uuid.NewString()}, Priority: prio})
				require.NoError(t, err)
				created.Store(task.ID, task.CreatedAt)
				return task.ID
			}
			// A backlog of high-priority tasks, the low one, then a stream of high-priority tasks
			// faster than the worker (10 ms each) can take them.
			for range 20 {
				mk(100)
			}
			low := mk(0)
			lowAt, _ := created.Load(low)
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					mk(100)
					time.Sleep(2 * time.Millisecond)
				}
			}()
			b.start(t)
			done := b.waitWithin(t, low, 30*time.Second)
			cancel()
			wg.Wait()
			require.Equal(t, tasker.TaskComplete, done.State)
			pos, ok := log.pos(low)
			require.True(t, ok)
			log.mu.Lock()
			before := append([]uuid.UUID(nil), log.order[:pos]...)
			log.mu.Unlock()
			require.NotEmpty(t, before, "high-priority tasks went first")
			latest := time.Duration(0)
			for _, id := range before {
				at, _ := created.Load(id)
				latest = max(latest, at.(time.Time).Sub(lowAt.(time.Time)))
			}
			t.Logf("%s: the low-priority task ran after %d high-priority ones, the latest created %s after it", be, len(before), latest)
			require.Greater(t, latest, time.Duration(0), "high-priority tasks created after the low one overtook it")
			require.Less(t, latest, maxCredit+50*time.Millisecond, "no task created more than MaxCredit after the low one went first")
		})
	}
}

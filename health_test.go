package tasker_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
)

const healthYAML = `
name: hold
namespace_name: health
version: 1.0.0
steps:
  - name: work
    handler: {callable: health_work}
`

// TestHealthReportsEveryPart: Health reports the database, the queue's backlog per namespace, the
// workers' slots against their caps, the maintenance leader and its services, and the pool; the
// queue wait limit makes the report degraded.
func TestHealthReportsEveryPart(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		b := setup(t, func(c *tasker.Config) {
			c.WorkerID = "health-0"
			c.Concurrency = 4
			c.NamespaceConcurrency = map[string]int{"health": 1}
		})
		ctx := context.Background()
		b.register(t, healthYAML)
		ageKnown := b.backend != backendRabbitMQ

		// Two tasks enqueued, no workers running: both first steps wait ready in the queue.
		first := b.create(t, "health", "hold", map[string]any{"n": 1})
		second := b.create(t, "health", "hold", map[string]any{"n": 2})
		var h *tasker.Health
		require.Eventually(t, func() bool {
			var err error
			h, err = b.engine.Health(ctx)
			require.NoError(t, err)
			return len(h.Queue.Namespaces) == 1 && h.Queue.Namespaces[0].Ready == 2 &&
				(!ageKnown || h.Queue.Namespaces[0].MaxWait > 0)
		}, 10*time.Second, 20*time.Millisecond, "two ready messages in the health namespace")
		require.Equal(t, tasker.HealthOK, h.Status, "reasons: %v", h.Reasons)
		require.Empty(t, h.Reasons)
		require.Equal(t, "health-0", h.WorkerID)
		require.WithinDuration(t, time.Now(), h.CheckedAt, 10*time.Second)
		require.True(t, h.Database.OK)
		require.Empty(t, h.Database.Error)
		require.Positive(t, h.Database.Latency)
		require.True(t, h.Queue.Inspected)
		require.Empty(t, h.Queue.Error)
		q := h.Queue.Namespaces[0]
		require.Equal(t, "health", q.Namespace)
		require.Equal(t, ageKnown, q.AgeKnown)
		if ageKnown {
			require.Positive(t, q.OldestAge)
			require.GreaterOrEqual(t, q.OldestAge, q.MaxWait-10*time.Millisecond)
		} else {
			require.Zero(t, q.OldestAge)
		}
		require.Equal(t, tasker.WorkersHealth{Concurrency: 4,
			Namespaces: []tasker.NamespaceWorkers{{Namespace: "health", Cap: 1}}}, h.Workers, "not running: nothing busy, nothing free")
		require.False(t, h.Leader.Held, "nobody ran the maintenance election")
		require.False(t, h.Leader.This)
		require.Empty(t, h.Leader.Error)
		require.Empty(t, h.Services)
		if b.backend == backendMemory {
			require.Nil(t, h.Pool, "the memory store has no pool")
		} else {
			require.NotNil(t, h.Pool)
			require.Equal(t, 20, h.Pool.MaxConns)
			require.Positive(t, h.Pool.TotalConns)
			require.Positive(t, h.Pool.AcquireCount)
			require.Equal(t, h.Pool.TotalConns, h.Pool.AcquiredConns+h.Pool.IdleConns+h.Pool.ConstructingConns)
		}

		// The queue wait limit: past it, the namespace's backlog degrades the report (when the
		// queue knows its ages).
		time.Sleep(20 * time.Millisecond)
		d, err := b.engine.Health(ctx, tasker.WithQueueWaitLimit(10*time.Millisecond))
		require.NoError(t, err)
		if ageKnown {
			require.Equal(t, tasker.HealthDegraded, d.Status)
			require.Len(t, d.Reasons, 1)
			require.Contains(t, d.Reasons[0], "namespace health: 2 ready messages")
		} else {
			require.Equal(t, tasker.HealthOK, d.Status, "no ages, no wait limit: %v", d.Reasons)
		}
		d, err = b.engine.Health(ctx, tasker.WithQueueWaitLimit(0))
		require.NoError(t, err)
		require.Equal(t, tasker.HealthOK, d.Status, "the rule turned off")

		// Workers run and hold the namespace's only slot with a handler that waits; the other
		// step stays ready. This engine is elected and its rescuer runs.
		release := make(chan struct{})
		var once sync.Once
		t.Cleanup(func() { once.Do(func() { close(release) }) })
		b.engine.HandleFunc("health_work", func(ctx context.Context, _ *tasker.Step) (any, error) {
			select {
			case <-release:
			case <-ctx.Done():
			}
			return "done", nil
		})
		started := time.Now()
		b.start(t)
		require.Eventually(t, func() bool {
			var err error
			h, err = b.engine.Health(ctx)
			require.NoError(t, err)
			return h.Workers.Busy == 1 && h.Leader.Held && h.Leader.This && service(h, "rescuer").Runs > 0 &&
				len(h.Queue.Namespaces) == 1 && h.Queue.Namespaces[0].Ready == 1
		}, 20*time.Second, 20*time.Millisecond, "one handler busy, the leader elected, a rescue pass, one step ready")
		require.Equal(t, tasker.HealthOK, h.Status, "reasons: %v", h.Reasons)
		require.Equal(t, tasker.WorkersHealth{Running: true, Concurrency: 4, Busy: 1, Free: 3,
			Namespaces: []tasker.NamespaceWorkers{{Namespace: "health", Cap: 1, Busy: 1, Free: 0}}}, h.Workers)
		require.Equal(t, "health-0", h.Leader.LeaderID)
		require.True(t, h.Leader.This)
		require.Empty(t, h.Leader.Error)
		require.False(t, h.Leader.ElectedAt.Before(started.Add(-time.Second)), "elected at %v, after the start at %v", h.Leader.ElectedAt, started)
		require.False(t, h.Leader.ElectedAt.After(time.Now().Add(time.Second)))
		require.True(t, h.Leader.ExpiresAt.After(h.Leader.ElectedAt))
		rescuer := service(h, "rescuer")
		require.False(t, rescuer.Failing)
		require.Empty(t, rescuer.LastError)
		require.False(t, rescuer.LastRun.Before(started))
		// Released, both tasks complete: nothing busy, nothing ready.
		once.Do(func() { close(release) })
		b.wait(t, first.ID)
		b.wait(t, second.ID)
		require.Eventually(t, func() bool {
			var err error
			h, err = b.engine.Health(ctx)
			require.NoError(t, err)
			return h.Workers.Busy == 0 && h.Queue.Namespaces[0].Ready == 0
		}, 10*time.Second, 20*time.Millisecond, "nothing busy, nothing ready")
		require.Equal(t, tasker.NamespaceWorkers{Namespace: "health", Cap: 1, Busy: 0, Free: 1}, h.Workers.Namespaces[0])
		require.Equal(t, 4, h.Workers.Free)
	})
}

// TestHealthDegradedWhenTheBrokerIsGone: with the database up and the broker out of reach (here
// the queue closed), Health still answers: the queue's error is reported and the status is
// degraded, not down.
func TestHealthDegradedWhenTheBrokerIsGone(t *testing.T) {
	t.Parallel()
	b := setupOn(t, backendRabbitMQ)
	b.register(t, healthYAML)
	q, ok := b.cfg.Queue.(*testRabbitMQ)
	require.True(t, ok)
	require.NoError(t, q.Close())
	h, err := b.engine.Health(context.Background())
	require.NoError(t, err)
	require.Equal(t, tasker.HealthDegraded, h.Status)
	require.True(t, h.Database.OK)
	require.True(t, h.Queue.Inspected)
	require.Contains(t, h.Queue.Error, "rabbitmq: depths")
	require.Len(t, h.Reasons, 1)
	require.Contains(t, h.Reasons[0], "the queue cannot be inspected")
}

// service returns the status of the named maintenance service in h; the zero value when absent.
func service(h *tasker.Health, name string) tasker.ServiceHealth {
	for _, s := range h.Services {
		if s.Name == name {
			return s
		}
	}
	return tasker.ServiceHealth{}
}

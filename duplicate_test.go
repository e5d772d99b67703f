package tasker_test

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/queue"
	"github.com/tasker-systems/tasker/queue/pgqueue"
)

// ackCounter is a backend's queue that counts the messages acknowledged.
type ackCounter struct {
	queue.Queue
	acks atomic.Int64
}

func (q *ackCounter) Ack(ctx context.Context, name string, ids ...int64) error {
	err := q.Queue.Ack(ctx, name, ids...)
	if err == nil {
		q.acks.Add(int64(len(ids)))
	}
	return err
}

func (q *ackCounter) AckTx(ctx context.Context, tx pgx.Tx, name string, ids ...int64) error {
	err := q.Queue.AckTx(ctx, tx, name, ids...)
	if err == nil {
		q.acks.Add(int64(len(ids)))
	}
	return err
}

// ackCounterPublisher is an ackCounter over a queue.Publisher.
type ackCounterPublisher struct {
	*ackCounter
	pub queue.Publisher
}

func (q *ackCounterPublisher) Publish(ctx context.Context, name string, payloads [][]byte, delay time.Duration) error {
	return q.pub.Publish(ctx, name, payloads, delay)
}

// backendQueue returns the queue the bundle's engine uses (on PostgreSQL, a pgqueue on the same
// schema), and a function that sends raw payloads to it the way the engine would.
func backendQueue(t testing.TB, b *bundle) (queue.Queue, func(ctx context.Context, name string, payloads ...[]byte) error) {
	t.Helper()
	switch b.backend {
	case backendPostgres:
		pg := pgqueue.New(b.db.Pool, pgqueue.WithSchema(b.db.Schema), pgqueue.WithPollInterval(100*time.Millisecond))
		return pg, func(ctx context.Context, name string, payloads ...[]byte) error {
			return pgx.BeginFunc(ctx, b.db.Pool, func(tx pgx.Tx) error { return pg.SendTx(ctx, tx, name, payloads, 0) })
		}
	case backendRabbitMQ:
		rq := b.cfg.Queue.(*testRabbitMQ)
		return rq, func(ctx context.Context, name string, payloads ...[]byte) error {
			return rq.Publish(ctx, name, payloads, 0)
		}
	default:
		mq := b.memStore(t).DefaultQueue()
		return mq, func(ctx context.Context, name string, payloads ...[]byte) error {
			return mq.SendTx(ctx, nil, name, payloads, 0)
		}
	}
}

// TestDuplicateDeliveriesAreDropped delivers steps' messages again — while the step's handler
// runs, once the step is complete, and for a step still pending — as a broker's redelivery or a
// sweeper's re-publish would: each duplicate is recognised by the step's state at the claim,
// dropped and acknowledged, and every handler runs exactly once.
func TestDuplicateDeliveriesAreDropped(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		base := setup(t)
		inner, send := backendQueue(t, base)
		counter := &ackCounter{Queue: inner}
		var q queue.Queue = counter
		if pub, ok := inner.(queue.Publisher); ok {
			q = &ackCounterPublisher{ackCounter: counter, pub: pub}
		}
		b := base.sibling(t, func(c *tasker.Config) { c.Queue = q })
		b.register(t, linearYAML)

		var mu sync.Mutex
		runs := map[string]int{}
		aRunning, releaseA := make(chan struct{}), make(chan struct{})
		b.engine.HandleFunc("add_one", func(ctx context.Context, s *tasker.Step) (any, error) {
			mu.Lock()
			runs[s.Name]++
			mu.Unlock()
			if s.Name == "a" {
				close(aRunning)
				select {
				case <-releaseA:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
			return addOne(ctx, s)
		})
		b.start(t)
		ctx := context.Background()
		task := b.create(t, "test", "linear", nil)
		<-aRunning

		got, err := b.engine.GetTask(ctx, task.ID)
		require.NoError(t, err)
		message := func(name string) []byte {
			s, ok := got.Step(name)
			require.True(t, ok)
			p, err := json.Marshal(map[string]any{"task_id": task.ID, "step_id": s.ID, "task": "linear", "version": "1.0.0", "step": name})
			require.NoError(t, err)
			return p
		}
		// While a runs: two more deliveries of a, and one of c, which is still pending.
		require.NoError(t, send(ctx, "test", message("a"), message("a"), message("c")))
		require.Eventually(t, func() bool { return counter.acks.Load() >= 3 }, 20*time.Second, 10*time.Millisecond,
			"the three duplicates are dropped and acknowledged while a's handler still runs")
		close(releaseA)
		done := b.wait(t, task.ID)
		require.Equal(t, tasker.TaskComplete, done.State)
		// The last ack follows the commit that completed the task, so it may come after the wait.
		require.Eventually(t, func() bool { return counter.acks.Load() >= 6 }, 10*time.Second, 5*time.Millisecond,
			"the three steps' own messages are acknowledged too")
		before := counter.acks.Load()

		// After the task completed: every step delivered again.
		require.NoError(t, send(ctx, "test", message("a"), message("b"), message("c")))
		require.Eventually(t, func() bool { return counter.acks.Load() >= before+3 }, 20*time.Second, 10*time.Millisecond,
			"the late duplicates are dropped and acknowledged")

		mu.Lock()
		require.Equal(t, map[string]int{"a": 1, "b": 1, "c": 1}, runs, "every handler ran exactly once")
		mu.Unlock()
		after, err := b.engine.GetTask(ctx, task.ID)
		require.NoError(t, err)
		for _, s := range after.Steps {
			require.Equal(t, tasker.StepComplete, s.State, s.Name)
			require.Equal(t, 1, s.Attempts, s.Name)
		}
		requireLegalTransitions(t, b.engine, task.ID)
	})
}

package tasker_test

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/queue"
	"github.com/tasker-systems/tasker/queue/pgqueue"
)

// losingPublisher is a backend's queue behind a publish-after-commit seam, as a broker outside the
// store is: SendTx refuses, Publish sends on its own. It loses the first publish of the steps named
// in lose, as a publisher killed between commit and publish would.
type losingPublisher struct {
	queue.Queue
	publish func(ctx context.Context, name string, payloads [][]byte, delay time.Duration) error

	mu   sync.Mutex
	lose map[string]bool
	lost []string
}

var _ queue.Publisher = (*losingPublisher)(nil)

func (q *losingPublisher) SendTx(context.Context, pgx.Tx, string, [][]byte, time.Duration) error {
	return queue.ErrNotTransactional
}

func (q *losingPublisher) Publish(ctx context.Context, name string, payloads [][]byte, delay time.Duration) error {
	var keep [][]byte
	q.mu.Lock()
	for _, p := range payloads {
		var m struct {
			Step string `json:"step"`
		}
		_ = json.Unmarshal(p, &m)
		if q.lose[m.Step] {
			delete(q.lose, m.Step)
			q.lost = append(q.lost, m.Step)
			continue
		}
		keep = append(keep, p)
	}
	q.mu.Unlock()
	return q.publish(ctx, name, keep, delay)
}

func (q *losingPublisher) lostSteps() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]string(nil), q.lost...)
}

// setupLosing returns a bundle whose engine publishes after its commits through a losingPublisher
// over the backend's own queue: on PostgreSQL a pgqueue written outside the store's transactions,
// on RabbitMQ the broker, in memory the memory queue. The sweeper runs every 100 ms.
func setupLosing(t testing.TB, setup setupFunc, lose ...string) (*bundle, *losingPublisher) {
	t.Helper()
	fast := func(c *tasker.Config) {
		c.RepublishAfter = 300 * time.Millisecond
		c.RescueInterval = 100 * time.Millisecond
	}
	b := setup(t, fast)
	q := &losingPublisher{lose: map[string]bool{}}
	for _, s := range lose {
		q.lose[s] = true
	}
	switch b.backend {
	case backendPostgres:
		pg := pgqueue.New(b.db.Pool, pgqueue.WithSchema(b.db.Schema), pgqueue.WithPollInterval(50*time.Millisecond))
		q.Queue = pg
		q.publish = func(ctx context.Context, name string, payloads [][]byte, delay time.Duration) error {
			return pgx.BeginFunc(ctx, b.db.Pool, func(tx pgx.Tx) error { return pg.SendTx(ctx, tx, name, payloads, delay) })
		}
	case backendRabbitMQ:
		rq := b.cfg.Queue.(*testRabbitMQ)
		q.Queue = rq
		q.publish = rq.Publish
	case backendMemory:
		mq := b.memStore(t).DefaultQueue()
		q.Queue = mq
		q.publish = func(ctx context.Context, name string, payloads [][]byte, delay time.Duration) error {
			return mq.SendTx(ctx, nil, name, payloads, delay)
		}
	}
	return b.sibling(t, fast, func(c *tasker.Config) { c.Queue = q }), q
}

// TestPublishAfterCommitAndSweeper: with a queue outside the store's transactions, messages are
// published after the commit, and one lost in between (the publisher died) is published again by
// the sweeper from the store's state.
func TestPublishAfterCommitAndSweeper(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		b, q := setupLosing(t, setup, "b")
		b.register(t, linearYAML)
		b.engine.HandleFunc("add_one", addOne)
		b.start(t)
		task := b.wait(t, b.create(t, "test", "linear", nil).ID)
		require.Equal(t, tasker.TaskComplete, task.State)
		c, _ := task.Step("c")
		require.Equal(t, int64(3), jsonInt(t, c.Result))
		require.Equal(t, []string{"b"}, q.lostSteps(), "b's first message was lost, and the task still completed")
		bStep, _ := task.Step("b")
		require.Equal(t, 1, bStep.Attempts)
		requireLegalTransitions(t, b.engine, task.ID)
	})
}

// TestCreateTaskTxWithAfterCommitQueue: inside the caller's transaction nothing is published;
// after the commit the sweeper publishes the first steps.
func TestCreateTaskTxWithAfterCommitQueue(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		b, _ := setupLosing(t, setup)
		if b.db == nil {
			t.Skip("the memory store has no transactions (see TestMemoryCreateTaskTxRefusesACallersTransaction)")
		}
		b.register(t, linearYAML)
		b.engine.HandleFunc("add_one", addOne)
		b.start(t)
		ctx := context.Background()
		tx, err := b.db.Pool.Begin(ctx)
		require.NoError(t, err)
		task, err := b.engine.CreateTaskTx(ctx, tx, tasker.TaskRequest{Namespace: "test", Name: "linear"})
		require.NoError(t, err)
		require.NoError(t, tx.Commit(ctx))
		got := b.wait(t, task.ID)
		require.Equal(t, tasker.TaskComplete, got.State)
	})
}

// TestCreateTaskTxIsPublishedAtCommit: with a queue outside the database, a task created in the
// caller's transaction is announced by the store when that transaction commits, and the elected
// engine publishes its first steps then, without waiting for the sweeper (RepublishAfter is an
// hour here). A transaction rolled back announces nothing.
func TestCreateTaskTxIsPublishedAtCommit(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		lossy, _ := setupLosing(t, setup)
		if lossy.db == nil {
			t.Skip("the memory store has no transactions (see TestMemoryCreateTaskTxRefusesACallersTransaction)")
		}
		b := lossy.sibling(t, func(c *tasker.Config) { c.RepublishAfter = time.Hour })
		b.register(t, linearYAML)
		var runs atomic.Int64
		b.engine.HandleFunc("add_one", func(ctx context.Context, s *tasker.Step) (any, error) {
			runs.Add(1)
			return addOne(ctx, s)
		})
		b.start(t)
		ctx := context.Background()
		createTx := func(i int, commit bool) uuid.UUID {
			tx, err := b.db.Pool.Begin(ctx)
			require.NoError(t, err)
			task, err := b.engine.CreateTaskTx(ctx, tx, tasker.TaskRequest{Namespace: "test", Name: "linear", Context: map[string]any{"i": i}})
			require.NoError(t, err)
			if commit {
				require.NoError(t, tx.Commit(ctx))
			} else {
				require.NoError(t, tx.Rollback(ctx))
			}
			return task.ID
		}
		completes := func(id uuid.UUID, within time.Duration) bool {
			deadline := time.Now().Add(within)
			for time.Now().Before(deadline) {
				task, err := b.engine.GetTask(ctx, id)
				require.NoError(t, err)
				if task.State == tasker.TaskComplete {
					return true
				}
				time.Sleep(10 * time.Millisecond)
			}
			return false
		}
		// The engine listens once it leads; announcements before that go to the sweeper.
		warm := false
		for i := 0; i < 30 && !warm; i++ {
			warm = completes(createTx(i, true), time.Second)
		}
		require.True(t, warm, "no task created in a transaction completed within a second of its commit")
		before := runs.Load()
		createTx(-1, false)
		for i := 100; i < 105; i++ {
			require.True(t, completes(createTx(i, true), 10*time.Second), "task %d was not published at its commit", i)
		}
		require.Equal(t, before+15, runs.Load(), "the rolled-back task never ran")
	})
}

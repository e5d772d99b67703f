package tasker_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/queue"
	"github.com/tasker-systems/tasker/queue/pgqueue"
)

// afterCommitQueue is a queue outside the store's transactions, as RabbitMQ is: SendTx refuses,
// Publish sends on its own (here, through the PostgreSQL queue in a transaction of its own). It
// loses the first publish of the steps named in lose, as a publisher killed between commit and
// publish would.
type afterCommitQueue struct {
	pg   *pgqueue.Queue
	pool *pgxpool.Pool

	mu   sync.Mutex
	lose map[string]bool
	lost []string
}

var _ queue.Publisher = (*afterCommitQueue)(nil)

func (q *afterCommitQueue) SendTx(context.Context, pgx.Tx, string, [][]byte, time.Duration) error {
	return queue.ErrNotTransactional
}

func (q *afterCommitQueue) Publish(ctx context.Context, name string, payloads [][]byte, delay time.Duration) error {
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
	return pgx.BeginFunc(ctx, q.pool, func(tx pgx.Tx) error { return q.pg.SendTx(ctx, tx, name, keep, delay) })
}

func (q *afterCommitQueue) Read(ctx context.Context, name string, n int, vt time.Duration) ([]queue.Message, error) {
	return q.pg.Read(ctx, name, n, vt)
}
func (q *afterCommitQueue) Ack(ctx context.Context, name string, ids ...int64) error {
	return q.pg.Ack(ctx, name, ids...)
}
func (q *afterCommitQueue) AckTx(ctx context.Context, tx pgx.Tx, name string, ids ...int64) error {
	return q.pg.AckTx(ctx, tx, name, ids...)
}
func (q *afterCommitQueue) RetryLater(ctx context.Context, name string, id int64, d time.Duration) error {
	return q.pg.RetryLater(ctx, name, id, d)
}
func (q *afterCommitQueue) Extend(ctx context.Context, name string, id int64, vt time.Duration) error {
	return q.pg.Extend(ctx, name, id, vt)
}
func (q *afterCommitQueue) Listen(ctx context.Context, names []string, wake func(string)) error {
	return q.pg.Listen(ctx, names, wake)
}

func setupAfterCommit(t *testing.T, lose ...string) (*bundle, *afterCommitQueue) {
	var q *afterCommitQueue
	b := setup(t, func(c *tasker.Config) {
		c.RepublishAfter = 300 * time.Millisecond
		c.RescueInterval = 100 * time.Millisecond
	})
	q = &afterCommitQueue{pg: pgqueue.New(b.db.Pool, pgqueue.WithSchema(b.db.Schema), pgqueue.WithPollInterval(50*time.Millisecond)), pool: b.db.Pool, lose: map[string]bool{}}
	for _, s := range lose {
		q.lose[s] = true
	}
	eng, err := tasker.NewEngine(tasker.Config{Store: b.store, Queue: q, Logger: testLogger(),
		RepublishAfter: 300 * time.Millisecond, RescueInterval: 100 * time.Millisecond, Lease: 3 * time.Second})
	require.NoError(t, err)
	b.engine = eng
	return b, q
}

// TestPublishAfterCommitAndSweeper: with a queue outside the database, messages are published
// after the commit, and one lost in between (the publisher died) is published again by the
// sweeper from database state.
func TestPublishAfterCommitAndSweeper(t *testing.T) {
	t.Parallel()
	b, q := setupAfterCommit(t, "b")
	b.register(t, linearYAML)
	b.engine.HandleFunc("add_one", addOne)
	b.start(t)
	task := b.wait(t, b.create(t, "test", "linear", nil).ID)
	require.Equal(t, tasker.TaskComplete, task.State)
	c, _ := task.Step("c")
	require.Equal(t, int64(3), jsonInt(t, c.Result))
	q.mu.Lock()
	require.Equal(t, []string{"b"}, q.lost, "b's first message was lost, and the task still completed")
	q.mu.Unlock()
	bStep, _ := task.Step("b")
	require.Equal(t, 1, bStep.Attempts)
	requireLegalTransitions(t, b.engine, task.ID)
}

// TestCreateTaskTxWithAfterCommitQueue: inside the caller's transaction nothing is published;
// after the commit the sweeper publishes the first steps.
func TestCreateTaskTxWithAfterCommitQueue(t *testing.T) {
	t.Parallel()
	b, _ := setupAfterCommit(t)
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
}

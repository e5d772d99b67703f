package tasker_test

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/testrabbit"
	"github.com/tasker-systems/tasker/queue"
	"github.com/tasker-systems/tasker/queue/rabbitmq"
)

// rabbitURL is the broker the tests use.
var rabbitURL = testrabbit.URL()

// testRabbitMQ is a rabbitmq.Queue with a prefix of its own that remembers the queue names it is
// used with, so that the test's broker queues can be deleted when it ends. Embedding keeps the
// Publisher method, so the engine publishes after its commits.
type testRabbitMQ struct {
	*rabbitmq.Queue
	prefix string
	// published counts the payloads published, readyCounts the calls of ReadyCount.
	published, readyCounts atomic.Int64
	// republishAfterTotal, when set, makes Publish note in overTotalAt when published first passes
	// it; firstBacklog is when ReadyCount first found messages waiting.
	republishAfterTotal       atomic.Int64
	firstBacklog, overTotalAt time.Time

	mu    sync.Mutex
	names map[string]bool
}

func (q *testRabbitMQ) note(names ...string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, n := range names {
		q.names[n] = true
	}
}

func (q *testRabbitMQ) Publish(ctx context.Context, name string, payloads [][]byte, delay time.Duration) error {
	q.note(name)
	if total := q.published.Add(int64(len(payloads))); total > q.republishAfterTotal.Load() && q.republishAfterTotal.Load() > 0 {
		q.mu.Lock()
		if q.overTotalAt.IsZero() {
			q.overTotalAt = time.Now()
		}
		q.mu.Unlock()
	}
	return q.Queue.Publish(ctx, name, payloads, delay)
}

func (q *testRabbitMQ) ReadyCount(ctx context.Context, name string) (int, error) {
	q.readyCounts.Add(1)
	n, err := q.Queue.ReadyCount(ctx, name)
	if err == nil && n > 0 {
		q.mu.Lock()
		if q.firstBacklog.IsZero() {
			q.firstBacklog = time.Now()
		}
		q.mu.Unlock()
	}
	return n, err
}

func (q *testRabbitMQ) Read(ctx context.Context, name string, n int, vt time.Duration) ([]queue.Message, error) {
	q.note(name)
	return q.Queue.Read(ctx, name, n, vt)
}

func (q *testRabbitMQ) Listen(ctx context.Context, names []string, wake func(string)) error {
	q.note(names...)
	return q.Queue.Listen(ctx, names, wake)
}

// newTestRabbitMQ connects to the test broker with a fresh prefix; when the test ends it closes the
// queue and deletes the broker queues and the dead-letter exchange it used (delay queues expire by
// themselves). It fails, never skips, when the broker does not answer.
func newTestRabbitMQ(t testing.TB, opts ...rabbitmq.Option) *testRabbitMQ {
	t.Helper()
	return newTestRabbitMQPrefix(t, "tasker-test-"+strings.ToLower(rand.Text()[:10])+".", opts...)
}

// peer is another connection to the same broker queues, as another process would have.
func (q *testRabbitMQ) peer(t testing.TB, opts ...rabbitmq.Option) *testRabbitMQ {
	t.Helper()
	return newTestRabbitMQPrefix(t, q.prefix, opts...)
}

func newTestRabbitMQPrefix(t testing.TB, prefix string, opts ...rabbitmq.Option) *testRabbitMQ {
	t.Helper()
	q, err := rabbitmq.New(rabbitURL, append([]rabbitmq.Option{rabbitmq.WithPrefix(prefix), rabbitmq.WithPrefetch(16),
		rabbitmq.WithPollInterval(200 * time.Millisecond)}, opts...)...)
	require.NoError(t, err, testrabbit.Unreachable(rabbitURL))
	tq := &testRabbitMQ{Queue: q, prefix: prefix, names: map[string]bool{}}
	testrabbit.DeleteAtCleanup(t, rabbitURL, prefix, func() []string {
		tq.mu.Lock()
		defer tq.mu.Unlock()
		var names []string
		for name := range tq.names {
			names = append(names, q.QueueName(name), q.DeadLetterQueueName(name))
		}
		return names
	})
	t.Cleanup(func() { _ = q.Close() })
	return tq
}

// TestEngineOnRabbitMQ runs diamond tasks, each with a retry, on PostgreSQL + RabbitMQ: messages
// are published after each commit, retries go through the broker's delay queues.
func TestEngineOnRabbitMQ(t *testing.T) {
	t.Parallel()
	q := newTestRabbitMQ(t, rabbitmq.WithPrefetch(8))
	b := setup(t, func(c *tasker.Config) { c.Queue = q; c.Concurrency = 8 })
	b.register(t, `
name: diamond
namespace_name: rmq
version: 1.0.0
steps:
  - {name: a, handler: {callable: add_one}}
  - name: b
    handler: {callable: flaky}
    dependencies: [a]
    retry: {max_attempts: 3, backoff: exponential, backoff_base_ms: 50, max_backoff_ms: 300}
  - {name: c, handler: {callable: add_one}, dependencies: [a]}
  - {name: d, handler: {callable: add_one}, dependencies: [b, c]}
`)
	var flaky atomic.Int64
	b.engine.HandleFunc("add_one", addOne)
	b.engine.HandleFunc("flaky", func(ctx context.Context, s *tasker.Step) (any, error) {
		flaky.Add(1)
		if s.Attempt == 1 {
			return nil, errors.New("transient")
		}
		return addOne(ctx, s)
	})
	b.start(t)
	var tasks []*tasker.Task
	for i := range 30 {
		tasks = append(tasks, b.create(t, "rmq", "diamond", map[string]any{"i": i}))
	}
	for _, task := range tasks {
		got := b.wait(t, task.ID)
		require.Equal(t, tasker.TaskComplete, got.State)
		d, _ := got.Step("d")
		require.Equal(t, int64(3), jsonInt(t, d.Result))
		bStep, _ := got.Step("b")
		require.Equal(t, 2, bStep.Attempts)
		requireLegalTransitions(t, b.engine, task.ID)
	}
	require.Equal(t, int64(60), flaky.Load())
}

// TestSweeperHoldsBackWhileTheQueueHasABacklog: while the broker queue has messages waiting, the
// sweeper does not re-publish the steps that wait enqueued behind them (their messages are in the
// backlog), for up to 10 RepublishAfter periods; then it re-publishes once anyway (a queue
// saturated for good must not keep a lost message back forever). Everything completes.
func TestSweeperHoldsBackWhileTheQueueHasABacklog(t *testing.T) {
	t.Parallel()
	b := setupOn(t, backendRabbitMQ, func(c *tasker.Config) {
		c.Concurrency = 1
		c.RepublishAfter = 300 * time.Millisecond
		c.RescueInterval = 100 * time.Millisecond
		c.Lease = 10 * time.Second
	})
	q := b.cfg.Queue.(*testRabbitMQ)
	b.register(t, `
name: one
namespace_name: backlog
version: 1.0.0
steps:
  - {name: a, handler: {callable: slow}}
`)
	release := make(chan struct{})
	b.engine.HandleFunc("slow", func(ctx context.Context, s *tasker.Step) (any, error) {
		select {
		case <-release:
			return 1, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	// The tasks are published before the workers start, so that the backlog is there from the
	// sweeper's first look (with workers running, slow creations would let the first steps wait in
	// the consumer's prefetch with nothing ready in the broker, which the sweeper rightly
	// re-publishes).
	const n = 40 // more than the prefetch (16), so that messages wait ready in the broker
	q.republishAfterTotal.Store(n)
	var ids []uuid.UUID
	for i := range n {
		ids = append(ids, b.create(t, "backlog", "one", map[string]any{"i": i}).ID)
	}
	b.start(t)
	require.Eventually(t, func() bool { return q.published.Load() > n }, 30*time.Second, 10*time.Millisecond,
		"after 10 periods of backlog the sweeper re-publishes anyway")
	q.mu.Lock()
	first, over := q.firstBacklog, q.overTotalAt
	q.mu.Unlock()
	require.False(t, first.IsZero(), "the sweeper found the backlog")
	held := over.Sub(first)
	t.Logf("re-published after %s of backlog", held.Round(time.Millisecond))
	// 10 periods of 300 ms, less a sweep interval (100 ms) for when the first look came.
	require.GreaterOrEqual(t, held, 2900*time.Millisecond, "nothing was re-published while the backlog lasted")
	close(release)
	for _, id := range ids {
		require.Equal(t, tasker.TaskComplete, b.wait(t, id).State)
	}
}

// TestRetryLongerThanTheBrokerCanDelay: a backoff longer than RabbitMQ's timers allow (about 24.8
// days; a 30-day RetryAfter, say) is not published at once, which the broker refuses: the step waits
// in the database and the sweeper publishes its message once it is due. Before, each such publish
// failed and was logged as an error.
func TestRetryLongerThanTheBrokerCanDelay(t *testing.T) {
	t.Parallel()
	logs := newLogCapture()
	b := setupOn(t, backendRabbitMQ, func(c *tasker.Config) {
		c.Logger = logs.logger()
		c.RepublishAfter = 300 * time.Millisecond
	})
	b.register(t, `
name: month
namespace_name: longwait
version: 1.0.0
steps:
  - name: approve
    handler: {callable: approve}
    retry: {retryable: true, max_attempts: 2}
`)
	b.engine.HandleFunc("approve", func(_ context.Context, s *tasker.Step) (any, error) {
		if s.Attempt == 1 {
			return nil, tasker.RetryAfter(30*24*time.Hour, errors.New("waiting for a monthly approval"))
		}
		return map[string]bool{"approved": true}, nil
	})
	b.start(t)
	task := b.create(t, "longwait", "month", map[string]any{})
	require.Eventually(t, func() bool {
		got, err := b.engine.GetTask(context.Background(), task.ID)
		require.NoError(t, err)
		st, _ := got.Step("approve")
		return st.State == tasker.StepWaitingForRetry
	}, 20*time.Second, 20*time.Millisecond)
	time.Sleep(time.Second) // the sweeper runs every RepublishAfter/3: the step is not due, so it stays
	got, err := b.engine.GetTask(context.Background(), task.ID)
	require.NoError(t, err)
	st, _ := got.Step("approve")
	require.Equal(t, tasker.StepWaitingForRetry, st.State)
	require.False(t, logs.contains("publish step messages"), "the over-long delay is no publish error")
	require.True(t, logs.contains("delay longer than the queue allows"))

	// The month passes: the sweeper publishes the message, and the second attempt runs.
	_, err = b.db.Pool.Exec(context.Background(), `UPDATE `+b.db.Schema+`.steps SET next_retry_at = now(), updated_at = now() - interval '1 hour' WHERE task_id = $1`, task.ID)
	require.NoError(t, err)
	done := b.wait(t, task.ID)
	require.Equal(t, tasker.TaskComplete, done.State)
	st, _ = done.Step("approve")
	require.Equal(t, 2, st.Attempts)
}

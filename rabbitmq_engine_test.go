package tasker_test

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/queue/rabbitmq"
)

const rabbitURL = "amqp://guest:guest@127.0.0.1:5672/"

// TestEngineOnRabbitMQ runs diamond tasks, each with a retry, on PostgreSQL + RabbitMQ: messages
// are published after each commit, retries go through the broker's delay queues.
func TestEngineOnRabbitMQ(t *testing.T) {
	t.Parallel()
	prefix := "tasker-test-" + strings.ToLower(rand.Text()[:8]) + "."
	q, err := rabbitmq.New(rabbitURL, rabbitmq.WithPrefix(prefix), rabbitmq.WithPrefetch(8))
	require.NoError(t, err, "RabbitMQ must answer at %s (rabbitmq-server -detached)", rabbitURL)
	t.Cleanup(func() {
		_ = q.Close()
		conn, err := amqp.Dial(rabbitURL)
		if err != nil {
			return
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			return
		}
		_, _ = ch.QueueDelete(q.QueueName("rmq"), false, false, false)
		_, _ = ch.QueueDelete(q.DeadLetterQueueName("rmq"), false, false, false)
	})
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

// Command rabbitmq runs workflows with RabbitMQ delivering the step messages while PostgreSQL stays
// the source of truth: every step's state, result and audit trail live in the database; the broker
// only carries "this step is ready" from the process that made it ready to a worker.
//
//	go run ./examples/rabbitmq
//
// It creates ten diamond tasks (fetch -> (enrich, score) -> publish), where score fails on its first
// attempt and is retried through the broker's delay queue, plus one task created inside the
// program's own transaction, which is published when that transaction commits. It prints each
// task's state and the attempts its steps took.
//
// It reads TASKER_DATABASE_URL or DATABASE_URL (default: the local server,
// postgres://postgres@127.0.0.1:5432/postgres) and migrates its own schema (tasker_rabbitmq), and
// TASKER_RABBITMQ_URL for the broker (default amqp://guest:guest@127.0.0.1:5672/); its broker queues
// are named tasker-example.<namespace>. Set TASKER_DEBUG=1 to see the engine's logs.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/go-logr/logr"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/exampledb"
	"github.com/tasker-systems/tasker/migrations"
	"github.com/tasker-systems/tasker/queue/rabbitmq"
	"github.com/tasker-systems/tasker/store/postgres"
)

const templateYAML = `
name: diamond
namespace_name: rabbit_example
version: 1.0.0
steps:
  - name: fetch
    handler: {callable: fetch}
  - name: enrich
    handler: {callable: enrich}
    dependencies: [fetch]
  - name: score
    handler: {callable: score}
    dependencies: [fetch]
    retry: {max_attempts: 3, backoff: exponential, backoff_base_ms: 100}
  - name: publish
    handler: {callable: publish}
    dependencies: [enrich, score]
`

// Schema is where the example keeps its tables; Prefix starts its broker queues' names.
const (
	Schema = "tasker_rabbitmq"
	Prefix = "tasker-example."
)

func main() {
	ctx := context.Background()
	pool, err := exampledb.Connect(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rabbitmq example:", err)
		os.Exit(1)
	}
	defer pool.Close()
	if err := run(ctx, pool, Schema, brokerURL(), Prefix, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "rabbitmq example:", err)
		os.Exit(1)
	}
}

func brokerURL() string {
	if u := os.Getenv("TASKER_RABBITMQ_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

func logger() logr.Logger {
	level := slog.LevelWarn
	if os.Getenv("TASKER_DEBUG") != "" {
		level = slog.LevelDebug - 1
	}
	return logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

func run(ctx context.Context, pool *pgxpool.Pool, schema, url, prefix string, out io.Writer) error {
	if err := migrations.Migrate(ctx, pool, migrations.WithSchema(schema)); err != nil {
		return err
	}
	q, err := rabbitmq.New(url, rabbitmq.WithPrefix(prefix), rabbitmq.WithPrefetch(8), rabbitmq.WithLogger(logger()))
	if err != nil {
		return fmt.Errorf("RabbitMQ at %s (start it with rabbitmq-server -detached): %w", url, err)
	}
	defer q.Close()
	engine, err := tasker.NewEngine(tasker.Config{
		Store:       postgres.New(pool, postgres.WithSchema(schema)),
		Queue:       q,
		Concurrency: 8,
		Logger:      logger(),
	})
	if err != nil {
		return err
	}
	tmpl, err := tasker.ParseTemplate([]byte(templateYAML))
	if err != nil {
		return err
	}
	if err := engine.Register(tmpl); err != nil {
		return err
	}
	engine.HandleFunc("fetch", func(ctx context.Context, s *tasker.Step) (any, error) {
		var in struct{ Order int }
		if err := s.Input(&in); err != nil {
			return nil, tasker.Permanent(err)
		}
		return map[string]int{"order": in.Order, "items": in.Order%3 + 1}, nil
	})
	engine.HandleFunc("enrich", func(ctx context.Context, s *tasker.Step) (any, error) {
		return "enriched", nil
	})
	engine.HandleFunc("score", func(ctx context.Context, s *tasker.Step) (any, error) {
		if s.Attempt == 1 {
			return nil, errors.New("scoring service warming up") // retried after its backoff
		}
		var fetched struct{ Items int }
		if err := s.DependencyResult("fetch", &fetched); err != nil {
			return nil, tasker.Permanent(err)
		}
		return fetched.Items * 10, nil
	})
	engine.HandleFunc("publish", func(ctx context.Context, s *tasker.Step) (any, error) {
		var score int
		if err := s.DependencyResult("score", &score); err != nil {
			return nil, tasker.Permanent(err)
		}
		return fmt.Sprintf("published with score %d", score), nil
	})

	workCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- engine.RunWorkers(workCtx) }()
	defer func() { stop(); <-done }()

	runID := time.Now().UnixNano()
	var tasks []*tasker.Task
	for i := range 10 {
		task, err := engine.CreateTask(ctx, tasker.TaskRequest{Namespace: "rabbit_example", Name: "diamond",
			Context: map[string]int{"Order": i}, IdempotencyKey: fmt.Sprintf("rabbit-%d-%d", runID, i)})
		if err != nil {
			return err
		}
		tasks = append(tasks, task)
	}
	// A task created in the program's own transaction: nothing is published before the commit;
	// the database announces the commit and the engine publishes the first step then.
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	inTx, err := engine.CreateTaskTx(ctx, tx, tasker.TaskRequest{Namespace: "rabbit_example", Name: "diamond",
		Context: map[string]int{"Order": 100}, IdempotencyKey: fmt.Sprintf("rabbit-%d-tx", runID)})
	if err != nil {
		_ = tx.Rollback(ctx)
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	tasks = append(tasks, inTx)

	waitCtx, cancelWait := context.WithTimeout(ctx, 60*time.Second)
	defer cancelWait()
	for _, task := range tasks {
		got, err := engine.WaitTask(waitCtx, task.ID)
		if err != nil {
			return err
		}
		score, _ := got.Step("score")
		var result string
		if err := got.Result("publish", &result); err != nil {
			return err
		}
		fmt.Fprintf(out, "task %s: %s in %s; score took %d attempts; %s\n", got.ID, got.State,
			got.CompletedAt.Sub(got.CreatedAt).Round(time.Millisecond), score.Attempts, result)
	}
	fmt.Fprintf(out, "messages went through RabbitMQ queue %s; states and results are in PostgreSQL schema %s\n",
		q.QueueName("rabbit_example"), schema)
	return nil
}

package tasker_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/migrations"
	"github.com/tasker-systems/tasker/queue/rabbitmq"
	"github.com/tasker-systems/tasker/store/memory"
	"github.com/tasker-systems/tasker/store/postgres"
)

const exampleOrderYAML = `
name: order
namespace_name: shop
version: 1.0.0
steps:
  - name: price
    handler: {callable: price}
  - name: tax
    handler: {callable: tax}
    dependencies: [price]
  - name: total
    handler: {callable: total}
    dependencies: [price, tax]
`

// runWorkers runs the engine's workers until the returned function is called, which waits for them
// to stop.
func runWorkers(engine *tasker.Engine) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- engine.RunWorkers(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			fmt.Println("RunWorkers:", err)
		}
	}
}

// A template, three handlers, a task: results flow from each step to its dependents. The memory
// engine needs no database; with PostgreSQL, only the engine's construction differs (see
// ExampleNewEngine).
func Example() {
	engine, err := tasker.NewEngine(tasker.Config{Store: memory.New()})
	if err != nil {
		panic(err)
	}
	tmpl, err := tasker.ParseTemplate([]byte(exampleOrderYAML))
	if err != nil {
		panic(err)
	}
	if err := engine.Register(tmpl); err != nil {
		panic(err)
	}
	engine.HandleFunc("price", func(ctx context.Context, s *tasker.Step) (any, error) {
		var order struct{ Quantity, UnitCents int }
		if err := s.Input(&order); err != nil {
			return nil, tasker.Permanent(err) // bad input: retrying cannot help
		}
		return order.Quantity * order.UnitCents, nil
	})
	engine.HandleFunc("tax", func(ctx context.Context, s *tasker.Step) (any, error) {
		var price int
		if err := s.DependencyResult("price", &price); err != nil {
			return nil, err
		}
		return price / 5, nil
	})
	engine.HandleFunc("total", func(ctx context.Context, s *tasker.Step) (any, error) {
		var price, tax int
		if err := s.DependencyResult("price", &price); err != nil {
			return nil, err
		}
		if err := s.DependencyResult("tax", &tax); err != nil {
			return nil, err
		}
		return price + tax, nil
	})
	stop := runWorkers(engine)
	defer stop()

	ctx := context.Background()
	task, err := engine.CreateTask(ctx, tasker.TaskRequest{Namespace: "shop", Name: "order",
		Context: map[string]int{"Quantity": 3, "UnitCents": 250}})
	if err != nil {
		panic(err)
	}
	task, err = engine.WaitTask(ctx, task.ID)
	if err != nil {
		panic(err)
	}
	var total int
	if err := task.Result("total", &total); err != nil {
		panic(err)
	}
	fmt.Println(task.State, total)
	// Output: complete 900
}

// A handler tells retryable failures (any error) from permanent ones (tasker.Permanent), and may
// say when to try again (tasker.RetryAfter); every failed attempt stays in the task's audit trail.
func ExampleRetryAfter() {
	engine, err := tasker.NewEngine(tasker.Config{Store: memory.New()})
	if err != nil {
		panic(err)
	}
	tmpl, err := tasker.ParseTemplate([]byte(`
name: sync
namespace_name: crm
version: 1.0.0
steps:
  - name: push
    handler: {callable: push}
    retry: {max_attempts: 3, backoff: exponential, backoff_base_ms: 10}
`))
	if err != nil {
		panic(err)
	}
	if err := engine.Register(tmpl); err != nil {
		panic(err)
	}
	engine.HandleFunc("push", func(ctx context.Context, s *tasker.Step) (any, error) {
		if s.Attempt == 1 {
			return nil, tasker.RetryAfter(50*time.Millisecond, errors.New("429 too many requests"))
		}
		return "pushed", nil
	})
	stop := runWorkers(engine)
	defer stop()

	ctx := context.Background()
	task, err := engine.CreateTask(ctx, tasker.TaskRequest{Namespace: "crm", Name: "sync"})
	if err != nil {
		panic(err)
	}
	task, err = engine.WaitTask(ctx, task.ID)
	if err != nil {
		panic(err)
	}
	push, _ := task.Step("push")
	fmt.Println(task.State, "after", push.Attempts, "attempts")
	trail, err := engine.Transitions(ctx, task.ID)
	if err != nil {
		panic(err)
	}
	for _, tr := range trail {
		if f := tr.Failure(); f != nil {
			fmt.Printf("attempt failed (%s): %s\n", f.Kind, f.Message)
		}
	}
	// Output:
	// complete after 2 attempts
	// attempt failed (retryable): retry after 50ms: 429 too many requests
}

// Cancelling a task cancels its unfinished steps, and the context of a handler running one of them,
// with the cause tasker.ErrTaskCancelled.
func ExampleEngine_CancelTask() {
	engine, err := tasker.NewEngine(tasker.Config{Store: memory.New()})
	if err != nil {
		panic(err)
	}
	tmpl, err := tasker.ParseTemplate([]byte(`
name: export
namespace_name: reports
version: 1.0.0
steps:
  - name: render
    handler: {callable: render}
`))
	if err != nil {
		panic(err)
	}
	if err := engine.Register(tmpl); err != nil {
		panic(err)
	}
	running, cause := make(chan struct{}), make(chan error, 1)
	engine.HandleFunc("render", func(ctx context.Context, s *tasker.Step) (any, error) {
		close(running)
		<-ctx.Done() // a long render, interrupted
		cause <- context.Cause(ctx)
		return nil, ctx.Err()
	})
	stop := runWorkers(engine)
	defer stop()

	ctx := context.Background()
	task, err := engine.CreateTask(ctx, tasker.TaskRequest{Namespace: "reports", Name: "export"})
	if err != nil {
		panic(err)
	}
	<-running
	if err := engine.CancelTask(ctx, task.ID, "the user closed the page"); err != nil {
		panic(err)
	}
	fmt.Println(errors.Is(<-cause, tasker.ErrTaskCancelled))
	task, err = engine.WaitTask(ctx, task.ID)
	if err != nil {
		panic(err)
	}
	fmt.Println(task.State)
	// Output:
	// true
	// cancelled
}

// On PostgreSQL: migrate the schema once, build the engine on a pool, and create tasks inside your
// own transactions if you like (the task exists only if your transaction commits). Needs a
// database, so it is compiled but not run.
func ExampleNewEngine() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	if err := migrations.Migrate(ctx, pool); err != nil {
		panic(err)
	}
	engine, err := tasker.NewEngine(tasker.Config{Store: postgres.New(pool)})
	if err != nil {
		panic(err)
	}
	tmpl, err := tasker.ParseTemplate([]byte(exampleOrderYAML))
	if err != nil {
		panic(err)
	}
	if err := engine.Register(tmpl); err != nil {
		panic(err)
	}
	// ... engine.HandleFunc for each callable, then go engine.RunWorkers(ctx) ...

	tx, err := pool.Begin(ctx)
	if err != nil {
		panic(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	// ... your own writes in tx ...
	if _, err := engine.CreateTaskTx(ctx, tx, tasker.TaskRequest{Namespace: "shop", Name: "order",
		Context: map[string]int{"Quantity": 3, "UnitCents": 250}}); err != nil {
		panic(err)
	}
	if err := tx.Commit(ctx); err != nil {
		panic(err)
	}
}

// With RabbitMQ delivering the step messages, PostgreSQL stays the source of truth: steps are
// published after each commit, and the elected engine re-publishes, from the database, any message
// lost between a commit and its publish. Needs PostgreSQL and RabbitMQ, so it is compiled but not
// run.
func ExampleConfig_rabbitMQ() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	q, err := rabbitmq.New("amqp://guest:guest@127.0.0.1:5672/", rabbitmq.WithPrefetch(16))
	if err != nil {
		panic(err)
	}
	defer q.Close()
	engine, err := tasker.NewEngine(tasker.Config{
		Store:          postgres.New(pool),
		Queue:          q,
		Concurrency:    16,
		RepublishAfter: 30 * time.Second, // how long a step may wait before its message is sent again
	})
	if err != nil {
		panic(err)
	}
	_ = engine // register templates and handlers, then RunWorkers
}

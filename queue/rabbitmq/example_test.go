package rabbitmq_test

import (
	"context"
	"log"
	"os"
	"os/signal"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/migrations"
	"github.com/tasker-systems/tasker/queue/rabbitmq"
	"github.com/tasker-systems/tasker/store/postgres"
)

// RabbitMQ carries the step messages while PostgreSQL stays the source of truth: the engine
// records each step as enqueued in its transaction, publishes the message after the commit, and
// publishes again from the database what a crash or a broker outage lost. Close the queue after
// RunWorkers has returned.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	dbURL := os.Getenv("TASKER_DATABASE_URL")
	if dbURL == "" {
		dbURL = "postgres://postgres@127.0.0.1:5432/postgres"
	}

	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	if err := migrations.Migrate(ctx, pool); err != nil {
		log.Fatal(err)
	}

	q, err := rabbitmq.New("amqp://guest:guest@127.0.0.1:5672/",
		rabbitmq.WithPrefix("billing."), // broker queues billing.<namespace>, ...
		rabbitmq.WithPrefetch(16),       // near the engine's Concurrency
		rabbitmq.WithQueueType(rabbitmq.QueueTypeQuorum),
		rabbitmq.WithPublishTimeout(10*time.Second),
		rabbitmq.WithConnectionName("billing-worker"),
	)
	if err != nil {
		log.Fatal(err) // the broker could not be reached; later drops are reconnected on their own
	}
	defer q.Close() // runs after RunWorkers has returned, when the engine no longer uses the queue

	engine, err := tasker.NewEngine(tasker.Config{
		Store:       postgres.New(pool),
		Queue:       q,
		Concurrency: 16,
		// How long a step may wait enqueued before the sweeper publishes its message again.
		RepublishAfter: 30 * time.Second,
	})
	if err != nil {
		log.Fatal(err)
	}

	// Register templates and handlers (engine.Register, engine.HandleFunc), then work steps
	// until the process is interrupted.
	if err := engine.RunWorkers(ctx); err != nil {
		log.Fatal(err)
	}
}

package pgqueue_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/migrations"
	"github.com/tasker-systems/tasker/queue/pgqueue"
	"github.com/tasker-systems/tasker/store/postgres"
)

// connect opens a pool on $TASKER_DATABASE_URL, else on the local server, and migrates schema:
// the queue's table, queue_messages, is part of tasker's migrations.
func connect(ctx context.Context, schema string) *pgxpool.Pool {
	url := os.Getenv("TASKER_DATABASE_URL")
	if url == "" {
		url = "postgres://postgres@127.0.0.1:5432/postgres"
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		log.Fatal(err)
	}
	if err := migrations.Migrate(ctx, pool, migrations.WithSchema(schema)); err != nil {
		log.Fatal(err)
	}
	return pool
}

// The PostgreSQL queue is the engine's default with store/postgres; configure it yourself to
// change its options. Store and queue must use the same pool and schema, so that a step's message
// is sent in the transaction that makes the step ready.
func Example() {
	ctx := context.Background()
	const schema = "billing_tasker"
	pool := connect(ctx, schema)
	defer pool.Close()

	engine, err := tasker.NewEngine(tasker.Config{
		Store: postgres.New(pool, postgres.WithSchema(schema)),
		Queue: pgqueue.New(pool,
			pgqueue.WithSchema(schema),
			// LISTEN/NOTIFY wakes the workers at once; the poll covers a lost notification.
			pgqueue.WithPollInterval(5*time.Second),
		),
	})
	if err != nil {
		log.Fatal(err)
	}
	_ = engine // register templates and handlers, then engine.RunWorkers(ctx)
}

// Used on its own, the queue sends inside the caller's transaction: the message exists only if
// the transaction commits. Read claims it for a visibility timeout; Ack removes it for good.
func ExampleQueue_SendTx() {
	ctx := context.Background()
	const schema = "tasker"
	pool := connect(ctx, schema)
	defer pool.Close()
	q := pgqueue.New(pool, pgqueue.WithSchema(schema))

	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		// ... the writes the message announces, in tx ...
		return q.SendTx(ctx, tx, "emails", [][]byte{[]byte(`{"to": "ada@example.com"}`)}, 0)
	})
	if err != nil {
		log.Fatal(err)
	}

	msgs, err := q.Read(ctx, "emails", 10, 30*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range msgs {
		fmt.Printf("message %d, read %d time(s): %s\n", m.ID, m.ReadCount, m.Payload)
		// Not acked within 30 seconds (a crashed worker), it would be delivered again.
		if err := q.Ack(ctx, "emails", m.ID); err != nil {
			log.Fatal(err)
		}
	}
}

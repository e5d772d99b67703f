package postgres_test

import (
	"context"
	"log"
	"os"
	"os/signal"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/migrations"
	"github.com/tasker-systems/tasker/store/postgres"
)

const invoiceYAML = `
name: invoice
namespace_name: billing
version: 1.0.0
steps:
  - name: send
    handler: {callable: send_invoice}
`

// A service keeps tasker's tables in a schema of its own ("billing_tasker" here), migrates it at
// start-up and hands the store to the engine. With no Config.Queue the engine uses the store's
// DefaultQueue, its own Queue on the same pool and schema (what queue/pgqueue builds), so that a
// step's message commits with the state change that made the step ready.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	url := os.Getenv("TASKER_DATABASE_URL")
	if url == "" {
		url = "postgres://postgres@127.0.0.1:5432/postgres"
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	const schema = "billing_tasker"
	if err := migrations.Migrate(ctx, pool, migrations.WithSchema(schema)); err != nil {
		log.Fatal(err)
	}
	engine, err := tasker.NewEngine(tasker.Config{
		Store: postgres.New(pool, postgres.WithSchema(schema)),
	})
	if err != nil {
		log.Fatal(err)
	}

	tmpl, err := tasker.ParseTemplate([]byte(invoiceYAML))
	if err != nil {
		log.Fatal(err)
	}
	if err := engine.Register(tmpl); err != nil {
		log.Fatal(err)
	}
	engine.HandleFunc("send_invoice", func(ctx context.Context, s *tasker.Step) (any, error) {
		return map[string]any{"sent": true}, nil
	})

	// Work steps until the process is interrupted; then in-flight handlers get
	// Config.ShutdownTimeout to finish, and RunWorkers returns nil.
	if err := engine.RunWorkers(ctx); err != nil {
		log.Fatal(err) // for example migrations.ErrNotMigrated, had the schema not been migrated
	}
}

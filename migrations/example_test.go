package migrations_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/tasker/migrations"
)

// databaseURL is the server the examples use: $TASKER_DATABASE_URL, else the local one.
func databaseURL() string {
	if u := os.Getenv("TASKER_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres"
}

// A service migrates at start-up, before it builds its engine. Every process may do so at once:
// they take turns on an advisory lock, and only what is missing is applied.
func ExampleMigrate() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, databaseURL())
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	if err := migrations.Migrate(ctx, pool, migrations.WithSchema("tasker")); err != nil {
		// A database migrated by a newer tasker is refused rather than downgraded.
		if errors.Is(err, migrations.ErrSchemaTooNew) {
			log.Fatalf("upgrade this service: %v", err)
		}
		log.Fatal(err)
	}
	fmt.Println("schema tasker is at version", migrations.Latest())
}

// A process that must not change the schema (it is migrated by a deploy job, by goose or by
// psql) checks it instead, and says in words what is wrong.
func ExampleCheckVersion() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, databaseURL())
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	err = migrations.CheckVersion(ctx, pool, migrations.WithSchema("tasker"))
	var verr *migrations.VersionError
	switch {
	case err == nil:
		fmt.Println("schema is up to date")
	case errors.Is(err, migrations.ErrNotMigrated) && errors.As(err, &verr):
		fmt.Printf("schema %s is at version %d, this build needs %d: run the migrations\n",
			verr.Schema, verr.Database, verr.Library)
	default:
		log.Fatal(err)
	}
}

// All gives the SQL with the schema name filled in, for tools that apply it themselves.
func ExampleAll() {
	all, err := migrations.All("billing_tasker")
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range all[:1] {
		fmt.Printf("%04d_%s.sql\n", m.Version, m.Name) // m.SQL is what to run
	}
	fmt.Println("one per version:", len(all) == migrations.Latest())

	_, err = migrations.All("Billing-Tasker")
	fmt.Println(errors.Is(err, migrations.ErrInvalidSchemaName))
	// Output:
	// 0001_init.sql
	// one per version: true
	// true
}

// ExportGoose writes the migrations as goose files, one per version.
func ExampleExportGoose() {
	dir, err := os.MkdirTemp("", "tasker-goose")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	if err := migrations.ExportGoose(dir, "tasker"); err != nil {
		log.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.sql"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(filepath.Base(files[0]), len(files) == migrations.Latest())
	// Output:
	// 00001_tasker_init.sql true
}

// Command quickstart runs Tasker Core's linear workflow on PostgreSQL: four steps that each square
// the previous result. With {"even_number": 6} the last step returns 6^16 = 2821109907456.
//
//	go run ./examples/quickstart
//
// It reads TASKER_DATABASE_URL or DATABASE_URL (default: the local server,
// postgres://postgres@127.0.0.1:5432/postgres) and migrates its own schema (tasker_quickstart).
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
	"github.com/tasker-systems/tasker/store/memory"
	"github.com/tasker-systems/tasker/store/postgres"
)

const templateYAML = `
name: square_chain
namespace_name: quickstart
version: 1.0.0
description: "input -> square -> square -> square -> square"
input_schema:
  type: object
  required: [even_number]
  properties:
    even_number: {type: integer, minimum: 2, maximum: 100}
steps:
  - name: square_1
    handler: {callable: square}
  - name: square_2
    handler: {callable: square}
    dependencies: [square_1]
  - name: square_3
    handler: {callable: square}
    dependencies: [square_2]
  - name: square_4
    handler: {callable: square}
    dependencies: [square_3]
`

// Schema is where the quick start keeps its tables.
const Schema = "tasker_quickstart"

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer) error {
	pool, err := exampledb.Connect(ctx)
	if err != nil {
		// No database: run the same workflow on the in-memory backend, and say so.
		fmt.Fprintf(os.Stderr, "note: %v\nnote: running on the in-memory backend instead (nothing is kept).\n\n", err)
		engine, err := tasker.NewEngine(tasker.Config{Store: memory.New(), Logger: logger()})
		if err != nil {
			return err
		}
		return runOn(ctx, engine, out)
	}
	defer pool.Close()
	return runWith(ctx, pool, Schema, out)
}

func logger() logr.Logger {
	level := slog.LevelWarn
	if os.Getenv("TASKER_DEBUG") != "" {
		level = slog.LevelDebug - 1
	}
	return logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// runWith migrates schema, runs one task and prints its steps and result.
func runWith(ctx context.Context, pool *pgxpool.Pool, schema string, out io.Writer) error {
	if err := migrations.Migrate(ctx, pool, migrations.WithSchema(schema)); err != nil {
		return err
	}
	engine, err := tasker.NewEngine(tasker.Config{
		Store:  postgres.New(pool, postgres.WithSchema(schema)),
		Logger: logger(),
	})
	if err != nil {
		return err
	}
	return runOn(ctx, engine, out)
}

// runOn registers the workflow on engine, runs one task and prints its steps and result.
func runOn(ctx context.Context, engine *tasker.Engine, out io.Writer) error {
	tmpl, err := tasker.ParseTemplate([]byte(templateYAML))
	if err != nil {
		return err
	}
	if err := engine.Register(tmpl); err != nil {
		return err
	}
	// One handler serves all four steps: square the parent's result, or the input for the first.
	engine.HandleFunc("square", func(ctx context.Context, s *tasker.Step) (any, error) {
		var n int64
		if len(s.DependencyNames()) == 0 {
			var in struct {
				EvenNumber int64 `json:"even_number"`
			}
			if err := s.Input(&in); err != nil {
				return nil, tasker.Permanent(err)
			}
			n = in.EvenNumber
		} else {
			prev := fmt.Sprintf("square_%d", len(s.DependencyNames()))
			if err := s.DependencyResult(prev, &n); err != nil {
				return nil, tasker.Permanent(err)
			}
		}
		return n * n, nil
	})

	workCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- engine.RunWorkers(workCtx) }()
	defer func() { stop(); <-done }()

	task, err := engine.CreateTask(ctx, tasker.TaskRequest{
		Namespace: "quickstart", Name: "square_chain",
		Context: map[string]any{"even_number": 6},
		// Each run is a new task: without a key, the identical context would be a duplicate.
		IdempotencyKey: fmt.Sprintf("quickstart-%d", time.Now().UnixNano()),
	})
	if err != nil {
		return err
	}
	waitCtx, cancelWait := context.WithTimeout(ctx, 30*time.Second)
	defer cancelWait()
	task, err = engine.WaitTask(waitCtx, task.ID)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "task %s: %s in %s\n", task.ID, task.State, task.CompletedAt.Sub(task.CreatedAt).Round(time.Microsecond))
	for _, s := range task.Steps {
		fmt.Fprintf(out, "  %-9s %-9s attempts=%d result=%s\n", s.Name, s.State, s.Attempts, s.Result)
	}
	if task.State != tasker.TaskComplete {
		return errors.New("the task did not complete")
	}
	var result int64
	if err := task.Result("square_4", &result); err != nil {
		return err
	}
	fmt.Fprintf(out, "result: %d\n", result)
	return nil
}

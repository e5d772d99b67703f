// Command csvbatch processes a CSV file of 1,000 order lines in batches of 200 by parallel
// workers, and aggregates their results:
//
//	             ┌─▶ sum_rows_001 (rows 1-200)    ─┐
//	count_rows ◆─┼─▶ sum_rows_002 (rows 201-400)  ─┼─▶ aggregate_totals
//	             ├─▶ ...                           │
//	             └─▶ sum_rows_005 (rows 801-1000) ─┘
//
// count_rows is a batchable step: it counts the file's data rows and returns five cursors of 200
// rows. tasker creates one worker per cursor from the batch_worker step sum_rows and runs at most
// three of them at once (batch_config.parallelism). Each worker reads its own rows from the file
// and sums their quantities and values. The worker of batch 003 meets a read error halfway
// through its first attempt: it saves a checkpoint (the next row and its partial sums) and fails;
// its second attempt loads the checkpoint and resumes at the next row instead of starting over.
// aggregate_totals is a deferred_convergence step that waits for every worker and adds up their
// results.
//
// The program writes its own CSV file (deterministic content, see row) into a temporary
// directory and removes it afterwards.
//
//	go run ./examples/csvbatch
//
// It reads TASKER_DATABASE_URL or DATABASE_URL (default: the local server,
// postgres://postgres@127.0.0.1:5432/postgres) and migrates its own schema (tasker_csvbatch).
// Set TASKER_DEBUG=1 to see the engine's logs.
package main

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/exampledb"
	"github.com/tasker-systems/tasker/migrations"
	"github.com/tasker-systems/tasker/store/postgres"
)

// templateYAML is the workflow in Tasker Core's template layout.
const templateYAML = `
name: csv_order_totals
namespace_name: csvbatch
version: 1.0.0
description: "sum a CSV file's order lines in parallel batches"
input_schema:
  type: object
  required: [csv_path]
  properties:
    csv_path: {type: string, minLength: 1}
steps:
  - name: count_rows
    type: batchable
    handler:
      callable: count_rows
      initialization:
        batch_size: 200

  - name: sum_rows
    type: batch_worker
    dependencies: [count_rows]
    handler:
      callable: sum_rows
      initialization:
        fail_once_in_batch: "003"
    retry:
      max_attempts: 3
      backoff: exponential
      backoff_base_ms: 100
    batch_config:
      batch_size: 200
      parallelism: 3
      cursor_field: row
      worker_template: sum_rows
      failure_strategy: fail_fast

  - name: aggregate_totals
    type: deferred_convergence
    dependencies: [sum_rows]
    handler: {callable: aggregate_totals}
`

// Schema is where the example keeps its tables.
const Schema = "tasker_csvbatch"

// Rows is the number of data rows the program writes.
const Rows = 1000

var regions = []string{"north", "east", "south", "west"}

// row returns data row n (1-based) of the file: an order line whose quantity and unit price are
// fixed functions of n.
func row(n int) []string {
	quantity := n*37%23 + 1
	priceCents := 99 + n*7919%5000
	return []string{strconv.Itoa(n), fmt.Sprintf("SKU-%04d", n), regions[n%len(regions)],
		strconv.Itoa(quantity), strconv.Itoa(priceCents)}
}

// writeCSV writes the header and rows 1..n.
func writeCSV(w io.Writer, n int) error {
	cw := csv.NewWriter(w)
	if err := cw.Write([]string{"row", "sku", "region", "quantity", "unit_price_cents"}); err != nil {
		return err
	}
	for i := 1; i <= n; i++ {
		if err := cw.Write(row(i)); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// progress is a worker's running state, and its checkpoint.
type progress struct {
	Next       int64 `json:"next_row"`
	Rows       int64 `json:"rows"`
	Quantity   int64 `json:"quantity"`
	ValueCents int64 `json:"value_cents"`
}

// WorkerResult is a worker's result.
type WorkerResult struct {
	BatchID     string `json:"batch_id"`
	FirstRow    int64  `json:"first_row"`
	LastRow     int64  `json:"last_row"`
	Rows        int64  `json:"rows"`
	Quantity    int64  `json:"quantity"`
	ValueCents  int64  `json:"value_cents"`
	Attempt     int    `json:"attempt"`
	ResumedFrom int64  `json:"resumed_from,omitempty"` // the row a later attempt resumed at
}

// Totals is aggregate_totals' result.
type Totals struct {
	Rows       int64 `json:"rows"`
	Quantity   int64 `json:"quantity"`
	ValueCents int64 `json:"value_cents"`
	Workers    int   `json:"workers"`
}

// Result is what a run produced.
type Result struct {
	Task    *tasker.Task
	Workers []WorkerResult // by batch
	Totals  Totals
	// PeakWorkers is the most workers that ran at once.
	PeakWorkers int
}

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "csvbatch:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer) error {
	pool, err := exampledb.Connect(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	_, err = runWith(ctx, pool, Schema, out)
	return err
}

type input struct {
	CSVPath string `json:"csv_path"`
}

// concurrency tracks how many workers run at once.
type concurrency struct {
	mu        sync.Mutex
	cur, peak int
}

func (c *concurrency) enter() func() {
	c.mu.Lock()
	c.cur++
	c.peak = max(c.peak, c.cur)
	c.mu.Unlock()
	return func() { c.mu.Lock(); c.cur--; c.mu.Unlock() }
}

// register binds the template's handlers.
func register(engine *tasker.Engine, running *concurrency) {
	// The batchable step: count the data rows, ask for one worker per 200.
	engine.HandleFunc("count_rows", func(_ context.Context, s *tasker.Step) (any, error) {
		var in input
		if err := s.Input(&in); err != nil {
			return nil, tasker.Permanent(err)
		}
		var cfg struct {
			BatchSize int64 `json:"batch_size"`
		}
		if err := s.DecodeConfig(&cfg); err != nil || cfg.BatchSize <= 0 {
			return nil, tasker.Permanent(fmt.Errorf("handler.initialization.batch_size must be positive (%v)", err))
		}
		f, err := os.Open(in.CSVPath)
		if err != nil {
			return nil, tasker.Permanent(err)
		}
		defer f.Close()
		r := csv.NewReader(f)
		if _, err := r.Read(); err != nil { // the header
			return nil, tasker.Permanent(fmt.Errorf("%s: no header: %w", in.CSVPath, err))
		}
		var rows int64
		for {
			if _, err := r.Read(); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return nil, tasker.Permanent(err)
			}
			rows++
		}
		if rows == 0 {
			return tasker.NoBatches(), nil
		}
		// Cursors are data row numbers, from 1: [1, 201), [201, 401), ...
		return tasker.BatchOutcome{WorkerTemplate: "sum_rows", Cursors: tasker.Cursors(1, rows, cfg.BatchSize), TotalItems: rows}, nil
	})

	// The workers: read rows [Start, End) of the file and sum them, resuming from a checkpoint.
	engine.HandleFunc("sum_rows", func(ctx context.Context, s *tasker.Step) (any, error) {
		defer running.enter()()
		batch, ok := s.Batch()
		if !ok {
			return nil, tasker.Permanent(errors.New("sum_rows runs only as a batch worker"))
		}
		var in input
		if err := s.Input(&in); err != nil {
			return nil, tasker.Permanent(err)
		}
		failIn, _ := s.Config()["fail_once_in_batch"].(string)

		p := progress{Next: batch.Cursor.Start}
		resumed, err := s.LoadCheckpoint(&p)
		if err != nil {
			return nil, tasker.Permanent(err)
		}
		res := WorkerResult{BatchID: batch.Cursor.BatchID, FirstRow: batch.Cursor.Start, LastRow: batch.Cursor.End - 1, Attempt: s.Attempt}
		if resumed {
			res.ResumedFrom = p.Next
		}

		f, err := os.Open(in.CSVPath)
		if err != nil {
			return nil, err // perhaps the disk is back next time
		}
		defer f.Close()
		r := csv.NewReader(f)
		r.ReuseRecord = true
		if _, err := r.Read(); err != nil {
			return nil, tasker.Permanent(err)
		}
		half := batch.Cursor.Start + (batch.Cursor.End-batch.Cursor.Start)/2
		for n := int64(1); n < batch.Cursor.End; n++ {
			rec, err := r.Read()
			if err != nil {
				return nil, tasker.Permanent(fmt.Errorf("row %d: %w", n, err))
			}
			if n < p.Next {
				continue // before this batch, or done by an earlier attempt
			}
			if got, _ := strconv.ParseInt(rec[0], 10, 64); got != n {
				return nil, tasker.Permanent(fmt.Errorf("row %d holds row number %q", n, rec[0]))
			}
			q, err1 := strconv.ParseInt(rec[3], 10, 64)
			price, err2 := strconv.ParseInt(rec[4], 10, 64)
			if err := errors.Join(err1, err2); err != nil {
				return nil, tasker.Permanent(fmt.Errorf("row %d: %w", n, err))
			}
			p.Rows++
			p.Quantity += q
			p.ValueCents += q * price
			p.Next = n + 1
			if p.Next == half && s.Attempt == 1 && batch.Cursor.BatchID == failIn {
				// Half the batch is done: save where we are, then fail like a dropped connection.
				if err := s.Checkpoint(ctx, p); err != nil {
					return nil, err
				}
				return nil, fmt.Errorf("read error after row %d (simulated)", n)
			}
		}
		time.Sleep(50 * time.Millisecond) // slow enough for the workers to overlap
		res.Rows, res.Quantity, res.ValueCents = p.Rows, p.Quantity, p.ValueCents
		return res, nil
	})

	// The convergence: add up every worker's result and check that no row was lost.
	engine.HandleFunc("aggregate_totals", func(_ context.Context, s *tasker.Step) (any, error) {
		var counted struct {
			Outcome struct {
				TotalItems int64 `json:"total_items"`
			} `json:"batch_processing_outcome"`
		}
		if err := s.DependencyResult("count_rows", &counted); err != nil {
			return nil, tasker.Permanent(err)
		}
		var t Totals
		for name := range s.DependencyResults() {
			if !strings.HasPrefix(name, "sum_rows_") {
				continue
			}
			var w WorkerResult
			if err := s.DependencyResult(name, &w); err != nil {
				return nil, tasker.Permanent(err)
			}
			t.Rows += w.Rows
			t.Quantity += w.Quantity
			t.ValueCents += w.ValueCents
			t.Workers++
		}
		if t.Rows != counted.Outcome.TotalItems {
			return nil, tasker.Permanent(fmt.Errorf("the workers summed %d rows; count_rows counted %d", t.Rows, counted.Outcome.TotalItems))
		}
		return t, nil
	})
}

// runWith migrates schema, writes the CSV file, runs one task over it and prints each worker's
// result and the total.
func runWith(ctx context.Context, pool *pgxpool.Pool, schema string, out io.Writer) (*Result, error) {
	if err := migrations.Migrate(ctx, pool, migrations.WithSchema(schema)); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "csvbatch-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "orders.csv")
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := errors.Join(writeCSV(f, Rows), f.Close()); err != nil {
		return nil, err
	}

	level := slog.LevelWarn
	if os.Getenv("TASKER_DEBUG") != "" {
		level = slog.LevelDebug - 1
	}
	logger := logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	engine, err := tasker.NewEngine(tasker.Config{Store: postgres.New(pool, postgres.WithSchema(schema)), Logger: logger})
	if err != nil {
		return nil, err
	}
	tmpl, err := tasker.ParseTemplate([]byte(templateYAML))
	if err != nil {
		return nil, err
	}
	if err := engine.Register(tmpl); err != nil {
		return nil, err
	}
	var running concurrency
	register(engine, &running)

	workCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- engine.RunWorkers(workCtx) }()
	defer func() { stop(); <-done }()

	// The path is new on every run, so each run is a new task.
	task, err := engine.CreateTask(ctx, tasker.TaskRequest{Namespace: "csvbatch", Name: "csv_order_totals", Context: input{CSVPath: path}})
	if err != nil {
		return nil, err
	}
	waitCtx, cancelWait := context.WithTimeout(ctx, 60*time.Second)
	defer cancelWait()
	task, err = engine.WaitTask(waitCtx, task.ID)
	if err != nil {
		return nil, err
	}
	res := &Result{Task: task}
	running.mu.Lock()
	res.PeakWorkers = running.peak
	running.mu.Unlock()

	fmt.Fprintf(out, "%s: %d rows in batches of 200, at most 3 workers at once\n", path, Rows)
	fmt.Fprintf(out, "task %s: %s\n", task.ID, task.State)
	if task.State != tasker.TaskComplete {
		for _, s := range task.Steps {
			fmt.Fprintf(out, "  %-16s %-10s attempts=%d", s.Name, s.State, s.Attempts)
			if s.LastError != nil {
				fmt.Fprintf(out, " error=%q", s.LastError.Message)
			}
			fmt.Fprintln(out)
		}
		return res, errors.New("the task did not complete")
	}
	for _, s := range task.Steps {
		if !strings.HasPrefix(s.Name, "sum_rows_") {
			continue
		}
		var w WorkerResult
		if err := task.Result(s.Name, &w); err != nil {
			return res, err
		}
		res.Workers = append(res.Workers, w)
	}
	sort.Slice(res.Workers, func(i, j int) bool { return res.Workers[i].BatchID < res.Workers[j].BatchID })
	fmt.Fprintf(out, "  %-13s %-9s %5s %9s %14s  %s\n", "worker", "rows", "count", "quantity", "value", "attempts")
	for _, w := range res.Workers {
		note := ""
		if w.ResumedFrom > 0 {
			note = fmt.Sprintf(" (resumed at row %d", w.ResumedFrom)
			if s, ok := task.Step("sum_rows_" + w.BatchID); ok && s.LastError != nil {
				note += " after: " + s.LastError.Message
			}
			note += ")"
		}
		fmt.Fprintf(out, "  sum_rows_%-4s %4d-%-4d %5d %9d %14s  %d%s\n", w.BatchID, w.FirstRow, w.LastRow, w.Rows,
			w.Quantity, dollars(w.ValueCents), w.Attempt, note)
	}
	if err := task.Result("aggregate_totals", &res.Totals); err != nil {
		return res, err
	}
	fmt.Fprintf(out, "total: %d rows from %d workers, quantity %d, value %s\n", res.Totals.Rows, res.Totals.Workers,
		res.Totals.Quantity, dollars(res.Totals.ValueCents))
	fmt.Fprintf(out, "at most %d workers ran at once\n", res.PeakWorkers)
	return res, nil
}

// dollars formats cents as $1,234.56.
func dollars(cents int64) string {
	s := strconv.FormatInt(cents/100, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return fmt.Sprintf("$%s.%02d", s, cents%100)
}

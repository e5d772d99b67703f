// Command observability runs a diamond workflow with OpenTelemetry: the engine's traces go to
// stdout (OTel's stdout exporter, one JSON object per span) and its tasker.* metrics to a
// Prometheus registry (OTel's Prometheus exporter), printed at the end or served at /metrics.
//
//	cd examples/observability && go run .                     # PostgreSQL, or memory when none answers
//	cd examples/observability && go run . -memory             # the in-memory store
//	cd examples/observability && go run . -listen 127.0.0.1:9464  # then curl 127.0.0.1:9464/metrics
//
// It is a module of its own so that the OTel SDK and the exporters stay out of the library's
// go.mod: tasker itself depends only on OTel's API. It reads TASKER_DATABASE_URL (default
// postgres://postgres@127.0.0.1:5432/postgres) and migrates its own schema
// (tasker_observability).
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/jackc/pgx/v5/pgxpool"
	promclient "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/migrations"
	"github.com/tasker-systems/tasker/store/memory"
	"github.com/tasker-systems/tasker/store/postgres"
)

const templateYAML = `
name: order
namespace_name: observability
version: 1.0.0
steps:
  - {name: validate, handler: {callable: work}}
  - {name: reserve, handler: {callable: work}, dependencies: [validate]}
  - {name: charge, handler: {callable: work}, dependencies: [validate], retry: {max_attempts: 3, backoff: none}}
  - {name: ship, handler: {callable: work}, dependencies: [reserve, charge]}
`

// Schema is where the example keeps its tables on PostgreSQL.
const Schema = "tasker_observability"

// options are the command's flags.
type options struct {
	memory bool   // the in-memory store, without PostgreSQL
	listen string // serve /metrics here until interrupted ("": print the metrics and exit)
	tasks  int    // tasks to run
}

func main() {
	var o options
	flag.BoolVar(&o.memory, "memory", false, "run on the in-memory store (no PostgreSQL)")
	flag.StringVar(&o.listen, "listen", "", "serve Prometheus metrics at this address (/metrics) until interrupted")
	flag.IntVar(&o.tasks, "tasks", 2, "how many tasks to run")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, o, os.Stdout, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "observability:", err)
		os.Exit(1)
	}
}

// run sets up the providers, runs o.tasks tasks, writes their spans to traces and the tasker
// metrics to out (or serves them at o.listen).
func run(ctx context.Context, o options, traces, out io.Writer) error {
	res := resource.NewSchemaless(semconv.ServiceName("observability-example"))
	spanExp, err := stdouttrace.New(stdouttrace.WithWriter(traces))
	if err != nil {
		return err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spanExp), sdktrace.WithResource(res))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	reg := promclient.NewRegistry()
	metricExp, err := prometheus.New(prometheus.WithRegisterer(reg))
	if err != nil {
		return err
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(metricExp), sdkmetric.WithResource(res))
	defer func() { _ = mp.Shutdown(context.Background()) }()

	cfg := tasker.Config{Logger: logger(), TracerProvider: tp, MeterProvider: mp, Lease: 5 * time.Second}
	if !o.memory {
		pool, err := connect(ctx)
		if err != nil {
			fmt.Fprintf(os.Stderr, "note: %v\nnote: running on the in-memory store instead (-memory).\n", err)
		} else {
			defer pool.Close()
			if err := migrations.Migrate(ctx, pool, migrations.WithSchema(Schema)); err != nil {
				return err
			}
			cfg.Store = postgres.New(pool, postgres.WithSchema(Schema))
		}
	}
	if cfg.Store == nil {
		cfg.Store = memory.New()
	}
	engine, err := tasker.NewEngine(cfg)
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
	var charges atomic.Int64
	engine.HandleFunc("work", func(ctx context.Context, s *tasker.Step) (any, error) {
		// The handler's own span nests under its attempt's: its ctx carries the attempt's span.
		_, span := trace.SpanFromContext(ctx).TracerProvider().Tracer("example").Start(ctx, "work "+s.Name)
		defer span.End()
		time.Sleep(2 * time.Millisecond)
		if s.Name == "charge" && charges.Add(1) == 1 {
			return nil, errors.New("payment gateway timed out") // the first charge is retried
		}
		return s.Name + " done", nil
	})
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- engine.RunWorkers(wctx) }()
	stopped := false
	stopWorkers := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		return <-done
	}
	defer func() { _ = stopWorkers() }()

	tracer := tp.Tracer("example")
	for i := range o.tasks {
		// The caller's span: the task's trace starts here, and every step attempt joins it.
		cctx, span := tracer.Start(ctx, "checkout")
		task, err := engine.CreateTask(cctx, tasker.TaskRequest{Namespace: "observability", Name: "order",
			Context: map[string]any{"order": i}})
		span.End()
		if err != nil {
			return err
		}
		wait, wcancel := context.WithTimeout(ctx, 30*time.Second)
		task, err = engine.WaitTask(wait, task.ID)
		wcancel()
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "task %s: %s (trace %s)\n", task.ID, task.State, span.SpanContext().TraceID())
	}
	if err := stopWorkers(); err != nil { // the spans and metrics of the last steps are in
		return err
	}

	handler := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	if o.listen != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", handler)
		srv := &http.Server{Addr: o.listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			<-ctx.Done()
			_ = srv.Shutdown(context.Background())
		}()
		fmt.Fprintf(os.Stderr, "serving metrics at http://%s/metrics until interrupted\n", o.listen)
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
	return printMetrics(handler, out)
}

// printMetrics writes the tasker_* series of a Prometheus scrape to out.
func printMetrics(h http.Handler, out io.Writer) error {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		return fmt.Errorf("scrape: %d %s", rec.Code, rec.Body.String())
	}
	fmt.Fprintln(out, "# the tasker metrics, as Prometheus scrapes them:")
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "tasker_") || strings.HasPrefix(line, "# HELP tasker_") || strings.HasPrefix(line, "# TYPE tasker_") {
			fmt.Fprintln(out, line)
		}
	}
	return sc.Err()
}

// connect opens a pool on TASKER_DATABASE_URL (or the local server) and checks that it answers.
func connect(ctx context.Context) (*pgxpool.Pool, error) {
	url := os.Getenv("TASKER_DATABASE_URL")
	if url == "" {
		url = "postgres://postgres@127.0.0.1:5432/postgres"
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("no PostgreSQL at %s: %w", url, err)
	}
	return pool, nil
}

// logger logs Info and above to stderr as text: the step lines carry task, step_id and trace_id.
func logger() logr.Logger {
	return logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

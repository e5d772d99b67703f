package tasker_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tasker-systems/tasker"
)

// BenchmarkLinear4 measures a 4-step linear task (the quick start's shape) from CreateTask to
// WaitTask's return, one task at a time; p50 and p99 are reported.
func BenchmarkLinear4(b *testing.B) {
	bd := setupB(b)
	bd.register(b, `
name: linear4
namespace_name: bench
version: 1.0.0
steps:
  - {name: s1, handler: {callable: add_one}}
  - {name: s2, handler: {callable: add_one}, dependencies: [s1]}
  - {name: s3, handler: {callable: add_one}, dependencies: [s2]}
  - {name: s4, handler: {callable: add_one}, dependencies: [s3]}
`)
	bd.engine.HandleFunc("add_one", addOne)
	bd.start(b)
	ctx := context.Background()
	durations := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		task, err := bd.engine.CreateTask(ctx, tasker.TaskRequest{Namespace: "bench", Name: "linear4", Context: map[string]any{"i": i, "run": start.UnixNano()}})
		require.NoError(b, err)
		task, err = bd.engine.WaitTask(ctx, task.ID)
		require.NoError(b, err)
		require.Equal(b, tasker.TaskComplete, task.State)
		durations = append(durations, time.Since(start))
	}
	b.StopTimer()
	reportPercentiles(b, durations, "task")
}

// BenchmarkHandoff measures step-to-step handoff on a 50-step chain: from the moment a handler
// returns to the moment the next step's handler starts (outcome commit, notification, read, claim).
func BenchmarkHandoff(b *testing.B) { benchHandoff(b) }

// BenchmarkChainWithOpenTelemetry is BenchmarkHandoff with the OTel SDK's providers set (spans
// recorded and dropped, metrics kept by a manual reader): what the instrumentation costs when on.
func BenchmarkChainWithOpenTelemetry(b *testing.B) {
	tp := sdktrace.NewTracerProvider()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	benchHandoff(b, func(c *tasker.Config) { c.TracerProvider, c.MeterProvider = tp, mp })
}

func benchHandoff(b *testing.B, opts ...setupOpt) {
	const chain = 50
	bd := setupB(b, opts...)
	var sb strings.Builder
	sb.WriteString("name: chain\nnamespace_name: bench\nversion: 1.0.0\nsteps:\n  - {name: s00, handler: {callable: mark}}\n")
	for i := 1; i < chain; i++ {
		fmt.Fprintf(&sb, "  - {name: s%02d, handler: {callable: mark}, dependencies: [s%02d]}\n", i, i-1)
	}
	bd.register(b, sb.String())
	var mu sync.Mutex
	var lastReturn time.Time
	var gaps []time.Duration
	bd.engine.HandleFunc("mark", func(_ context.Context, s *tasker.Step) (any, error) {
		mu.Lock()
		defer mu.Unlock()
		if s.Name != "s00" {
			gaps = append(gaps, time.Since(lastReturn))
		}
		lastReturn = time.Now()
		return nil, nil
	})
	bd.start(b)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		task, err := bd.engine.CreateTask(ctx, tasker.TaskRequest{Namespace: "bench", Name: "chain", Context: map[string]any{"i": i, "t": time.Now().UnixNano()}})
		require.NoError(b, err)
		task, err = bd.engine.WaitTask(ctx, task.ID)
		require.NoError(b, err)
		require.Equal(b, tasker.TaskComplete, task.State)
	}
	b.StopTimer()
	mu.Lock()
	defer mu.Unlock()
	reportPercentiles(b, gaps, "handoff")
}

func reportPercentiles(b *testing.B, ds []time.Duration, name string) {
	if len(ds) == 0 {
		return
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	pct := func(p float64) time.Duration { return ds[min(len(ds)-1, int(p*float64(len(ds))))] }
	b.ReportMetric(float64(pct(0.50).Microseconds())/1000, name+"-p50-ms")
	b.ReportMetric(float64(pct(0.99).Microseconds())/1000, name+"-p99-ms")
	b.ReportMetric(float64(len(ds)), name+"-samples")
}

// BenchmarkLimitedClaims measures what global limits cost the claim of one-step tasks on
// PostgreSQL (one engine, 10 workers, a backlog of b.N tasks over 10 customers): with no limit,
// with a namespace-wide limit (batched claims under the lock) and with a limit per customer (one
// claim per lock), each limit high enough never to hold a step back.
func BenchmarkLimitedClaims(b *testing.B) {
	for _, c := range []struct {
		name   string
		limits []tasker.Limit
	}{
		{"none", nil},
		{"namespace", []tasker.Limit{{Namespace: "benchlim", Concurrency: 1000}}},
		{"per_customer", []tasker.Limit{{Namespace: "benchlim", ContextKey: "customer", Concurrency: 1000}}},
	} {
		b.Run(c.name, func(b *testing.B) {
			bd := setupB(b, func(cfg *tasker.Config) { cfg.Concurrency, cfg.Limits = 10, c.limits })
			bd.register(b, "name: one\nnamespace_name: benchlim\nversion: 1.0.0\nsteps:\n  - {name: s, handler: {callable: noop}}\n")
			bd.engine.HandleFunc("noop", func(context.Context, *tasker.Step) (any, error) { return nil, nil })
			ctx := context.Background()
			ids := make([]uuid.UUID, b.N)
			for i := range ids {
				task, err := bd.engine.CreateTask(ctx, tasker.TaskRequest{Namespace: "benchlim", Name: "one",
					Context: map[string]any{"i": i, "customer": i % 10}})
				require.NoError(b, err)
				ids[i] = task.ID
			}
			b.ResetTimer()
			start := time.Now()
			bd.start(b)
			for _, id := range ids {
				task, err := bd.engine.WaitTask(ctx, id)
				require.NoError(b, err)
				require.Equal(b, tasker.TaskComplete, task.State)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "tasks/s")
		})
	}
}

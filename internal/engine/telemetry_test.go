package engine

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/queue"
	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
	"github.com/tasker-systems/tasker/store/memory"
	"github.com/tasker-systems/tasker/store/postgres"
)

func TestTraceParentRoundTrip(t *testing.T) {
	t.Parallel()
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled})
	tp := FormatTraceParent(sc)
	require.Equal(t, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", tp)
	got, ok := ParseTraceParent(tp)
	require.True(t, ok)
	require.Equal(t, tid, got.TraceID())
	require.Equal(t, sid, got.SpanID())
	require.True(t, got.IsSampled())
	require.True(t, got.IsRemote())
	require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", TraceID(tp))

	unsampled, ok := ParseTraceParent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
	require.True(t, ok)
	require.False(t, unsampled.IsSampled())
	require.Empty(t, FormatTraceParent(trace.SpanContext{}))
	for _, bad := range []string{"", "garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e473x-00f067aa0ba902b7-01"} {
		_, ok := ParseTraceParent(bad)
		require.False(t, ok, bad)
		ctx := RemoteParent(context.Background(), bad)
		require.False(t, trace.SpanContextFromContext(ctx).IsValid(), bad)
	}
}

// TestTelemetryWithoutProvidersAllocatesNothing: with no providers, or OTel's no-op ones, the
// instrumentation of the hot path allocates nothing (no span started, no attribute built).
func TestTelemetryWithoutProvidersAllocatesNothing(t *testing.T) {
	task := &store.Task{ID: uuid.New(), Namespace: "ns", Name: "t", Version: "1.0.0",
		TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
	st := &store.Step{ID: uuid.New(), Name: "a", Attempts: 1}
	now := time.Now()
	for name, tel := range map[string]*Telemetry{
		"nil":  NewTelemetry(nil, nil, logr.Discard()),
		"noop": NewTelemetry(tracenoop.NewTracerProvider(), metricnoop.NewMeterProvider(), logr.Discard()),
	} {
		require.False(t, tel.Tracing(), name)
		require.False(t, tel.Metrics(), name)
		allocs := testing.AllocsPerRun(100, func() {
			tel.recordHandoff("ns", now, now)
			span := tel.startAttempt(task, st, claimTimes{start: now, end: now, sent: now})
			run := span.child(SpanRun)
			_ = handlerContext(context.Background(), run)
			EndSpan(run, nil)
			commit := span.child(SpanCommit)
			EndSpan(commit, nil)
			span.retry(time.Second)
			span.end("complete", nil)
			tel.recordAttempt("ns", "complete", time.Millisecond)
			tel.taskSettled("ns", statemachine.TaskComplete)
			tel.recordPublish("ns", time.Millisecond)
		})
		require.Zero(t, allocs, name)
	}
}

// TestRescueSpanJoinsTheTaskTrace: a rescued step is a tasker.step.rescue span in its task's
// trace (the stored traceparent), and the rescue is counted, on memory and on PostgreSQL.
func TestRescueSpanJoinsTheTaskTrace(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"memory", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			var st store.Store = memory.New()
			if backend == "postgres" {
				db := testdb.New(t)
				st = postgres.New(db.Pool, postgres.WithSchema(db.Schema))
			}
			spans := tracetest.NewSpanRecorder()
			reader := sdkmetric.NewManualReader()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
			q := st.(interface{ DefaultQueue() queue.Queue }).DefaultQueue()
			e := New(Config{Store: st, Queue: q, WorkerID: "test-worker", Concurrency: 4, Lease: time.Minute,
				ShutdownTimeout: time.Second, MaxPayloadBytes: 1 << 20, LeaderTTL: time.Second, RescueInterval: time.Second,
				RepublishAfter: time.Second, MaxDecisionSteps: 10, TracerProvider: tp, MeterProvider: mp})
			w := newWorkers(e)
			w.dbctx = ctx

			parent := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
			taskID, stepID := uuid.Must(uuid.NewV7()), uuid.Must(uuid.NewV7())
			_, err := e.store.CreateTask(ctx, nil, store.CreateTaskParams{
				TaskID: taskID, Namespace: "ns", Name: "one", Version: "1.0.0", Context: json.RawMessage(`{}`),
				IdentityHash: taskID.String(), Enqueuer: e.NewEnqueuer(), OwnedQueue: e.OwnsQueue(), TraceParent: parent,
				Template: &store.RegisterTemplateParams{Namespace: "ns", Name: "one", Version: "1.0.0",
					Definition: json.RawMessage(`{"name":"one"}`), Checksum: "test"},
				Steps: []store.NewStep{{StepID: stepID, Name: "a", TemplateStep: "a", Handler: "h", Type: "standard",
					MaxAttempts: 2, Retryable: true, Backoff: "exponential", BackoffBase: 10 * time.Millisecond,
					MaxBackoff: time.Second, Timeout: time.Minute}},
			})
			require.NoError(t, err)
			got, err := e.store.GetTask(ctx, taskID)
			require.NoError(t, err)
			require.Equal(t, parent, got.TraceParent, "the traceparent is stored with the task")
			_, err = e.store.ClaimStep(ctx, store.ClaimStepParams{StepID: stepID, WorkerID: "vanished", Lease: 20 * time.Millisecond})
			require.NoError(t, err)
			time.Sleep(50 * time.Millisecond)
			require.NoError(t, w.rescue(ctx))

			ended := spans.Ended()
			require.Len(t, ended, 1)
			s := ended[0]
			require.Equal(t, SpanRescue, s.Name())
			require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", s.SpanContext().TraceID().String())
			require.Equal(t, "00f067aa0ba902b7", s.Parent().SpanID().String())
			attrs := map[string]string{}
			for _, kv := range s.Attributes() {
				attrs[string(kv.Key)] = kv.Value.String()
			}
			require.Equal(t, "retry", attrs["tasker.outcome"])
			require.Equal(t, "vanished", attrs["tasker.worker"])
			require.Equal(t, "a", attrs["tasker.step"])

			var rm metricdata.ResourceMetrics
			require.NoError(t, reader.Collect(ctx, &rm))
			var rescues int64
			for _, sm := range rm.ScopeMetrics {
				for _, m := range sm.Metrics {
					if sum, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == "tasker.lease.rescues" {
						for _, dp := range sum.DataPoints {
							rescues += dp.Value
						}
					}
				}
			}
			require.Equal(t, int64(1), rescues)
		})
	}
}

package tasker_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/store/postgres"
)

// The diamond of the observability test: each step has its own callable, and the two engines
// register two each, so that the task runs across both (a step whose handler is not registered
// here is left to the other engine). b fails its first attempt.
const observedDiamondYAML = `
name: observed
namespace_name: otel
version: 1.0.0
steps:
  - {name: a, handler: {callable: obs_a}}
  - {name: b, handler: {callable: obs_b}, dependencies: [a], retry: {max_attempts: 3, backoff: none}}
  - {name: c, handler: {callable: obs_c}, dependencies: [a]}
  - {name: d, handler: {callable: obs_d}, dependencies: [b, c]}
`

// observedEngine is one engine of the test with its own SDK providers, as a process would have.
type observedEngine struct {
	b      *bundle
	spans  *tracetest.SpanRecorder
	reader *sdkmetric.ManualReader
}

// TestObservabilityTraceAcrossTwoEngines runs a diamond task across two engines (on each backend), each with its
// own OpenTelemetry SDK (in-memory span recorder, manual metric reader): the creation span is a
// child of the caller's span, every step attempt, in either engine, is a child of the creation
// span in the task's one trace, with its claim, run and commit as children; a handler's own span
// nests under its run; the metrics counted the attempts (one a retry), the handler durations and
// the task.
func TestObservabilityTraceAcrossTwoEngines(t *testing.T) {
	t.Parallel()
	for _, be := range backends {
		t.Run(be, func(t *testing.T) {
			t.Parallel()
			testObservability(t, be)
		})
	}
}

func testObservability(t *testing.T, backend string) {
	var failedOnce atomic.Bool
	handler := func(ctx context.Context, s *tasker.Step) (any, error) {
		// The handler's own span, from its context: it nests under the attempt's run span.
		_, sp := trace.SpanFromContext(ctx).TracerProvider().Tracer("handler").Start(ctx, "handler."+s.Name)
		defer sp.End()
		time.Sleep(time.Millisecond)
		if s.Name == "b" && failedOnce.CompareAndSwap(false, true) {
			return nil, errors.New("first attempt fails")
		}
		return addOne(ctx, s)
	}
	newObserved := func(base *bundle, callables ...string) *observedEngine {
		o := &observedEngine{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(o.spans))
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(o.reader))
		t.Cleanup(func() {
			_ = tp.Shutdown(context.Background())
			_ = mp.Shutdown(context.Background())
		})
		withOTel := func(c *tasker.Config) { c.TracerProvider, c.MeterProvider = tp, mp }
		if base == nil {
			o.b = setupOn(t, backend, withOTel)
		} else {
			o.b = base.sibling(t, withOTel, func(c *tasker.Config) {
				switch backend {
				case backendPostgres, backendRabbitMQ: // as another process: a store and a broker connection of its own
					c.Store = postgres.New(base.db.Pool, postgres.WithSchema(base.db.Schema))
					if rq, ok := c.Queue.(*testRabbitMQ); ok {
						c.Queue = rq.peer(t)
					}
				}
			})
		}
		o.b.register(t, observedDiamondYAML)
		for _, c := range callables {
			o.b.engine.HandleFunc(c, handler)
		}
		return o
	}
	one := newObserved(nil, "obs_a", "obs_c")
	two := newObserved(one.b, "obs_b", "obs_d")
	one.b.start(t)
	two.b.start(t)

	// The caller's own span, from a tracer of the first engine's provider.
	callerTP := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(one.spans))
	ctx, caller := callerTP.Tracer("caller").Start(context.Background(), "caller.request")
	task, err := one.b.engine.CreateTask(ctx, tasker.TaskRequest{Namespace: "otel", Name: "observed", Context: map[string]any{"secret": "s3cr3t"}})
	require.NoError(t, err)
	caller.End()
	got := one.b.wait(t, task.ID)
	require.Equal(t, tasker.TaskComplete, got.State)
	d, _ := got.Step("d")
	require.Equal(t, int64(3), jsonInt(t, d.Result))

	// 5 attempts (b twice), each with its claim, run and commit, and a handler span under each run.
	var spans []sdktrace.ReadOnlySpan
	require.Eventually(t, func() bool {
		spans = append(one.spans.Ended(), two.spans.Ended()...)
		return count(spans, "tasker.step.attempt") == 5 && count(spans, "tasker.step.commit") >= 5
	}, 10*time.Second, 10*time.Millisecond, "attempt spans: %d", count(spans, "tasker.step.attempt"))
	byID := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		byID[s.SpanContext().SpanID()] = s
	}
	traceID := caller.SpanContext().TraceID()
	var create sdktrace.ReadOnlySpan
	for _, s := range spans {
		require.Equal(t, traceID, s.SpanContext().TraceID(), "span %s is in the task's trace", s.Name())
		for _, kv := range s.Attributes() {
			require.NotContains(t, kv.Value.String(), "s3cr3t", "span %s carries no task context", s.Name())
		}
		if s.Name() == "tasker.task.create" {
			create = s
		}
	}
	require.NotNil(t, create)
	require.Equal(t, caller.SpanContext().SpanID(), create.Parent().SpanID(), "the creation span is the caller's child")

	attempts := map[string][]string{} // step -> outcomes, by attempt
	engines := map[string]bool{}      // step -> which engine ran it
	for i, rec := range []*tracetest.SpanRecorder{one.spans, two.spans} {
		for _, s := range rec.Ended() {
			if s.Name() == "tasker.step.attempt" {
				engines[attr(s, "tasker.step")+string(rune('1'+i))] = true
			}
		}
	}
	require.Equal(t, map[string]bool{"a1": true, "c1": true, "b2": true, "d2": true}, engines, "the steps ran across both engines")
	for _, s := range spans {
		parent, hasParent := byID[s.Parent().SpanID()]
		switch s.Name() {
		case "tasker.step.attempt":
			require.Equal(t, create.SpanContext().SpanID(), s.Parent().SpanID(), "an attempt is the creation span's child")
			require.True(t, s.Parent().IsRemote(), "the attempt's parent comes from the stored traceparent")
			require.Equal(t, "otel", attr(s, "tasker.namespace"))
			require.Equal(t, "observed", attr(s, "tasker.template"))
			require.Equal(t, "1.0.0", attr(s, "tasker.version"))
			step := attr(s, "tasker.step")
			attempts[step] = append(attempts[step], attr(s, "tasker.attempt")+":"+attr(s, "tasker.outcome"))
		case "tasker.step.claim", "tasker.step.run", "tasker.step.commit", "tasker.step.retry":
			require.True(t, hasParent, "%s has a recorded parent", s.Name())
			require.Equal(t, "tasker.step.attempt", parent.Name(), "%s is an attempt's child", s.Name())
		case "handler.a", "handler.b", "handler.c", "handler.d":
			require.True(t, hasParent, "%s has a recorded parent", s.Name())
			require.Equal(t, "tasker.step.run", parent.Name(), "a handler's span nests under its run")
			grand := byID[parent.Parent().SpanID()]
			require.Equal(t, "tasker.step.attempt", grand.Name())
			require.Equal(t, s.Name(), "handler."+attr(grand, "tasker.step"))
		}
	}
	for _, step := range []string{"a", "c", "d"} {
		require.Equal(t, []string{"1:complete"}, attempts[step], step)
	}
	require.ElementsMatch(t, []string{"1:retry", "2:complete"}, attempts["b"])
	require.Equal(t, 1, count(spans, "tasker.step.retry"))
	require.Equal(t, 5, count(spans, "tasker.step.run"))
	require.Equal(t, 5, count(spans, "handler.a")+count(spans, "handler.b")+count(spans, "handler.c")+count(spans, "handler.d"))
	require.GreaterOrEqual(t, count(spans, "tasker.step.claim"), 5)

	// The metrics of both engines together.
	sums := map[string]int64{}
	histCounts := map[string]uint64{}
	require.Eventually(t, func() bool {
		sums, histCounts = map[string]int64{}, map[string]uint64{}
		for _, o := range []*observedEngine{one, two} {
			var rm metricdata.ResourceMetrics
			require.NoError(t, o.reader.Collect(context.Background(), &rm))
			for _, sm := range rm.ScopeMetrics {
				for _, m := range sm.Metrics {
					switch data := m.Data.(type) {
					case metricdata.Sum[int64]:
						for _, dp := range data.DataPoints {
							key := m.Name
							if v, ok := dp.Attributes.Value("tasker.outcome"); ok {
								key += "/" + v.AsString()
							}
							sums[key] += dp.Value
						}
					case metricdata.Histogram[float64]:
						for _, dp := range data.DataPoints {
							key := m.Name
							if v, ok := dp.Attributes.Value("tasker.outcome"); ok {
								key += "/" + v.AsString()
							}
							histCounts[key] += dp.Count
							require.Greater(t, dp.Sum, 0.0, m.Name)
						}
					}
				}
			}
		}
		return sums["tasker.tasks.completed"] == 1
	}, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, int64(1), sums["tasker.tasks.created"])
	require.Equal(t, int64(4), sums["tasker.step.attempts/complete"])
	require.Equal(t, int64(1), sums["tasker.step.attempts/retry"])
	require.Equal(t, uint64(4), histCounts["tasker.step.handler.duration/complete"])
	require.Equal(t, uint64(1), histCounts["tasker.step.handler.duration/retry"])
	require.GreaterOrEqual(t, histCounts["tasker.step.handoff.latency"], uint64(3), "handoff latency of the claimed steps")
	if backend == backendRabbitMQ {
		require.Positive(t, histCounts["tasker.queue.publish.lag"], "publishing after the commits is measured")
	} else {
		require.Zero(t, histCounts["tasker.queue.publish.lag"], "a queue in the store publishes in the commit")
	}
}

func count(spans []sdktrace.ReadOnlySpan, name string) int {
	n := 0
	for _, s := range spans {
		if s.Name() == name {
			n++
		}
	}
	return n
}

func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

package engine

import (
	"context"
	"time"

	"github.com/go-logr/logr"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/tasker-systems/tasker/queue"
	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

// InstrumentationName names the tracer and the meter of the engine.
const InstrumentationName = "github.com/tasker-systems/tasker"

// Span names. One trace per task: the creation span is its root (or a child of the creating
// call's own span), and each step attempt, in any process, is a child of the creation span; the
// claim, the handler's run and the outcome's commit are children of the attempt, a retry's
// scheduling too; a lease rescue is a child of the creation span.
const (
	SpanCreate  = "tasker.task.create"
	SpanAttempt = "tasker.step.attempt"
	SpanClaim   = "tasker.step.claim"
	SpanRun     = "tasker.step.run"
	SpanCommit  = "tasker.step.commit"
	SpanRetry   = "tasker.step.retry"
	SpanRescue  = "tasker.step.rescue"
)

// Attribute keys of spans and metrics. Spans carry the task's and the step's ids besides; metrics
// carry no per-task attribute. Neither ever carries a task's context or a step's result.
const (
	AttrNamespace = attribute.Key("tasker.namespace")
	AttrTemplate  = attribute.Key("tasker.template")
	AttrVersion   = attribute.Key("tasker.version")
	AttrStep      = attribute.Key("tasker.step")
	AttrAttempt   = attribute.Key("tasker.attempt")
	AttrOutcome   = attribute.Key("tasker.outcome")
	AttrTaskID    = attribute.Key("tasker.task.id")
	AttrStepID    = attribute.Key("tasker.step.id")
	AttrRetryIn   = attribute.Key("tasker.retry.delay_ms")
	AttrWorker    = attribute.Key("tasker.worker")
	AttrReason    = attribute.Key("tasker.reason")
	AttrAction    = attribute.Key("tasker.action")
	AttrEvent     = attribute.Key("tasker.event")
	// AttrDestination is OTel's messaging attribute for the queue's name (the namespace), and
	// AttrOperation its operation type: "send" for a creation, "process" for an attempt.
	AttrDestination = attribute.Key("messaging.destination.name")
	AttrOperation   = attribute.Key("messaging.operation.type")
)

// Telemetry is the engine's OpenTelemetry instrumentation: a tracer and the tasker.* instruments.
// With no providers (or OTel's no-op ones) it records nothing and costs nothing: every method
// returns at once, before building an attribute.
type Telemetry struct {
	tracer  trace.Tracer
	tracing bool // spans are recorded
	metrics bool // instruments are recorded

	tasksCreated, tasksCompleted, tasksFailed, tasksCancelled metric.Int64Counter
	attempts, rescues, leaderChanges, staleMoved, deadLetters metric.Int64Counter
	staleReported                                             metric.Int64Gauge
	handlerDuration, handoffLatency, publishLag               metric.Float64Histogram
}

// NewTelemetry returns the instrumentation for the given providers; nil ones mean no-ops.
func NewTelemetry(tp trace.TracerProvider, mp metric.MeterProvider, log logr.Logger) *Telemetry {
	t := &Telemetry{}
	if tp != nil {
		if _, noop := tp.(tracenoop.TracerProvider); !noop {
			t.tracer, t.tracing = tp.Tracer(InstrumentationName), true
		}
	}
	if mp == nil {
		mp = metricnoop.NewMeterProvider()
	} else if _, noop := mp.(metricnoop.MeterProvider); !noop {
		t.metrics = true
	}
	m := mp.Meter(InstrumentationName)
	var errs []error
	counter := func(name, desc string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithDescription(desc), metric.WithUnit("{count}"))
		errs = append(errs, err)
		return c
	}
	seconds := func(name, desc string, bounds ...float64) metric.Float64Histogram {
		h, err := m.Float64Histogram(name, metric.WithDescription(desc), metric.WithUnit("s"),
			metric.WithExplicitBucketBoundaries(bounds...))
		errs = append(errs, err)
		return h
	}
	t.tasksCreated = counter("tasker.tasks.created", "Tasks created (duplicates not counted).")
	t.tasksCompleted = counter("tasker.tasks.completed", "Tasks that reached complete.")
	t.tasksFailed = counter("tasker.tasks.failed", "Tasks that came to rest in error or blocked by failures.")
	t.tasksCancelled = counter("tasker.tasks.cancelled", "Tasks cancelled.")
	t.attempts = counter("tasker.step.attempts", "Step attempts whose outcome was recorded, by outcome (complete, retry, error).")
	t.rescues = counter("tasker.lease.rescues", "Steps whose lease expired and that the rescuer settled, by outcome.")
	t.leaderChanges = counter("tasker.leader.changes", "Maintenance leadership acquired or lost by this engine (tasker.event).")
	t.staleMoved = counter("tasker.tasks.stale", "Stale tasks the staleness detector moved, by action (dead_letter, error).")
	t.deadLetters = counter("tasker.dlq.entries", "Dead-letter entries written, by reason.")
	g, err := m.Int64Gauge("tasker.tasks.stale.reported", metric.WithUnit("{task}"),
		metric.WithDescription("Stale tasks the last staleness pass found (report-only ones included)."))
	errs = append(errs, err)
	t.staleReported = g
	short := []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
	t.handlerDuration = seconds("tasker.step.handler.duration", "How long step handlers ran, by outcome.", short...)
	t.handoffLatency = seconds("tasker.step.handoff.latency", "From a step's message being sent (the step ready) to its claim.", short...)
	t.publishLag = seconds("tasker.queue.publish.lag", "From a commit to its messages published, with a queue outside the database (RabbitMQ).", short...)
	for _, err := range errs {
		if err != nil {
			log.Error(err, "create an OpenTelemetry instrument; it records nothing")
		}
	}
	return t
}

// Tracing reports whether spans are recorded.
func (t *Telemetry) Tracing() bool { return t.tracing }

// Metrics reports whether instruments are recorded.
func (t *Telemetry) Metrics() bool { return t.metrics }

// StartCreate starts the creation span of a task, a child of ctx's span, and returns the
// traceparent to store with the task ("" when not tracing). End it with EndSpan.
func (t *Telemetry) StartCreate(ctx context.Context, ns, name, version string) (context.Context, trace.Span, string) {
	if !t.tracing {
		return ctx, nil, ""
	}
	ctx, span := t.tracer.Start(ctx, SpanCreate, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(AttrNamespace.String(ns), AttrTemplate.String(name), AttrVersion.String(version),
			AttrDestination.String(ns), AttrOperation.String("send")))
	return ctx, span, FormatTraceParent(span.SpanContext())
}

// EndSpan ends span (nil: not tracing) with err as its status.
func EndSpan(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, ErrorText(err))
	}
	span.End()
}

// TaskCreated counts a created task.
func (t *Telemetry) TaskCreated(ctx context.Context, ns string) {
	if t.metrics {
		t.tasksCreated.Add(ctx, 1, metric.WithAttributes(AttrNamespace.String(ns)))
	}
}

// TaskCancelled counts a cancelled task.
func (t *Telemetry) TaskCancelled(ctx context.Context) {
	if t.metrics {
		t.tasksCancelled.Add(ctx, 1)
	}
}

// taskSettled counts a task an outcome brought to rest, by the state it rests in.
func (t *Telemetry) taskSettled(ns string, state statemachine.TaskState) {
	if !t.metrics {
		return
	}
	ctx := context.Background()
	switch state {
	case statemachine.TaskComplete:
		t.tasksCompleted.Add(ctx, 1, metric.WithAttributes(AttrNamespace.String(ns)))
	case statemachine.TaskError, statemachine.TaskBlockedByFailures:
		t.tasksFailed.Add(ctx, 1, metric.WithAttributes(AttrNamespace.String(ns)))
	}
}

// attemptSpan is the trace of one step attempt: nil fields when not tracing.
type attemptSpan struct {
	t    *Telemetry
	ctx  context.Context // carries span
	span trace.Span
}

// startAttempt starts the span of a step attempt, a child of the task's creation span (its
// stored traceparent), beginning at the claim's start; the claim is recorded as its first child.
func (t *Telemetry) startAttempt(task *store.Task, st *store.Step, cl claimTimes) attemptSpan {
	if !t.tracing {
		return attemptSpan{}
	}
	start := cl.start
	if start.IsZero() {
		start = time.Now()
	}
	ctx, span := t.tracer.Start(RemoteParent(context.Background(), task.TraceParent), SpanAttempt,
		trace.WithSpanKind(trace.SpanKindConsumer), trace.WithTimestamp(start),
		trace.WithAttributes(AttrNamespace.String(task.Namespace), AttrTemplate.String(task.Name),
			AttrVersion.String(task.Version), AttrStep.String(st.Name), AttrAttempt.Int(st.Attempts),
			AttrTaskID.String(task.ID.String()), AttrStepID.String(st.ID.String()),
			AttrDestination.String(task.Namespace), AttrOperation.String("process")))
	if !cl.start.IsZero() {
		_, c := t.tracer.Start(ctx, SpanClaim, trace.WithTimestamp(cl.start))
		c.End(trace.WithTimestamp(cl.end))
	}
	return attemptSpan{t: t, ctx: ctx, span: span}
}

// child starts a child span of the attempt; nil when not tracing.
func (a attemptSpan) child(name string) trace.Span {
	if a.span == nil {
		return nil
	}
	_, s := a.t.tracer.Start(a.ctx, name)
	return s
}

// handlerContext returns ctx carrying span (the handler's run), so that a handler's own spans
// nest under it.
func handlerContext(ctx context.Context, span trace.Span) context.Context {
	if span == nil {
		return ctx
	}
	return trace.ContextWithSpan(ctx, span)
}

// retry records a retry's scheduling under the attempt.
func (a attemptSpan) retry(delay time.Duration) {
	if a.span == nil {
		return
	}
	_, s := a.t.tracer.Start(a.ctx, SpanRetry, trace.WithAttributes(AttrRetryIn.Int64(delay.Milliseconds())))
	s.End()
}

// end ends the attempt span with its outcome; a failed attempt (retry, error) has an error status.
func (a attemptSpan) end(outcome string, err error) {
	if a.span == nil {
		return
	}
	a.span.SetAttributes(AttrOutcome.String(outcome))
	if err != nil {
		a.span.SetStatus(codes.Error, ErrorText(err))
	}
	a.span.End()
}

// claimTimes is when a step's claim began and ended, and when its message was sent (the step
// ready); zero when not known.
type claimTimes struct{ start, end, sent time.Time }

// recordAttempt counts an attempt by outcome, with its handler's duration.
func (t *Telemetry) recordAttempt(ns, outcome string, handler time.Duration) {
	if !t.metrics {
		return
	}
	ctx := context.Background()
	attrs := metric.WithAttributes(AttrNamespace.String(ns), AttrOutcome.String(outcome))
	t.attempts.Add(ctx, 1, attrs)
	t.handlerDuration.Record(ctx, handler.Seconds(), attrs)
}

// recordHandoff records how long a step waited from its message being sent to its claim.
func (t *Telemetry) recordHandoff(ns string, sent, claimed time.Time) {
	if !t.metrics || sent.IsZero() || claimed.IsZero() {
		return
	}
	t.handoffLatency.Record(context.Background(), max(claimed.Sub(sent), 0).Seconds(),
		metric.WithAttributes(AttrNamespace.String(ns)))
}

// recordRescue counts a rescued step and records its span in the task's trace.
func (t *Telemetry) recordRescue(ex *store.ExpiredStep, outcome string, start time.Time, err error) {
	if t.metrics && err == nil {
		t.rescues.Add(context.Background(), 1, metric.WithAttributes(AttrNamespace.String(ex.Namespace), AttrOutcome.String(outcome)))
	}
	if !t.tracing {
		return
	}
	_, span := t.tracer.Start(RemoteParent(context.Background(), ex.TraceParent), SpanRescue, trace.WithTimestamp(start),
		trace.WithAttributes(AttrNamespace.String(ex.Namespace), AttrTemplate.String(ex.TaskName), AttrVersion.String(ex.Version),
			AttrStep.String(ex.Name), AttrAttempt.Int(ex.Attempts), AttrTaskID.String(ex.TaskID.String()),
			AttrStepID.String(ex.ID.String()), AttrWorker.String(ex.LeaseOwner), AttrOutcome.String(outcome)))
	EndSpan(span, err)
}

// leaderChange counts this engine's leadership acquired or lost.
func (t *Telemetry) leaderChange(event string) {
	if t.metrics {
		t.leaderChanges.Add(context.Background(), 1, metric.WithAttributes(AttrEvent.String(event)))
	}
}

// deadLettered counts a dead-letter entry written.
func (t *Telemetry) deadLettered(ctx context.Context, ns string, reason store.DeadLetterReason) {
	if t.metrics {
		t.deadLetters.Add(ctx, 1, metric.WithAttributes(AttrNamespace.String(ns), AttrReason.String(string(reason))))
	}
}

// staleMovedBy counts a stale task moved by action.
func (t *Telemetry) staleMovedBy(ctx context.Context, ns string, action StalenessAction) {
	if t.metrics {
		t.staleMoved.Add(ctx, 1, metric.WithAttributes(AttrNamespace.String(ns), AttrAction.String(string(action))))
	}
}

// stalePass records how many stale tasks the last pass found.
func (t *Telemetry) stalePass(ctx context.Context, n int) {
	if t.metrics {
		t.staleReported.Record(ctx, int64(n))
	}
}

// recordPublish records how long publishing took after a commit.
func (t *Telemetry) recordPublish(ns string, took time.Duration) {
	if t.metrics {
		t.publishLag.Record(context.Background(), took.Seconds(), metric.WithAttributes(AttrNamespace.String(ns)))
	}
}

// observeQueues registers the per-namespace queue gauges (depth, oldest message's age), read
// through the queue's Inspector at each collection: one Depths call per collection, never on
// the hot path.
func (t *Telemetry) observeQueues(mp metric.MeterProvider, q queue.Queue, namespaces func() []string, log logr.Logger) {
	in, ok := q.(queue.Inspector)
	if !t.metrics || !ok {
		return
	}
	m := mp.Meter(InstrumentationName)
	depth, err1 := m.Int64ObservableGauge("tasker.queue.depth", metric.WithUnit("{message}"),
		metric.WithDescription("Messages ready in a namespace's queue."))
	age, err2 := m.Float64ObservableGauge("tasker.queue.oldest_age", metric.WithUnit("s"),
		metric.WithDescription("Age of the oldest ready message of a namespace's queue (absent when the queue cannot tell)."))
	if err1 != nil || err2 != nil {
		log.Error(firstErr(err1, err2), "create the queue gauges; they record nothing")
		return
	}
	_, err := m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		nss := namespaces()
		if len(nss) == 0 {
			return nil
		}
		ds, err := in.Depths(ctx, nss)
		if err != nil {
			return err
		}
		for _, d := range ds {
			attrs := metric.WithAttributes(AttrNamespace.String(d.Queue), AttrDestination.String(d.Queue))
			o.ObserveInt64(depth, int64(d.Ready), attrs)
			if d.AgeKnown {
				o.ObserveFloat64(age, d.OldestAge.Seconds(), attrs)
			}
		}
		return nil
	}, depth, age)
	if err != nil {
		log.Error(err, "register the queue gauges; they record nothing")
	}
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

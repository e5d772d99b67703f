// Package tasker is an embeddable workflow engine: DAGs of steps, run by Go handlers, with
// PostgreSQL as the source of truth.
//
// A service registers templates (DAGs of steps) and handlers, creates tasks from its own code —
// inside its own transactions if it likes — and runs workers beside its HTTP server. Any number of
// processes can share one database; a killed process loses nothing.
//
//	engine, _ := tasker.NewEngine(tasker.Config{Store: postgres.New(pool)})
//	engine.Register(tmpl)
//	engine.Handle("validate_order", tasker.HandlerFunc(validate))
//	go engine.RunWorkers(ctx)
//	task, _ := engine.CreateTask(ctx, tasker.TaskRequest{Namespace: "shop", Name: "order", Context: order})
//	task, _ = engine.WaitTask(ctx, task.ID)
//
// Delivery is at least once: a handler may run again after a crash, so handlers should be
// idempotent; a step's state still moves exactly once per attempt.
package tasker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/uuid"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/tasker-systems/tasker/internal/engine"
	"github.com/tasker-systems/tasker/internal/pgname"
	"github.com/tasker-systems/tasker/queue"
	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

// Defaults for Config's zero values.
const (
	// ConcurrencyDefault is how many handlers one engine runs at once.
	ConcurrencyDefault = 16
	// LeaseDefault is how long a claimed step (and its queue message) stays with its worker
	// without a heartbeat; heartbeats renew it every third of it.
	LeaseDefault = 30 * time.Second
	// ShutdownTimeoutDefault is how long RunWorkers lets in-flight handlers finish after its
	// context ends before it cancels them and gives their steps back to the queue.
	ShutdownTimeoutDefault = 10 * time.Second
	// MaxPayloadBytesDefault bounds a task context and a step result (1 MiB).
	MaxPayloadBytesDefault = 1 << 20
	// ReadBatchDefault is how many messages a worker reads at once, at most, as its free handler
	// slots (Concurrency) allow.
	ReadBatchDefault = engine.ReadBatchDefault
	// LeaderTTLDefault is how long the maintenance leader's election holds without renewal: when
	// the leader dies, another engine takes over within about this long.
	LeaderTTLDefault = 6 * time.Second
	// RepublishAfterDefault is how long a step may wait enqueued, with a queue outside the
	// database, before its message is published again.
	RepublishAfterDefault = 30 * time.Second
	// MaxDecisionStepsDefault caps the steps one decision may create.
	MaxDecisionStepsDefault = 100
	// RescueIntervalDefault is how often the leader looks for steps whose lease expired; it is
	// lowered to Lease/2 when the lease is shorter.
	RescueIntervalDefault = 5 * time.Second
)

// Store is the persistence the engine runs on; store/postgres provides it.
type Store = store.Store

// Config configures an Engine. Its zero values mean the documented defaults; only Store is
// required. NewEngine refuses negative values and durations below their minimum (LeaseMin and
// the like) with a *ConfigError.
type Config struct {
	// Store is the source of truth, such as postgres.New(pool).
	Store Store
	// Queue delivers step messages; nil means the store's own queue (for store/postgres, the
	// PostgreSQL queue on the same pool and schema).
	Queue queue.Queue
	// Logger receives the engine's logs; the zero value discards them. With slog:
	// logr.FromSlogHandler(slog.Default().Handler()).
	Logger logr.Logger
	// WorkerID names this engine in leases and transitions; "" means host-pid-random. It is
	// valid UTF-8 without NUL, at most MaxNameBytes bytes.
	WorkerID string
	// Concurrency caps the handlers this engine runs at once; 0 means ConcurrencyDefault.
	Concurrency int
	// NamespaceConcurrency caps the handlers of one namespace; a missing entry means no cap
	// beyond Concurrency.
	NamespaceConcurrency map[string]int
	// Namespaces limits the namespaces this engine's workers take steps from; nil means every
	// namespace with a registered template, including those registered while RunWorkers runs.
	// With Namespaces set, a template registered in another namespace is not served by this
	// engine (Register logs it): other engines must serve it.
	Namespaces []string
	// Lease is the visibility timeout of a claimed step; 0 means LeaseDefault, and the minimum is
	// LeaseMin.
	Lease time.Duration
	// ShutdownTimeout is the soft deadline for in-flight handlers when RunWorkers stops; 0 means
	// ShutdownTimeoutDefault.
	ShutdownTimeout time.Duration
	// MaxPayloadBytes bounds task contexts and step results; 0 means MaxPayloadBytesDefault.
	MaxPayloadBytes int
	// Environment selects the templates' per-environment overrides (such as "test"); "" applies
	// none.
	Environment string
	// LeaderTTL is the maintenance leader's election lease; 0 means LeaderTTLDefault, and the
	// minimum is LeaderTTLMin.
	LeaderTTL time.Duration
	// RescueInterval is how often the elected engine rescues steps whose lease expired; 0 means
	// RescueIntervalDefault (or Lease/2 when smaller), and the minimum is RescueIntervalMin.
	RescueInterval time.Duration
	// MaxDecisionSteps caps the steps one decision may create; 0 means MaxDecisionStepsDefault.
	MaxDecisionSteps int
	// RepublishAfter is, with a queue outside the database (queue.Publisher), how long a step may
	// wait enqueued before the sweeper publishes its message again; 0 means RepublishAfterDefault,
	// and the minimum is RepublishAfterMin.
	// The sweeper skips a namespace whose queue reports messages waiting (queue.ReadyCounter, which
	// queue/rabbitmq implements): a backlog delays a lost message's re-publish until it drains, or
	// for 10 × RepublishAfter at most.
	RepublishAfter time.Duration
	// DisableMaintenance keeps this engine out of the maintenance election (it still works steps).
	DisableMaintenance bool
	// Staleness configures the staleness detector the elected engine runs (see StalenessConfig).
	Staleness StalenessConfig
	// Retention purges (or archives) tasks that ended long ago; the zero value keeps them forever.
	Retention RetentionConfig
	// TracerProvider records one OpenTelemetry trace per task: the creating call's span (from
	// CreateTask's ctx) is stored with the task as a W3C traceparent, and every step attempt, in
	// any process, is a span of that trace, with the claim, the handler's run (the handler's ctx
	// carries it) and the outcome's commit as children. nil means no tracing, at no cost. See
	// the README's "Observability" section for the spans and their attributes.
	TracerProvider trace.TracerProvider
	// MeterProvider records the tasker.* metrics (tasks created and finished, step attempts by
	// outcome, handler durations, handoff latency, queue depth, rescues, leader changes, stale
	// tasks, dead letters); nil means none, at no cost.
	MeterProvider metric.MeterProvider
	// Priority sets what a point of TaskRequest.Priority is worth in the queue (priority.go).
	Priority PriorityConfig
	// GlobalConcurrency caps, by namespace, the steps in progress across every engine on the
	// store (every engine should set the same caps); a step over the cap waits in the queue, with
	// no attempt spent. A store that cannot hold such limits (store.Limiter) ignores it.
	GlobalConcurrency map[string]int
	// GlobalRate caps, by namespace, the step starts across every engine: at most N in any
	// window of Per (limit.go).
	GlobalRate map[string]RateLimit
	// Limits are global concurrency and rate limits on the steps of a namespace, of one of its
	// templates, or of each value of a field of the task context (a customer, say), held across
	// every engine on the store like GlobalConcurrency and GlobalRate (which are namespace-wide
	// Limits). At most one Limit per namespace, template and context key.
	Limits []Limit
	// Clock is the time the engine measures due times on; nil means the system clock. It drives
	// the engine's timers — the wake-ups of retries whose backoff ends and of parked steps
	// (durable sleep, a signal's timeout, a child's poll), the scheduler's passes and the cron
	// times they compare with, handler timeouts — and the engine's "now" for a scheduled start
	// (TaskRequest.RunAt). With the memory store, give the store the same clock
	// (memory.WithClock), as taskertest.WithClock does: the store's and queue's now() then decide
	// due times and visibility on it, and a test moves time by hand
	// (taskertest.NewClock). With PostgreSQL the database's clock (now()) decides due times,
	// whatever this clock says: keep the system clock there. Leases and their heartbeats, the
	// maintenance election, the services' intervals and polls stay on the system clock.
	Clock Clock
}

// Engine registers templates and handlers, creates tasks and runs workers. It is safe for
// concurrent use.
type Engine struct {
	cfg   Config
	store Store
	queue queue.Queue
	log   logr.Logger
	core  *engine.Engine // templates, handlers, workers and maintenance
	sched schedules      // schedule_cron.go
}

// registered is what the root keeps of a registered template, attached to the engine's compiled
// view (engine.Template.API).
type registered struct {
	t        *Template
	schema   *jsonschema.Schema
	compiled *engine.Template // the engine's view: graph, dynamic steps, registry row
}

// NewEngine returns an engine. It does no I/O: RunWorkers and the first CreateTask check the
// database. A Config it cannot run with is refused with a *ConfigError (errors.Is
// ErrInvalidConfig) naming the field.
func NewEngine(cfg Config) (*Engine, error) {
	if cfg.Store == nil {
		return nil, errors.New("tasker: Config.Store is required (for example postgres.New(pool))")
	}
	if err := checkConfig(&cfg); err != nil {
		return nil, err
	}
	if err := checkStaleness(&cfg.Staleness); err != nil {
		return nil, err
	}
	if err := cfg.Priority.check(); err != nil {
		return nil, err
	}
	if err := checkLimits(cfg.Limits, cfg.GlobalConcurrency, cfg.GlobalRate); err != nil {
		return nil, err
	}
	q := cfg.Queue
	if q == nil {
		d, ok := cfg.Store.(interface{ DefaultQueue() queue.Queue })
		if !ok {
			return nil, errors.New("tasker: Config.Queue is required with this store")
		}
		q = d.DefaultQueue()
	}
	if nv, ok := q.(queue.NameValidator); ok {
		for i, ns := range cfg.Namespaces {
			if err := nv.ValidateQueueName(ns); err != nil {
				return nil, &ConfigError{Field: fmt.Sprintf("Namespaces[%d]", i), Value: fmt.Sprintf("%q", pgname.Truncate(ns)),
					Reason: "cannot name a queue: " + err.Error()}
			}
		}
	}
	if cfg.WorkerID == "" {
		host, _ := os.Hostname()
		cfg.WorkerID = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), uuid.NewString()[:8])
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = ConcurrencyDefault
	}
	if cfg.Lease <= 0 {
		cfg.Lease = LeaseDefault
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = ShutdownTimeoutDefault
	}
	if cfg.RepublishAfter <= 0 {
		cfg.RepublishAfter = RepublishAfterDefault
	}
	if cfg.MaxDecisionSteps <= 0 {
		cfg.MaxDecisionSteps = MaxDecisionStepsDefault
	}
	if cfg.LeaderTTL <= 0 {
		cfg.LeaderTTL = LeaderTTLDefault
	}
	if cfg.RescueInterval <= 0 {
		cfg.RescueInterval = max(min(RescueIntervalDefault, cfg.Lease/2), RescueIntervalMin)
	}
	if cfg.MaxPayloadBytes <= 0 {
		cfg.MaxPayloadBytes = MaxPayloadBytesDefault
	}
	core := engine.New(engine.Config{Store: cfg.Store, Queue: q, Logger: cfg.Logger, WorkerID: cfg.WorkerID,
		Concurrency: cfg.Concurrency, NamespaceConcurrency: cfg.NamespaceConcurrency, Namespaces: cfg.Namespaces,
		Lease: cfg.Lease, ShutdownTimeout: cfg.ShutdownTimeout, MaxPayloadBytes: cfg.MaxPayloadBytes,
		LeaderTTL: cfg.LeaderTTL, RescueInterval: cfg.RescueInterval, RepublishAfter: cfg.RepublishAfter,
		MaxDecisionSteps: cfg.MaxDecisionSteps, DisableMaintenance: cfg.DisableMaintenance,
		Staleness: stalenessDefaults(cfg.Staleness),
		Retention: cfg.Retention.engine(), TracerProvider: cfg.TracerProvider, MeterProvider: cfg.MeterProvider,
		Priority: cfg.Priority.engine(), Limits: engineLimits(cfg.Limits, cfg.GlobalConcurrency, cfg.GlobalRate),
		Clock: cfg.Clock})
	return &Engine{cfg: cfg, store: cfg.Store, queue: q, log: cfg.Logger, core: core}, nil
}

// WorkerID returns the name this engine uses in leases and transitions.
func (e *Engine) WorkerID() string { return e.cfg.WorkerID }

// RunWorkers takes steps from the queue and runs their handlers until ctx ends, then drains:
// in-flight handlers get Config.ShutdownTimeout to finish, after which their contexts are
// cancelled and their steps go back to the queue without losing the attempt. A handler's outcome
// that the database cannot take yet (an outage) is tried until its lease ends, so the drain lasts
// at most ShutdownTimeout, a few seconds' grace and one Config.Lease. It returns nil after a clean
// stop, or an error when it cannot start (for example a database that is not migrated, or a
// *TemplateConflictError when the database's registry holds another definition of a registered
// template version). Only one RunWorkers per engine may run at a time (ErrAlreadyRunning).
// Templates registered while it runs are served too (see Register).
func (e *Engine) RunWorkers(ctx context.Context) error { return e.core.Run(ctx) }

// Register adds a template. Defaults are applied to its zero fields and, when Config.Environment
// is set, that environment's overrides; then it is validated, and a *ValidationError lists every
// problem: among them names the database or the configured queue cannot take (see MaxNameBytes
// and queue.NameValidator).
//
// Versions are immutable: registering the same definition again under the same namespace, name
// and version is a no-op, and a different one is refused with a *TemplateConflictError (errors.Is
// ErrTemplateConflict); register a changed template under a new version. The database's registry
// follows the same rule: the template is written to it when RunWorkers starts, or by the first
// CreateTask, and either fails with a *TemplateConflictError if another process registered a
// different definition under the same key.
//
// A template may be registered while RunWorkers runs: its namespace, if new, is served at once
// (unless Config.Namespaces leaves it out) and the template is written to the registry.
func (e *Engine) Register(t *Template) error {
	if t == nil {
		return errors.New("tasker: Register(nil)")
	}
	c := t.WithDefaults()
	if e.cfg.Environment != "" {
		if _, ok := c.Environments[e.cfg.Environment]; ok {
			var err error
			if c, err = c.ForEnvironment(e.cfg.Environment); err != nil {
				return err
			}
		}
	}
	if err := c.Validate(); err != nil {
		var ve *ValidationError
		if errors.As(err, &ve) {
			ve.Problems = append(ve.Problems, checkTemplateNames(c, e.queue)...)
		}
		return err
	}
	if probs := checkTemplateNames(c, e.queue); len(probs) > 0 {
		return &ValidationError{Template: pgname.Truncate(c.Key()), Problems: probs}
	}
	compiled, err := compile(c)
	if err != nil {
		return err
	}
	r := &registered{t: c, compiled: compiled}
	if len(c.InputSchema) > 0 {
		if r.schema, err = compileInputSchema(c.InputSchema, c.InputSchemaLoader); err != nil {
			return fmt.Errorf("tasker: template %s: input_schema: %w", c.Key(), err)
		}
	}
	if compiled.Definition, err = json.Marshal(c); err != nil {
		return fmt.Errorf("tasker: template %s: %w", c.Key(), err)
	}
	if probs := checkDefinition(compiled.Definition); len(probs) > 0 {
		return &ValidationError{Template: c.Key(), Problems: probs}
	}
	sum := sha256.Sum256(compiled.Definition)
	compiled.Checksum = hex.EncodeToString(sum[:])

	compiled.API = r
	compiled.Staleness = e.templateStaleness(c)
	if _, err := e.core.AddTemplate(compiled); err != nil {
		return err
	}
	e.handleBuiltins(c) // signal.go
	return nil
}

// ErrTemplateConflict is matched (errors.Is) by every *TemplateConflictError.
var ErrTemplateConflict = store.ErrTemplateConflict

// TemplateConflictError reports a template registered under a namespace, name and version that
// already hold a different definition, in this engine (Register) or in the database's registry
// (RunWorkers, CreateTask). Existing and Proposed are the definitions' checksums. Versions are
// immutable: register the changed template under a new version.
type TemplateConflictError = store.TemplateConflictError

// Handle binds a handler to a name used in templates' handler.callable. Binding a name again
// replaces the handler.
func (e *Engine) Handle(callable string, h Handler) { e.core.Handle(callable, adapter{h: h, e: e}) }

// HandleFunc is Handle for a function.
func (e *Engine) HandleFunc(callable string, fn func(ctx context.Context, s *Step) (any, error)) {
	e.Handle(callable, HandlerFunc(fn))
}

// template finds a registered template; version "" means the highest version.
func (e *Engine) template(ns, name, version string) (*registered, error) {
	t, err := e.core.Template(ns, name, version)
	if err != nil {
		return nil, err
	}
	return t.API.(*registered), nil
}

// TaskState is a task's state; see package statemachine for the machine.
type TaskState = statemachine.TaskState

// StepState is a step's state; see package statemachine for the machine.
type StepState = statemachine.StepState

// The task states users test most often.
const (
	TaskComplete          = statemachine.TaskComplete
	TaskError             = statemachine.TaskError
	TaskCancelled         = statemachine.TaskCancelled
	TaskResolvedManually  = statemachine.TaskResolvedManually
	TaskBlockedByFailures = statemachine.TaskBlockedByFailures
	TaskStepsInProcess    = statemachine.TaskStepsInProcess
	TaskWaitingForRetry   = statemachine.TaskWaitingForRetry
)

// The step states users test most often.
const (
	StepPending          = statemachine.StepPending
	StepEnqueued         = statemachine.StepEnqueued
	StepInProgress       = statemachine.StepInProgress
	StepWaitingForRetry  = statemachine.StepWaitingForRetry
	StepComplete         = statemachine.StepComplete
	StepError            = statemachine.StepError
	StepCancelled        = statemachine.StepCancelled
	StepResolvedManually = statemachine.StepResolvedManually
)

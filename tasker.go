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
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/uuid"
	"github.com/santhosh-tekuri/jsonschema/v6"

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
	// ReadBatchDefault is how many messages a worker reads at once, at most.
	ReadBatchDefault = 10
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
}

// Engine registers templates and handlers, creates tasks and runs workers. It is safe for
// concurrent use.
type Engine struct {
	cfg   Config
	store Store
	queue queue.Queue
	log   logr.Logger

	mu        sync.RWMutex
	templates map[string][]*registered  // by namespace/name, versions in registration order
	handlers  map[string]engine.Handler // adapted (adapt)

	running     atomic.Bool
	active      *workers           // the running workers, told of templates registered meanwhile; guarded by mu
	schemaReady atomic.Bool        // the store's schema was found at this library's version
	runs        engine.RunRegistry // handlers in flight, by task, for cancellation
	waiters     engine.WaiterRegistry
	waiting     engine.WaitingRegistry // steps this engine declined, for Health
}

// registered is a template prepared for running.
type registered struct {
	t         *Template
	schema    *jsonschema.Schema
	compiled  *engine.Template // the engine's view: graph, dynamic steps, registry row
	persisted atomic.Bool
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
	return &Engine{
		cfg:       cfg,
		store:     cfg.Store,
		queue:     q,
		log:       cfg.Logger,
		templates: map[string][]*registered{},
		handlers:  map[string]engine.Handler{},
	}, nil
}

// checkSchema verifies once, and then remembers, that the database schema is at this library's
// version, so that a missing migration is reported in words (migrations.ErrNotMigrated,
// migrations.ErrSchemaTooNew) rather than as a failing query.
func (e *Engine) checkSchema(ctx context.Context) error {
	if e.schemaReady.Load() {
		return nil
	}
	c, ok := e.store.(interface{ CheckSchema(context.Context) error })
	if !ok {
		return nil
	}
	if err := c.CheckSchema(ctx); err != nil {
		return err
	}
	e.schemaReady.Store(true)
	return nil
}

// WorkerID returns the name this engine uses in leases and transitions.
func (e *Engine) WorkerID() string { return e.cfg.WorkerID }

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

	key := c.Namespace + "/" + c.Name
	e.mu.Lock()
	versions := e.templates[key]
	for _, v := range versions {
		if v.t.Version == c.Version {
			e.mu.Unlock()
			if v.compiled.Checksum == compiled.Checksum {
				return nil
			}
			return &TemplateConflictError{Namespace: c.Namespace, Name: c.Name, Version: c.Version, Existing: v.compiled.Checksum, Proposed: compiled.Checksum}
		}
	}
	newNamespace := !e.servesLocked(c.Namespace)
	e.templates[key] = append(versions, r)
	w := e.active
	e.mu.Unlock()

	if newNamespace && len(e.cfg.Namespaces) > 0 && !slices.Contains(e.cfg.Namespaces, c.Namespace) {
		e.log.Info("registered a template in a namespace that Config.Namespaces leaves out: this engine's workers do not serve it",
			"template", c.Key(), "namespace", c.Namespace, "namespaces", e.cfg.Namespaces)
	}
	if w != nil {
		w.registered(r)
	}
	return nil
}

// servesLocked tells whether a template of namespace ns is registered; e.mu is held.
func (e *Engine) servesLocked(ns string) bool {
	for _, versions := range e.templates {
		if len(versions) > 0 && versions[0].t.Namespace == ns {
			return true
		}
	}
	return false
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
func (e *Engine) Handle(callable string, h Handler) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.handlers[callable] = adapt(h)
}

// HandleFunc is Handle for a function.
func (e *Engine) HandleFunc(callable string, fn func(ctx context.Context, s *Step) (any, error)) {
	e.Handle(callable, HandlerFunc(fn))
}

func (e *Engine) handler(name string) (engine.Handler, bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	h, ok := e.handlers[name]
	return h, ok
}

// template finds a registered template; version "" means the highest version.
func (e *Engine) template(ns, name, version string) (*registered, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	versions := e.templates[ns+"/"+name]
	if version == "" && len(versions) > 0 {
		best := versions[0]
		for _, v := range versions[1:] {
			if compareVersions(v.t.Version, best.t.Version) > 0 {
				best = v
			}
		}
		return best, nil
	}
	for _, v := range versions {
		if v.t.Version == version {
			return v, nil
		}
	}
	return nil, fmt.Errorf("%w: %s/%s@%s", ErrTemplateNotFound, ns, name, version)
}

// namespaces lists the namespaces the workers serve.
func (e *Engine) namespaces() []string {
	if len(e.cfg.Namespaces) > 0 {
		return append([]string(nil), e.cfg.Namespaces...)
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	seen := map[string]bool{}
	var out []string
	for _, versions := range e.templates {
		ns := versions[0].t.Namespace
		if !seen[ns] {
			seen[ns] = true
			out = append(out, ns)
		}
	}
	sort.Strings(out)
	return out
}

// compareVersions compares dotted version strings numerically where both parts are numbers.
func compareVersions(a, b string) int {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(pa) || i < len(pb); i++ {
		var x, y string
		if i < len(pa) {
			x = pa[i]
		}
		if i < len(pb) {
			y = pb[i]
		}
		var nx, ny int
		_, ex := fmt.Sscanf(x, "%d", &nx)
		_, ey := fmt.Sscanf(y, "%d", &ny)
		switch {
		case ex == nil && ey == nil && nx != ny:
			if nx < ny {
				return -1
			}
			return 1
		case (ex != nil || ey != nil) && x != y:
			return strings.Compare(x, y)
		}
	}
	return 0
}

// registryRow is the template's registry row until a creation has committed it.
func (r *registered) registryRow() *store.RegisterTemplateParams {
	if r.persisted.Load() {
		return nil
	}
	return r.registryParams()
}

func (r *registered) registryParams() *store.RegisterTemplateParams {
	return &store.RegisterTemplateParams{Namespace: r.t.Namespace, Name: r.t.Name, Version: r.t.Version,
		Definition: r.compiled.Definition, Checksum: r.compiled.Checksum}
}

// registeredTemplates lists every registered template version.
func (e *Engine) registeredTemplates() []*registered {
	e.mu.RLock()
	defer e.mu.RUnlock()
	var out []*registered
	for _, versions := range e.templates {
		out = append(out, versions...)
	}
	return out
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

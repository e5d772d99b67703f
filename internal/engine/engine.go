package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/uuid"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/tasker-systems/tasker/internal/clock"
	"github.com/tasker-systems/tasker/queue"
	"github.com/tasker-systems/tasker/store"
)

// Sentinels the root package exports under the same names.
var (
	// ErrShutdown is the cause of a handler context cancelled because the engine is stopping.
	ErrShutdown = errors.New("tasker: engine shutting down")
	// ErrLeaseLost is the cause of a handler context cancelled because its step is no longer this
	// worker's: its lease expired and the step was rescued, or it was moved on by an operator.
	ErrLeaseLost = errors.New("tasker: step lease lost")
	// ErrAlreadyRunning is returned by Run when the engine's workers already run.
	ErrAlreadyRunning = errors.New("tasker: workers already running")
	// ErrTemplateNotFound is returned when no registered template has the requested key.
	ErrTemplateNotFound = errors.New("tasker: template not found")
)

// Why a worker declined a step (the root package's WaitReason values).
const (
	// WaitNoHandler: no handler is registered here for the step's callable.
	WaitNoHandler = "no_handler"
	// WaitNoTemplate: the handler is registered here, but not the task's template version, which
	// the step's type needs.
	WaitNoTemplate = "no_template"
)

// ReadBatchDefault is how many messages a fetch loop reads (and, on the store's own queue,
// claims) at once, at most, as free handler slots allow: one read of up to 100 steps costs about
// what one of 10 costs (docs/design/engine-v2.md §4.2).
const ReadBatchDefault = 100

// Config is the engine's configuration, with every default already applied by the caller (the
// root package's NewEngine) and every value checked.
type Config struct {
	Store  store.Store
	Queue  queue.Queue
	Logger logr.Logger
	// WorkerID names this engine in leases and transitions.
	WorkerID string
	// Concurrency caps the handlers this engine runs at once; NamespaceConcurrency those of one
	// namespace (a missing entry or 0: no cap beyond Concurrency).
	Concurrency          int
	NamespaceConcurrency map[string]int
	// Namespaces, when set, fixes the namespaces served; nil means those of the registered
	// templates, including those registered while Run runs.
	Namespaces []string
	// Lease is a claimed step's visibility timeout; heartbeats renew it every third.
	Lease time.Duration
	// ShutdownTimeout is how long in-flight handlers may finish once Run's context ends.
	ShutdownTimeout time.Duration
	// MaxPayloadBytes bounds results and checkpoints.
	MaxPayloadBytes int
	// LeaderTTL, RescueInterval and RepublishAfter pace the maintenance services.
	LeaderTTL, RescueInterval, RepublishAfter time.Duration
	// MaxDecisionSteps caps the steps one decision may create.
	MaxDecisionSteps int
	// DisableMaintenance keeps this engine out of the maintenance election.
	DisableMaintenance bool
	// Staleness configures the staleness detector (staleness.go).
	Staleness StalenessConfig
	// Retention configures the purge of ended tasks (retention.go); a zero Period turns it off.
	Retention RetentionConfig
	// TracerProvider and MeterProvider instrument the engine (telemetry.go); nil means no-ops.
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
	// Priority sets what a point of task priority is worth in the queue (priority.go).
	Priority PriorityConfig
	// Limits are the global concurrency and rate limits, across every engine (limit.go): at
	// most one per namespace, template and context key.
	Limits []Limit
	// Clock is the time due times are measured on: the wake-ups of retries and parked steps, the
	// scheduler's passes, handler timeouts; nil means the system clock.
	Clock clock.Clock
}

// Engine holds the registered templates and handlers and runs the workers: the fetch loops, the
// executor, the decline rules, the enqueuing of released steps, and the maintenance services of
// the elected engine. It is safe for concurrent use.
type Engine struct {
	cfg   Config
	store store.Store
	queue queue.Queue
	log   logr.Logger

	mu        sync.RWMutex
	templates map[string][]*Template // by namespace/name, versions in registration order
	handlers  map[string]Handler

	running     atomic.Bool
	active      *workers    // the running workers, told of templates registered meanwhile; guarded by mu
	schemaReady atomic.Bool // the store's schema was found at this library's version
	runs        RunRegistry // handlers in flight, by task, for cancellation
	waiters     WaiterRegistry
	waiting     WaitingRegistry               // steps this engine declined, for health
	svc         serviceStatuses               // what the maintenance services' passes did (services.go)
	tel         *Telemetry                    // traces and metrics (telemetry.go)
	scheduler   atomic.Pointer[schedulerHook] // the root's schedules (schedule.go)
	limits      map[string]nsLimits           // Config.Limits by namespace (limit.go)
	wakes       parentWakes                   // wake-ups of parents whose child ended (child.go)
}

// New returns an engine for a checked Config with its defaults applied. It does no I/O.
func New(cfg Config) *Engine {
	cfg.Clock = clock.Or(cfg.Clock)
	e := &Engine{
		cfg:       cfg,
		store:     cfg.Store,
		queue:     cfg.Queue,
		log:       cfg.Logger,
		templates: map[string][]*Template{},
		handlers:  map[string]Handler{},
		tel:       NewTelemetry(cfg.TracerProvider, cfg.MeterProvider, cfg.Logger),
	}
	e.limits = limitsByNamespace(cfg.Limits, cfg.Store)
	e.tel.observeQueues(cfg.MeterProvider, cfg.Queue, e.namespaces, cfg.Logger)
	return e
}

// Now is the time on the engine's clock (Config.Clock).
func (e *Engine) Now() time.Time { return e.cfg.Clock.Now() }

// Telemetry returns the engine's OpenTelemetry instrumentation.
func (e *Engine) Telemetry() *Telemetry { return e.tel }

// CheckSchema verifies once, and then remembers, that the database schema is at this library's
// version (for a store that can tell), so that a missing migration is reported in words rather
// than as a failing query.
func (e *Engine) CheckSchema(ctx context.Context) error {
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

// AddTemplate registers a compiled template with its Definition and Checksum set. Versions are
// immutable: the same definition again is a no-op that returns the template registered first,
// and a different one under the same key a *store.TemplateConflictError. Running workers serve
// a new namespace at once (unless Config.Namespaces fixes the set) and write the template to the
// database's registry.
func (e *Engine) AddTemplate(t *Template) (*Template, error) {
	key := t.Namespace + "/" + t.Name
	e.mu.Lock()
	versions := e.templates[key]
	for _, v := range versions {
		if v.Version == t.Version {
			e.mu.Unlock()
			if v.Checksum == t.Checksum {
				return v, nil
			}
			return nil, &store.TemplateConflictError{Namespace: t.Namespace, Name: t.Name, Version: t.Version, Existing: v.Checksum, Proposed: t.Checksum}
		}
	}
	newNamespace := !e.servesLocked(t.Namespace)
	e.templates[key] = append(versions, t)
	w := e.active
	e.mu.Unlock()

	if newNamespace && len(e.cfg.Namespaces) > 0 && !slices.Contains(e.cfg.Namespaces, t.Namespace) {
		e.log.Info("registered a template in a namespace that Config.Namespaces leaves out: this engine's workers do not serve it",
			"template", t.Key(), "namespace", t.Namespace, "namespaces", e.cfg.Namespaces)
	}
	if w != nil {
		w.registered(t)
	}
	return t, nil
}

// servesLocked tells whether a template of namespace ns is registered; e.mu is held.
func (e *Engine) servesLocked(ns string) bool {
	for _, versions := range e.templates {
		if len(versions) > 0 && versions[0].Namespace == ns {
			return true
		}
	}
	return false
}

// Handle binds a handler to a callable name; binding a name again replaces the handler.
func (e *Engine) Handle(callable string, h Handler) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.handlers[callable] = h
}

// HasHandler tells whether a handler is bound to callable.
func (e *Engine) HasHandler(callable string) bool {
	_, ok := e.handler(callable)
	return ok
}

// callables lists the handlers bound here, sorted: what this engine can run.
func (e *Engine) callables() []string {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := make([]string, 0, len(e.handlers))
	for name := range e.handlers {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

func (e *Engine) handler(name string) (Handler, bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	h, ok := e.handlers[name]
	return h, ok
}

// Template finds a registered template; version "" means the highest version. An unknown one
// is an error that wraps ErrTemplateNotFound.
func (e *Engine) Template(ns, name, version string) (*Template, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	versions := e.templates[ns+"/"+name]
	if version == "" && len(versions) > 0 {
		best := versions[0]
		for _, v := range versions[1:] {
			if compareVersions(v.Version, best.Version) > 0 {
				best = v
			}
		}
		return best, nil
	}
	for _, v := range versions {
		if v.Version == version {
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
		ns := versions[0].Namespace
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

// registeredTemplates lists every registered template version.
func (e *Engine) registeredTemplates() []*Template {
	e.mu.RLock()
	defer e.mu.RUnlock()
	var out []*Template
	for _, versions := range e.templates {
		out = append(out, versions...)
	}
	return out
}

// persist writes a template to the database's registry unless a commit has already.
func (e *Engine) persist(ctx context.Context, t *Template) error {
	if t.persisted.Load() {
		return nil
	}
	if err := e.store.RegisterTemplate(ctx, *t.registryParams()); err != nil {
		return err
	}
	t.persisted.Store(true)
	return nil
}

// RegistryRow is the template's registry row until a commit has written it (MarkPersisted); nil
// after.
func (t *Template) RegistryRow() *store.RegisterTemplateParams {
	if t.persisted.Load() {
		return nil
	}
	return t.registryParams()
}

// MarkPersisted notes that a committed transaction wrote the template's registry row.
func (t *Template) MarkPersisted() { t.persisted.Store(true) }

func (t *Template) registryParams() *store.RegisterTemplateParams {
	return &store.RegisterTemplateParams{Namespace: t.Namespace, Name: t.Name, Version: t.Version,
		Definition: t.Definition, Checksum: t.Checksum}
}

// CancelRuns cancels the contexts of this engine's handlers of a task (a cancellation).
func (e *Engine) CancelRuns(taskID uuid.UUID) { e.runs.CancelTask(taskID) }

// Waiters is the registry of callers waiting for tasks to settle (WaitTask).
func (e *Engine) Waiters() *WaiterRegistry { return &e.waiters }

// Waiting is the registry of the steps this engine declined (health).
func (e *Engine) Waiting() *WaitingRegistry { return &e.waiting }

// WorkerID returns the name this engine uses in leases and transitions.
func (e *Engine) WorkerID() string { return e.cfg.WorkerID }

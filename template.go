package tasker

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/tasker-systems/tasker/internal/jsonsafe"
)

// StepType says how the engine treats a step. The zero value means
// StepStandard.
type StepType string

// The step types of Tasker Core.
const (
	// StepStandard is an ordinary step: it runs once its parents are done.
	StepStandard StepType = "standard"
	// StepDecision is a decision point: its handler's result chooses which of
	// its dependent steps are created. It must depend on at least one step.
	StepDecision StepType = "decision"
	// StepDeferredConvergence is a join whose dependencies are the
	// intersection of its declared dependencies and the steps that the
	// decision points actually created.
	StepDeferredConvergence StepType = "deferred_convergence"
	// StepBatchable analyses a data set and asks for batch workers to be
	// created from a StepBatchWorker step.
	StepBatchable StepType = "batchable"
	// StepBatchWorker is the blueprint of the workers a batchable step
	// creates; it never runs itself, only its numbered copies do.
	StepBatchWorker StepType = "batch_worker"
)

// BackoffKind is how the wait between two attempts grows. The zero value
// means BackoffExponential.
type BackoffKind string

// The backoff kinds.
const (
	// BackoffExponential waits BackoffBase * 2^(attempt-1), capped at MaxBackoff.
	BackoffExponential BackoffKind = "exponential"
	// BackoffLinear waits BackoffBase * attempt, capped at MaxBackoff.
	BackoffLinear BackoffKind = "linear"
	// BackoffNone retries without waiting.
	BackoffNone BackoffKind = "none"
)

// BackoffJitter is the randomization factor applied to every backoff: a wait d becomes a random
// value in [d*(1-BackoffJitter), d*(1+BackoffJitter)], so that steps failing together do not
// retry together. The jitter never takes a wait past the step's cap (MaxBackoff): a wait at the
// cap is drawn from [cap*(1-BackoffJitter), cap].
const BackoffJitter = 0.2

// IdentityStrategy says how the identity of a task (the key that makes a
// second, identical request return the existing task) is computed. The
// zero value means IdentityStrict. In YAML the key is `identity_strategy`
// at the top level (Tasker Core keeps it in its database, not its YAML).
type IdentityStrategy string

// The identity strategies.
const (
	// IdentityStrict hashes the template key and the canonical JSON context: keys sorted, no
	// whitespace, numbers by their decimal value (1, 1.0 and 10e-1 are one identity).
	IdentityStrict IdentityStrategy = "strict"
	// IdentityCallerProvided uses the idempotency key that the caller gives;
	// a request without one is rejected.
	IdentityCallerProvided IdentityStrategy = "caller_provided"
	// IdentityAlwaysUnique makes every request a new task.
	IdentityAlwaysUnique IdentityStrategy = "always_unique"
)

// BatchFailureStrategy says what a failed batch worker does to the rest of
// the batch. The zero value means BatchContinueOnFailure, as in Tasker Core.
type BatchFailureStrategy string

// The batch failure strategies.
const (
	// BatchContinueOnFailure completes the failed worker with failure
	// details so that the convergence step still runs.
	BatchContinueOnFailure BatchFailureStrategy = "continue_on_failure"
	// BatchFailFast moves the failed worker to error, blocking the task.
	BatchFailFast BatchFailureStrategy = "fail_fast"
	// BatchIsolate holds the failed worker for manual resolution.
	BatchIsolate BatchFailureStrategy = "isolate"
)

// Defaults applied by WithDefaults (and so by ParseTemplate and by the
// engine when it registers a template) wherever a field holds its zero
// value.
const (
	// MaxAttemptsDefault is the total number of attempts, the first included.
	MaxAttemptsDefault = 3
	// BackoffBaseDefault is the first wait between attempts.
	BackoffBaseDefault = time.Second
	// MaxBackoffDefault caps the wait between attempts. When only the base
	// is given and it is larger, the cap is raised to the base.
	MaxBackoffDefault = 30 * time.Second
	// StepTimeoutDefault bounds one attempt of a step's handler; Tasker
	// Core's templates mostly say timeout_seconds: 30.
	StepTimeoutDefault = 30 * time.Second
	// TemplateVersionDefault is the version of a template that gives none.
	TemplateVersionDefault = "0.0.0"
	// BatchSizeDefault is the number of items per batch worker.
	BatchSizeDefault = 1000
	// BatchParallelismDefault is the number of batch workers run at once.
	BatchParallelismDefault = 10
	// BatchCursorFieldDefault is the field batch cursors count by.
	BatchCursorFieldDefault = "id"
	// StalenessActionDefault is what the staleness sweeper does with a task
	// that exceeds a lifecycle threshold: record it in the dead-letter queue.
	StalenessActionDefault = "dlq"
)

// Limits of a step's settings, which Validate enforces so that every template that validates
// can be stored and run: the database keeps durations as bigint milliseconds and attempts as a
// 32-bit integer.
const (
	// StepDurationMax is the longest timeout, backoff base and backoff cap of a step: 365 days
	// (a 30-day approval step fits; time.Duration reaches 292 years).
	StepDurationMax = 365 * 24 * time.Hour
	// StepDurationMin is the shortest timeout, backoff base and backoff cap of a step that is
	// not 0: durations are kept to the millisecond (a fraction of a millisecond is dropped), so
	// a shorter one would be stored as 0. YAML's timeout_seconds: 0.0005 is a problem.
	StepDurationMin = time.Millisecond
	// MaxAttemptsMax is the largest max_attempts of a step.
	MaxAttemptsMax = 1_000_000
)

// StepOverrideAll, as the name of a StepOverride, applies the override to
// every step (Tasker Core's convention).
const StepOverrideAll = "ALL"

// RetryPolicy says how often and how fast a failed step is tried again.
// Its zero value means the defaults: retryable, MaxAttemptsDefault
// attempts, exponential backoff from BackoffBaseDefault to
// MaxBackoffDefault. After WithDefaults, MaxAttempts is the effective limit:
// 1 when NoRetry is set.
type RetryPolicy struct {
	// NoRetry makes a failure permanent: the step gets exactly one attempt
	// whatever MaxAttempts says. It is the negation of Tasker Core's
	// `retryable`, so that the zero value means retryable.
	NoRetry bool
	// MaxAttempts is the total number of attempts, the first included; 0
	// means MaxAttemptsDefault, and at most MaxAttemptsMax. (In YAML,
	// max_attempts: 0 means one attempt, as in Tasker Core; an absent key
	// means the default.)
	MaxAttempts int
	// Backoff is how the wait grows; "" means BackoffExponential.
	Backoff BackoffKind
	// BackoffBase is the first wait; 0 means BackoffBaseDefault. Otherwise
	// it lies between StepDurationMin and StepDurationMax.
	BackoffBase time.Duration
	// MaxBackoff caps the wait; 0 means max(MaxBackoffDefault, BackoffBase).
	// Otherwise it lies between StepDurationMin and StepDurationMax.
	MaxBackoff time.Duration
}

// HandlerSpec names the handler that runs a step and the configuration it
// is given.
type HandlerSpec struct {
	// Callable is the name the handler is registered under.
	Callable string `json:"callable"`
	// Method is Tasker Core's method dispatch: which entry point of the
	// handler to call; "" means the default ("call" in Tasker Core).
	Method string `json:"method,omitempty"`
	// Initialization is free-form configuration handed to the handler, in
	// JSON form (numbers are float64).
	Initialization map[string]any `json:"initialization,omitempty"`
}

// BatchConfig configures how a batchable step's work is split into batch
// workers. Zero fields mean their defaults.
type BatchConfig struct {
	// BatchSize is the number of items per worker; 0 means BatchSizeDefault.
	BatchSize int `json:"batch_size,omitempty"`
	// Parallelism is the number of workers run at once; 0 means
	// BatchParallelismDefault.
	Parallelism int `json:"parallelism,omitempty"`
	// CursorField is the field the cursors count by; "" means
	// BatchCursorFieldDefault.
	CursorField string `json:"cursor_field,omitempty"`
	// WorkerTemplate names the batch_worker step that workers are copied
	// from. On a batch_worker step "" means the step itself; on a batchable
	// step "" means the batch_worker steps that depend on it.
	WorkerTemplate string `json:"worker_template,omitempty"`
	// FailureStrategy says what a failed worker does; "" means
	// BatchContinueOnFailure.
	FailureStrategy BatchFailureStrategy `json:"failure_strategy,omitempty"`
	// MaxWorkers caps the number of workers created; 0 means no cap.
	MaxWorkers int `json:"max_workers,omitempty"`
}

// StepTemplate is one step of a Template.
type StepTemplate struct {
	// Name identifies the step within its template.
	Name string `json:"name"`
	// Description is for people.
	Description string `json:"description,omitempty"`
	// Handler names the handler and its configuration.
	Handler HandlerSpec `json:"handler"`
	// Dependencies are the names of the steps that must finish first. YAML
	// also accepts the key depends_on.
	Dependencies []string `json:"dependencies,omitempty"`
	// Type is the step type; "" means StepStandard.
	Type StepType `json:"type,omitempty"`
	// Retry is the retry policy; its zero value means the defaults.
	Retry RetryPolicy `json:"retry"`
	// Timeout bounds one attempt; 0 means StepTimeoutDefault. Otherwise it
	// lies between StepDurationMin and StepDurationMax. YAML:
	// timeout_seconds.
	Timeout time.Duration `json:"-"`
	// Batch configures batch processing, for batchable and batch_worker
	// steps only.
	Batch *BatchConfig `json:"batch_config,omitempty"`
}

// Lifecycle holds a template's staleness thresholds, in minutes. A zero
// threshold means the engine's global setting (Config.Staleness.Defaults), and
// Config.Staleness.Templates overrides them from Go; see StalenessConfig.
type Lifecycle struct {
	// MaxDurationMinutes bounds a task from creation to completion.
	MaxDurationMinutes int `json:"max_duration_minutes,omitempty"`
	// MaxWaitingForDependenciesMinutes bounds the waiting_for_dependencies state.
	MaxWaitingForDependenciesMinutes int `json:"max_waiting_for_dependencies_minutes,omitempty"`
	// MaxWaitingForRetryMinutes bounds the waiting_for_retry state.
	MaxWaitingForRetryMinutes int `json:"max_waiting_for_retry_minutes,omitempty"`
	// MaxStepsInProcessMinutes bounds the steps_in_process state.
	MaxStepsInProcessMinutes int `json:"max_steps_in_process_minutes,omitempty"`
	// StalenessAction is "dlq", "error" or "none"; "" means
	// StalenessActionDefault.
	StalenessAction string `json:"staleness_action,omitempty"`
	// AutoFailOnTimeout is Tasker Core's key, kept so its templates load; the staleness detector
	// does what StalenessAction says (see StalenessConfig).
	AutoFailOnTimeout bool `json:"auto_fail_on_timeout,omitempty"`
	// AutoDLQOnTimeout is Tasker Core's key, kept so its templates load; see AutoFailOnTimeout.
	AutoDLQOnTimeout bool `json:"auto_dlq_on_timeout,omitempty"`
}

// Template describes a workflow: a DAG of steps with their handlers, retry
// policies and timeouts. Build one in Go or load Tasker Core's YAML with
// ParseTemplate. Zero fields mean their documented defaults, which
// WithDefaults fills in; the engine applies them when it registers a
// template. A Template marshals to JSON with the same keys as its YAML.
type Template struct {
	// Namespace groups templates; YAML: namespace_name.
	Namespace string `json:"namespace_name"`
	// Name identifies the template within its namespace.
	Name string `json:"name"`
	// Version is a version string such as "1.0.0"; "" means
	// TemplateVersionDefault.
	Version string `json:"version,omitempty"`
	// Description is for people.
	Description string `json:"description,omitempty"`
	// Metadata is free-form, in JSON form.
	Metadata map[string]any `json:"metadata,omitempty"`
	// InputSchema is a JSON Schema (draft 2020-12 unless it says otherwise)
	// for the task context, nil when there is none.
	InputSchema json.RawMessage `json:"input_schema,omitempty"`
	// InputSchemaLoader loads the documents that InputSchema refers to
	// outside itself (a $ref to a file:// or https:// URL); nil refuses them
	// with a *SchemaRefError, so that a template cannot read the host's
	// files or fetch URLs. See SchemaLoader and WithInputSchemaLoader.
	InputSchemaLoader SchemaLoader `json:"-"`
	// Identity is the identity strategy; "" means IdentityStrict.
	Identity IdentityStrategy `json:"identity_strategy,omitempty"`
	// Lifecycle holds staleness thresholds; nil means the engine's settings.
	Lifecycle *Lifecycle `json:"lifecycle,omitempty"`
	// Steps are the steps, in any order.
	Steps []StepTemplate `json:"steps"`
	// Environments holds per-environment overrides by environment name.
	Environments map[string]Environment `json:"environments,omitempty"`
}

// Environment holds the overrides one environment (such as "test") makes.
type Environment struct {
	// Steps are applied in order.
	Steps []StepOverride `json:"steps,omitempty"`
}

// StepOverride changes some settings of one step (or of every step when
// Name is StepOverrideAll). Zero fields leave the step's value unchanged.
type StepOverride struct {
	// Name is the step to change, or StepOverrideAll.
	Name string
	// Timeout replaces the step's timeout unless 0.
	Timeout time.Duration
	// Retry replaces the retry fields that it sets.
	Retry RetryOverride
	// Initialization is merged into the handler's initialization: maps are
	// merged key by key, at every depth; other values replace.
	Initialization map[string]any
}

// RetryOverride is a partial RetryPolicy. Zero fields leave the step's value
// unchanged.
type RetryOverride struct {
	// Retryable, when not nil, sets whether the step is retried. Turning
	// retries back on without MaxAttempts gives MaxAttemptsDefault.
	Retryable *bool
	// MaxAttempts, when not 0, replaces the total number of attempts.
	MaxAttempts int
	// Backoff, when not "", replaces the backoff kind.
	Backoff BackoffKind
	// BackoffBase, when not 0, replaces the first wait.
	BackoffBase time.Duration
	// MaxBackoff, when not 0, replaces the cap on the wait.
	MaxBackoff time.Duration
}

// Key returns "namespace/name@version", the name the template is
// registered under.
func (t *Template) Key() string {
	v := t.Version
	if v == "" {
		v = TemplateVersionDefault
	}
	return t.Namespace + "/" + t.Name + "@" + v
}

// Step returns the step with the given name, pointing into t.Steps.
func (t *Template) Step(name string) (*StepTemplate, bool) {
	for i := range t.Steps {
		if t.Steps[i].Name == name {
			return &t.Steps[i], true
		}
	}
	return nil, false
}

// WithDefaults returns a deep copy of t with every zero-valued setting
// replaced by its default. Values that are already set, even invalid ones,
// are kept, so that Validate can report them.
func (t *Template) WithDefaults() *Template {
	c := t.clone()
	if c.Version == "" {
		c.Version = TemplateVersionDefault
	}
	if c.Identity == "" {
		c.Identity = IdentityStrict
	}
	if c.Lifecycle != nil && c.Lifecycle.StalenessAction == "" {
		c.Lifecycle.StalenessAction = StalenessActionDefault
	}
	for i := range c.Steps {
		s := &c.Steps[i]
		if s.Type == "" {
			s.Type = StepStandard
		}
		if s.Timeout == 0 {
			s.Timeout = StepTimeoutDefault
		}
		s.Retry = s.Retry.withDefaults()
		if b := s.Batch; b != nil {
			if b.BatchSize == 0 {
				b.BatchSize = BatchSizeDefault
			}
			if b.Parallelism == 0 {
				b.Parallelism = BatchParallelismDefault
			}
			if b.CursorField == "" {
				b.CursorField = BatchCursorFieldDefault
			}
			if b.FailureStrategy == "" {
				b.FailureStrategy = BatchContinueOnFailure
			}
			if b.WorkerTemplate == "" && s.Type == StepBatchWorker {
				b.WorkerTemplate = s.Name
			}
		}
	}
	return c
}

func (r RetryPolicy) withDefaults() RetryPolicy {
	if r.MaxAttempts == 0 {
		r.MaxAttempts = MaxAttemptsDefault
	}
	if r.NoRetry {
		r.MaxAttempts = 1
	}
	if r.Backoff == "" {
		r.Backoff = BackoffExponential
	}
	if r.BackoffBase == 0 {
		r.BackoffBase = BackoffBaseDefault
	}
	if r.MaxBackoff == 0 {
		r.MaxBackoff = max(MaxBackoffDefault, r.BackoffBase)
	}
	return r
}

// ForEnvironment returns a copy of t with the overrides of the named
// environment applied and the defaults filled in. An empty name applies
// no overrides. An unknown name, or an override of a step that does not
// exist, gives a *ValidationError (UNKNOWN_ENVIRONMENT,
// UNKNOWN_OVERRIDE_STEP).
func (t *Template) ForEnvironment(name string) (*Template, error) {
	c := t.clone()
	if name != "" {
		env, ok := c.Environments[name]
		if !ok {
			return nil, &ValidationError{Template: t.Key(), Problems: []Problem{unknownEnvironment(t, name)}}
		}
		if probs := applyEnvironment(c, name, env); len(probs) > 0 {
			return nil, &ValidationError{Template: t.Key(), Problems: probs}
		}
	}
	return c.WithDefaults(), nil
}

func unknownEnvironment(t *Template, name string) Problem {
	known := slices.Sorted(maps.Keys(t.Environments))
	return Problem{
		Code:    CodeUnknownEnvironment,
		Field:   "environments",
		Message: fmt.Sprintf("unknown environment %q (the template defines %v)", name, known),
	}
}

// applyEnvironment applies env's overrides to c in place and reports the
// overrides that name no step.
func applyEnvironment(c *Template, envName string, env Environment) []Problem {
	var probs []Problem
	for k, o := range env.Steps {
		if o.Name == StepOverrideAll {
			for i := range c.Steps {
				o.apply(&c.Steps[i])
			}
			continue
		}
		s, ok := c.Step(o.Name)
		if !ok {
			probs = append(probs, Problem{
				Code:    CodeUnknownOverrideStep,
				Step:    o.Name,
				Field:   fmt.Sprintf("environments.%s.steps[%d].name", envName, k),
				Message: fmt.Sprintf("environment %q overrides step %q, which the template does not have", envName, o.Name),
			})
			continue
		}
		o.apply(s)
	}
	return probs
}

func (o StepOverride) apply(s *StepTemplate) {
	if o.Timeout != 0 {
		s.Timeout = o.Timeout
	}
	r := o.Retry
	if r.Retryable != nil {
		if s.Retry.NoRetry && *r.Retryable {
			s.Retry.MaxAttempts = 0 // the filled-in 1 no longer holds: back to the default
		}
		s.Retry.NoRetry = !*r.Retryable
	}
	if r.MaxAttempts != 0 {
		s.Retry.MaxAttempts = r.MaxAttempts
	}
	if r.Backoff != "" {
		s.Retry.Backoff = r.Backoff
	}
	if r.BackoffBase != 0 {
		s.Retry.BackoffBase = r.BackoffBase
	}
	if r.MaxBackoff != 0 {
		s.Retry.MaxBackoff = r.MaxBackoff
	}
	if len(o.Initialization) > 0 {
		if s.Handler.Initialization == nil {
			s.Handler.Initialization = map[string]any{}
		}
		mergeMaps(s.Handler.Initialization, o.Initialization)
	}
}

// mergeMaps merges src into dst: nested maps key by key, anything else
// replaced by a copy of src's value.
func mergeMaps(dst, src map[string]any) {
	for k, v := range src {
		sm, sok := v.(map[string]any)
		dm, dok := dst[k].(map[string]any)
		if sok && dok {
			mergeMaps(dm, sm)
			continue
		}
		dst[k] = jsonsafe.CloneValue(v)
	}
}

// clone returns a deep copy of t.
func (t *Template) clone() *Template {
	c := *t
	c.Metadata = jsonsafe.CloneMap(t.Metadata)
	c.InputSchema = slices.Clone(t.InputSchema)
	if t.Lifecycle != nil {
		l := *t.Lifecycle
		c.Lifecycle = &l
	}
	c.Steps = slices.Clone(t.Steps)
	for i := range c.Steps {
		s := &c.Steps[i]
		s.Dependencies = slices.Clone(s.Dependencies)
		s.Handler.Initialization = jsonsafe.CloneMap(s.Handler.Initialization)
		if s.Batch != nil {
			b := *s.Batch
			s.Batch = &b
		}
	}
	if t.Environments != nil {
		c.Environments = make(map[string]Environment, len(t.Environments))
		for name, env := range t.Environments {
			env.Steps = slices.Clone(env.Steps)
			for i := range env.Steps {
				o := &env.Steps[i]
				o.Initialization = jsonsafe.CloneMap(o.Initialization)
				if o.Retry.Retryable != nil {
					b := *o.Retry.Retryable
					o.Retry.Retryable = &b
				}
			}
			c.Environments[name] = env
		}
	}
	return &c
}

// retryJSON is the stored form of RetryPolicy and RetryOverride, with
// Tasker Core's keys and units.
type retryJSON struct {
	Retryable     *bool       `json:"retryable,omitempty"`
	MaxAttempts   int         `json:"max_attempts,omitempty"`
	Backoff       BackoffKind `json:"backoff,omitempty"`
	BackoffBaseMS float64     `json:"backoff_base_ms,omitempty"`
	MaxBackoffMS  float64     `json:"max_backoff_ms,omitempty"`
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func fromMillis(f float64) time.Duration { return durationOf(f, time.Millisecond) }

func fromSeconds(f float64) time.Duration { return durationOf(f, time.Second) }

// durationOf converts f units to a Duration, saturating instead of overflowing, and keeping an
// amount too small to count (1e-12 s) off 0, which would mean the default: validation then
// reports both.
func durationOf(f float64, unit time.Duration) time.Duration {
	v := math.Round(f * float64(unit))
	switch {
	case v >= math.MaxInt64:
		return math.MaxInt64
	case v <= math.MinInt64:
		return math.MinInt64
	case v == 0 && f > 0:
		return 1
	case v == 0 && f < 0:
		return -1
	}
	return time.Duration(v)
}

// MarshalJSON writes the policy with Tasker Core's keys (retryable,
// max_attempts, backoff, backoff_base_ms, max_backoff_ms).
func (r RetryPolicy) MarshalJSON() ([]byte, error) {
	retryable := !r.NoRetry
	return json.Marshal(retryJSON{&retryable, r.MaxAttempts, r.Backoff, millis(r.BackoffBase), millis(r.MaxBackoff)})
}

// UnmarshalJSON reads what MarshalJSON writes; a missing retryable means true.
func (r *RetryPolicy) UnmarshalJSON(b []byte) error {
	var w retryJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*r = RetryPolicy{w.Retryable != nil && !*w.Retryable, w.MaxAttempts, w.Backoff, fromMillis(w.BackoffBaseMS), fromMillis(w.MaxBackoffMS)}
	return nil
}

// MarshalJSON writes the step with its timeout as timeout_seconds.
func (s StepTemplate) MarshalJSON() ([]byte, error) {
	type plain StepTemplate
	return json.Marshal(struct {
		plain
		TimeoutSeconds float64 `json:"timeout_seconds,omitempty"`
	}{plain(s), s.Timeout.Seconds()})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (s *StepTemplate) UnmarshalJSON(b []byte) error {
	type plain StepTemplate
	var w struct {
		plain
		TimeoutSeconds float64 `json:"timeout_seconds"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*s = StepTemplate(w.plain)
	s.Timeout = fromSeconds(w.TimeoutSeconds)
	return nil
}

type stepOverrideJSON struct {
	Name           string     `json:"name"`
	TimeoutSeconds float64    `json:"timeout_seconds,omitempty"`
	Retry          *retryJSON `json:"retry,omitempty"`
	Handler        *struct {
		Initialization map[string]any `json:"initialization,omitempty"`
	} `json:"handler,omitempty"`
}

// MarshalJSON writes the override with the keys of its YAML form.
func (o StepOverride) MarshalJSON() ([]byte, error) {
	w := stepOverrideJSON{Name: o.Name, TimeoutSeconds: o.Timeout.Seconds()}
	if r := o.Retry; r != (RetryOverride{}) {
		w.Retry = &retryJSON{r.Retryable, r.MaxAttempts, r.Backoff, millis(r.BackoffBase), millis(r.MaxBackoff)}
	}
	if o.Initialization != nil {
		w.Handler = &struct {
			Initialization map[string]any `json:"initialization,omitempty"`
		}{o.Initialization}
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (o *StepOverride) UnmarshalJSON(b []byte) error {
	var w stepOverrideJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*o = StepOverride{Name: w.Name, Timeout: fromSeconds(w.TimeoutSeconds)}
	if r := w.Retry; r != nil {
		o.Retry = RetryOverride{r.Retryable, r.MaxAttempts, r.Backoff, fromMillis(r.BackoffBaseMS), fromMillis(r.MaxBackoffMS)}
	}
	if w.Handler != nil {
		o.Initialization = w.Handler.Initialization
	}
	return nil
}

// Package engine is tasker's engine: the registry of compiled templates and handlers, the
// workers (fetch loops, the executor that claims, runs, classifies and records a step, the
// decline rules of a fleet with different handlers), the spawning of dynamic steps, the
// enqueuing of released steps, and the maintenance services of the elected engine (the lease
// rescuer, the sweeper, the store's announcements).
//
// The root package tasker is the user API over it: it validates and compiles its user-facing
// Template into an *engine.Template at Register and adapts its Handler; this package never
// imports the root.
package engine

import (
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-systems/tasker/dag"
	"github.com/tasker-systems/tasker/store"
)

// StepType is a template step's type, as tasker.StepType spells it.
type StepType string

// The step types the engine treats apart.
const (
	// StepStandard runs its handler and completes.
	StepStandard StepType = "standard"
	// StepDecision returns the names of the steps to create next.
	StepDecision StepType = "decision"
	// StepDeferredConvergence waits on the dependencies that exist when it is created.
	StepDeferredConvergence StepType = "deferred_convergence"
	// StepBatchable returns the cursors of the batch workers to create.
	StepBatchable StepType = "batchable"
	// StepBatchWorker is created, once per cursor, by a batchable step.
	StepBatchWorker StepType = "batch_worker"
)

// Template is a registered template as the engine runs it: defaults and the environment already
// applied, validated, its graph built. It is immutable once compiled, but for its ancestor cache.
type Template struct {
	// Namespace, Name and Version are the template's key (see Key).
	Namespace, Name, Version string
	// Steps are the template's steps in template order, which is the order of Graph's nodes.
	Steps []Step
	// Graph is the template's DAG, one node per step.
	Graph *dag.Graph
	// Dynamic marks the steps created at run time, not with their task (see ClassifyDynamic).
	Dynamic map[string]bool
	// Definition is the template's registry row: its JSON, as written to the database.
	Definition json.RawMessage
	// Checksum is the hex SHA-256 of Definition.
	Checksum string
	// Staleness are the template's staleness thresholds, resolved (staleness.go).
	Staleness StalenessLimits
	// API is what the package above attaches to the template (the root's user-facing template
	// and input schema); the engine never reads it.
	API any

	persisted atomic.Bool // a committed transaction wrote the registry row

	// ancestors caches the ancestor names of the steps claimed so far, up to ancestorCacheNames
	// names in all (ancUsed counts up), so that a template's memory stays linear in its size
	// however long its chains: a step's full ancestor list is computed from the graph when needed.
	ancestors sync.Map // step name -> []string, never modified once stored
	ancUsed   atomic.Int64
}

// Step is one step of a compiled Template.
type Step struct {
	Name         string
	Callable     string // handler.callable
	Method       string // handler.method
	Type         StepType
	Dependencies []string
	// Init is handler.initialization; it is shared, so clone it before handing it out.
	Init    map[string]any
	Retry   Retry
	Timeout time.Duration
	// Batch is a batch worker's batch_config; nil without one.
	Batch *Batch
}

// Retry is a step's retry policy, defaults applied.
type Retry struct {
	MaxAttempts int
	Retryable   bool
	Backoff     string
	Base, Max   time.Duration
}

// Batch is a batch worker step's batch_config.
type Batch struct {
	Size, Parallelism, MaxWorkers int
	CursorField, WorkerTemplate   string
	FailureStrategy               string
}

// ancestorCacheNames bounds the ancestor names one template caches.
const ancestorCacheNames = 1 << 16

// Key returns "namespace/name@version".
func (t *Template) Key() string {
	return t.Namespace + "/" + t.Name + "@" + t.Version
}

// Step finds a step by name.
func (t *Template) Step(name string) (*Step, bool) {
	i, ok := t.Graph.Index(name)
	if !ok {
		return nil, false
	}
	return &t.Steps[i], true
}

// Ancestors names the template steps that step depends on, directly or transitively, in the
// template's step order; false for an unknown step. The slice is shared: do not modify it.
func (t *Template) Ancestors(step string) ([]string, bool) {
	if v, ok := t.ancestors.Load(step); ok {
		return v.([]string), true
	}
	i, ok := t.Graph.Index(step)
	if !ok {
		return nil, false
	}
	names := t.Graph.Names(t.Graph.Ancestors(i))
	if t.ancUsed.Add(int64(len(names))+1) <= ancestorCacheNames {
		t.ancestors.Store(step, names)
	}
	return names, true
}

// ClassifyDynamic marks the steps that are not created with their task: batch workers,
// convergence steps, and every step downstream of a decision point or a batch worker.
func (t *Template) ClassifyDynamic() {
	t.Dynamic = map[string]bool{}
	for _, i := range t.Graph.TopoOrder() {
		s := &t.Steps[i]
		dyn := s.Type == StepBatchWorker || s.Type == StepDeferredConvergence
		for _, p := range t.Graph.Parents(i) {
			ps := &t.Steps[p]
			if ps.Type == StepDecision || t.Dynamic[ps.Name] {
				dyn = true
			}
		}
		t.Dynamic[s.Name] = dyn
	}
}

// NewStep makes a step named name to create from this template step (a batch worker's name is
// its own, not the template step's).
func (s *Step) NewStep(name string) (store.NewStep, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return store.NewStep{}, err
	}
	return store.NewStep{
		StepID: id, Name: name, TemplateStep: s.Name, Handler: s.Callable, Type: string(s.Type),
		MaxAttempts: s.Retry.MaxAttempts, Retryable: s.Retry.Retryable, Backoff: s.Retry.Backoff,
		BackoffBase: s.Retry.Base, MaxBackoff: s.Retry.Max, Timeout: s.Timeout,
	}, nil
}

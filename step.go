package tasker

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/tasker/internal/engine"
	"github.com/tasker-systems/tasker/store"
)

// Handler runs one attempt of a step. It returns a JSON-encodable result, or an error: wrap it
// with Permanent to fail without retry, with RetryAfter to ask for a delay; any other error is
// retried under the step's policy. A panic is recovered into a permanent failure whose stack is
// kept in the step's error record. The context ends at the step's timeout, when its task is
// cancelled, or when the engine stops (the step then goes back to the queue without losing the
// attempt).
//
// Delivery is at least once: after a crash an attempt may run again, so handlers should be
// idempotent.
type Handler interface {
	Handle(ctx context.Context, s *Step) (any, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, s *Step) (any, error)

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, s *Step) (any, error) { return f(ctx, s) }

// Step is what a handler sees of the step it runs.
type Step struct {
	// TaskID and ID identify the task and the step.
	TaskID, ID uuid.UUID
	// Name is the step's name in its template.
	Name string
	// Namespace, TaskName and Version identify the task's template.
	Namespace, TaskName, Version string
	// Attempt is this attempt's number, from 1.
	Attempt int
	// MaxAttempts is the total number of attempts the step may have.
	MaxAttempts int
	// CorrelationID is the task's correlation ID, if any.
	CorrelationID string

	context json.RawMessage
	method  string
	config  map[string]any
	results map[string]json.RawMessage
	inputs  json.RawMessage

	completeTx func(ctx context.Context, tx store.Tx, result any) error

	checkpoint json.RawMessage
	lastError  json.RawMessage // the step's latest error record, for parks (signal.go)
	engine     *Engine         // the engine running the step, for Child (child.go)
	save       func(ctx context.Context, raw json.RawMessage) error
	// maxCheckpoint bounds a checkpoint and a CompleteTx result (Config.MaxPayloadBytes); 0: no bound.
	maxCheckpoint int
}

// stepFrom is what a handler sees of the attempt the engine runs.
func stepFrom(a *engine.Attempt) *Step {
	return &Step{TaskID: a.TaskID, ID: a.StepID, Name: a.Name, Namespace: a.Namespace, TaskName: a.TaskName,
		Version: a.Version, Attempt: a.Number, MaxAttempts: a.MaxAttempts, CorrelationID: a.CorrelationID,
		context: a.Context, method: a.Method, config: a.Config, results: a.Results, inputs: a.Inputs,
		checkpoint: a.Checkpoint, lastError: a.LastError, maxCheckpoint: a.MaxCheckpoint, save: a.SaveCheckpoint, completeTx: a.CompleteTx}
}

// Inputs decodes the step's own inputs, such as a batch worker's BatchInputs, into v. It returns
// an error when the step has none.
func (s *Step) Inputs(v any) error {
	if len(s.inputs) == 0 {
		return fmt.Errorf("step %q has no inputs", s.Name)
	}
	return json.Unmarshal(s.inputs, v)
}

// Batch returns a batch worker's cursor and batch settings; ok is false for other steps.
func (s *Step) Batch() (in BatchInputs, ok bool) {
	if len(s.inputs) == 0 || json.Unmarshal(s.inputs, &in) != nil {
		return BatchInputs{}, false
	}
	return in, in.Cursor.BatchID != ""
}

// Checkpoint saves v (any JSON-encodable value: a cursor position, items processed, partial
// results) as the step's checkpoint, while this attempt still holds the step. A later attempt
// after a failure or a crash reads it with LoadCheckpoint and resumes from there. A value that
// is not JSON-encodable or that the database cannot store returns a *ValueError (errors.Is
// ErrInvalidValue), and one over Config.MaxPayloadBytes ErrPayloadTooLarge; either saves nothing.
func (s *Step) Checkpoint(ctx context.Context, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("checkpoint of %q: %w", s.Name, &ValueError{Field: "checkpoint", Reason: "not JSON-encodable: " + err.Error(), Err: err})
	}
	if s.maxCheckpoint > 0 && len(raw) > s.maxCheckpoint {
		return fmt.Errorf("checkpoint of %q: %w: %d bytes, limit %d (Config.MaxPayloadBytes)", s.Name, ErrPayloadTooLarge, len(raw), s.maxCheckpoint)
	}
	if err := checkValue("checkpoint", raw); err != nil {
		return fmt.Errorf("checkpoint of %q: %w", s.Name, err)
	}
	if s.save == nil {
		return fmt.Errorf("checkpoint of %q: not available", s.Name)
	}
	s.checkpoint = raw
	return s.save(ctx, raw)
}

// CompleteTx records this attempt's success with result inside the caller's transaction tx, so
// that the handler's own writes and its step's completion commit together or not at all (River's
// JobCompleteTx). The step's dependents are released and its task settled only if tx commits;
// with a queue outside the database their messages are published once the commit is announced.
// The handler then returns result as usual: after a commit the engine finds the step complete
// and only acks its message; after a rollback it records the outcome itself.
//
// A result that is not JSON-encodable or that the database cannot store returns a *ValueError
// (errors.Is ErrInvalidValue), one over Config.MaxPayloadBytes ErrPayloadTooLarge, before
// anything is written; ErrNotTransactional means the store cannot join tx (store/memory). A refusal rolls
// back to a savepoint, so tx stays usable.
func (s *Step) CompleteTx(ctx context.Context, tx pgx.Tx, result any) error {
	if s.completeTx == nil {
		return fmt.Errorf("complete step %q: not available outside a handler's attempt", s.Name)
	}
	if tx == nil {
		return fmt.Errorf("complete step %q: %w: nil tx", s.Name, ErrNotTransactional)
	}
	raw, err := json.Marshal(result)
	if err != nil {
		return fmt.Errorf("complete step %q: %w", s.Name, &ValueError{Field: "result", Reason: "not JSON-encodable: " + err.Error(), Err: err})
	}
	if s.maxCheckpoint > 0 && len(raw) > s.maxCheckpoint {
		return fmt.Errorf("complete step %q: %w: %d bytes, limit %d (Config.MaxPayloadBytes)", s.Name, ErrPayloadTooLarge, len(raw), s.maxCheckpoint)
	}
	if err := checkValue("result", raw); err != nil {
		return fmt.Errorf("complete step %q: %w", s.Name, err)
	}
	return s.completeTx(ctx, tx, json.RawMessage(raw))
}

// LoadCheckpoint decodes the latest checkpoint into v and reports whether there was one.
func (s *Step) LoadCheckpoint(v any) (bool, error) {
	if len(s.checkpoint) == 0 {
		return false, nil
	}
	return true, json.Unmarshal(s.checkpoint, v)
}

// Input decodes the task's context into v.
func (s *Step) Input(v any) error {
	if err := json.Unmarshal(s.context, v); err != nil {
		return fmt.Errorf("decode task context: %w", err)
	}
	return nil
}

// RawInput returns the task's context as JSON.
func (s *Step) RawInput() json.RawMessage { return s.context }

// Config returns the step's handler.initialization from its template (nil when there is none);
// a batch worker's also holds its "cursor", "batch_metadata" and "is_no_op", as in Tasker Core.
// The map is the step's own copy.
func (s *Step) Config() map[string]any { return s.config }

// Method is the step's handler.method from its template: which entry point of a handler that
// serves several steps should run (Tasker Core's method dispatch). "" means the default.
func (s *Step) Method() string { return s.method }

// DecodeConfig decodes the step's handler.initialization into v.
func (s *Step) DecodeConfig(v any) error {
	b, err := json.Marshal(s.config)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// DependencyResult decodes the result of an ancestor step (a direct parent or any step before it
// in the DAG) into v. It returns an error naming the step when there is no such result.
func (s *Step) DependencyResult(name string, v any) error {
	r, ok := s.results[name]
	if !ok {
		return fmt.Errorf("step %q has no result from %q; its ancestors with results are %v", s.Name, name, s.DependencyNames())
	}
	if err := json.Unmarshal(r, v); err != nil {
		return fmt.Errorf("decode result of %q: %w", name, err)
	}
	return nil
}

// DependencyResults returns the ancestors' results by step name, as JSON.
func (s *Step) DependencyResults() map[string]json.RawMessage { return s.results }

// DependencyNames lists the ancestors whose results the step sees, sorted.
func (s *Step) DependencyNames() []string {
	names := make([]string, 0, len(s.results))
	for n := range s.results {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

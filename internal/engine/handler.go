package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-systems/tasker/store"
)

// Handler runs one attempt of a step. The root package adapts a tasker.Handler to it, building
// the *tasker.Step from the Attempt and sorting the handler's error into a Return.
type Handler interface {
	Handle(ctx context.Context, a *Attempt) Return
}

// Attempt is what the executor knows of one claimed attempt; the root builds *tasker.Step from it.
type Attempt struct {
	TaskID, StepID uuid.UUID
	// Name is the step's name (a batch worker's own).
	Name                         string
	Namespace, TaskName, Version string
	// Number is this attempt's number, from 1.
	Number, MaxAttempts int
	CorrelationID       string
	// Context is the task's context; Inputs and Checkpoint are the step's.
	Context, Inputs, Checkpoint json.RawMessage
	// Method is the template step's handler.method.
	Method string
	// Config is a clone of handler.initialization plus a batch worker's inputs.
	Config map[string]any
	// Results are the ancestors' results by step name.
	Results map[string]json.RawMessage
	// MaxCheckpoint bounds a checkpoint, in bytes.
	MaxCheckpoint int
	// SaveCheckpoint stores a checkpoint for this attempt.
	SaveCheckpoint func(ctx context.Context, raw json.RawMessage) error
	// LastError is the step's latest error record (a Failure), if any: a parked step's says until
	// when it parked.
	LastError json.RawMessage
	// CompleteTx records this attempt's success with result inside the caller's transaction tx
	// (store.Tx): its dependents are released and its task settled only if tx commits. It returns
	// store.ErrNotTransactional on a store that cannot join tx.
	CompleteTx func(ctx context.Context, tx store.Tx, result any) error
}

// Return is a handler's outcome, sorted by the root, which alone knows its error types.
type Return struct {
	// Result is marshalled by the engine (limits, storable check).
	Result any
	// Err is nil on success; for ClassPermanent the unwrapped cause.
	Err   error
	Class Class
	// RetryAfter is the wait a ClassRetryAfter error asks for (and a ClassPark one).
	RetryAfter time.Duration
	// Until is, for ClassPark, the time the step waits for, on the engine's clock; the zero time
	// means RetryAfter from now.
	Until time.Time
}

// Class sorts a handler's return.
type Class int

// The classes of Return.
const (
	// ClassOK is a success.
	ClassOK Class = iota
	// ClassRetryable is an error the step's retry policy applies to.
	ClassRetryable
	// ClassPermanent is an error that fails the step for good.
	ClassPermanent
	// ClassRetryAfter is a retryable error that asks for its own wait.
	ClassRetryAfter
	// ClassPark parks the step until RetryAfter has passed (durable sleep, waiting for a signal):
	// a retry that the step's retry policy does not count (park.go).
	ClassPark
)

// Called is what a handler call came to: its Return, or a panic, or a handler abandoned because it
// ignored its cancelled context.
type Called struct {
	Return
	Panicked  bool
	Stack     string
	Abandoned bool
}

// Failed tells whether the call did not succeed: an error of any class, a panic, or an abandoned
// handler (a *tasker.PermanentError may carry a nil cause).
func (c Called) Failed() bool { return c.Err != nil || c.Class != ClassOK || c.Abandoned }

// NoHandlerError is the error of a step whose handler is not registered in this engine.
type NoHandlerError struct{ Name string }

func (e *NoHandlerError) Error() string {
	return fmt.Sprintf("no handler registered for %q: call Engine.Handle(%q, ...)", e.Name, e.Name)
}

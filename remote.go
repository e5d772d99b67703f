package tasker

import (
	"context"
	"encoding/json"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-systems/tasker/internal/engine"
)

// Errors of the remote-worker calls (package workerapi serves them over HTTP).
var (
	// ErrRemoteStepNotFound: no such step.
	ErrRemoteStepNotFound = engine.ErrRemoteNotFound
	// ErrRemoteStale: the worker does not hold the step at that attempt (lease expired and the
	// step rescued, another attempt, another worker).
	ErrRemoteStale = engine.ErrRemoteStale
	// ErrRemoteTooLarge: a result over Config.MaxPayloadBytes.
	ErrRemoteTooLarge = engine.ErrRemoteTooLarge
)

// RemoteClaimParams asks for one step for a worker in another process.
type RemoteClaimParams struct {
	// WorkerID names the worker; it holds the step's lease.
	WorkerID string
	// Namespace is the queue to claim from.
	Namespace string
	// Callables are the handler callables the worker serves.
	Callables []string
	// Lease is how long the claim holds the step without a heartbeat.
	Lease time.Duration
	// Wait is how long to wait for a step (long poll).
	Wait time.Duration
}

// RemoteStep is a step claimed by a remote worker: what its handler sees.
type RemoteStep struct {
	StepID         uuid.UUID       `json:"step_id"`
	TaskID         uuid.UUID       `json:"task_id"`
	Namespace      string          `json:"namespace"`
	TaskName       string          `json:"task_name"`
	Version        string          `json:"version"`
	Step           string          `json:"step"`
	Callable       string          `json:"callable"`
	Attempt        int             `json:"attempt"`
	MaxAttempts    int             `json:"max_attempts"`
	LeaseExpiresAt *time.Time      `json:"lease_expires_at,omitempty"`
	Context        json.RawMessage `json:"context"`
	Inputs         json.RawMessage `json:"inputs,omitempty"`
	// Config is the template step's handler initialization, Method its handler method.
	Config    map[string]any             `json:"config,omitempty"`
	Method    string                     `json:"method,omitempty"`
	LastError json.RawMessage            `json:"last_error,omitempty"`
	Results   map[string]json.RawMessage `json:"dependency_results"`
}

// RemoteOutcome is what a remote handler came to: a Result, or an error (Failed) that is
// Retryable or permanent, with an optional RetryAfter.
type RemoteOutcome = engine.RemoteOutcome

// RemoteClaim claims a step whose callable is in p.Callables for a remote worker, with the
// engine's lease; nil, nil when none came within p.Wait. Steps whose callable this engine has no
// Go handler for wait on the queue for such a claim.
func (e *Engine) RemoteClaim(ctx context.Context, p RemoteClaimParams) (*RemoteStep, error) {
	c, err := e.core.RemoteClaim(ctx, engine.RemoteClaimParams(p))
	if err != nil || c == nil {
		return nil, err
	}
	config, method := e.core.RemoteConfig(c)
	return &RemoteStep{Config: config, Method: method, LastError: c.Step.LastError, StepID: c.Step.ID, TaskID: c.Task.ID, Namespace: c.Task.Namespace, TaskName: c.Task.Name,
		Version: c.Task.Version, Step: c.Step.Name, Callable: c.Step.Handler, Attempt: c.Step.Attempts,
		MaxAttempts: c.Step.MaxAttempts, LeaseExpiresAt: c.Step.LeaseExpiresAt, Context: c.Task.Context,
		Inputs: c.Step.Inputs, Results: c.Results}, nil
}

// RemoteHeartbeat renews a remote worker's lease on a step it holds at attempt.
func (e *Engine) RemoteHeartbeat(ctx context.Context, stepID uuid.UUID, workerID string, attempt int, lease time.Duration) error {
	return e.core.RemoteHeartbeat(ctx, stepID, workerID, attempt, lease)
}

// RemoteReport records a remote worker's outcome of a step it holds at attempt, as a Go
// handler's return would be recorded (retry policy, backoff, audit trail).
func (e *Engine) RemoteReport(ctx context.Context, stepID uuid.UUID, workerID string, attempt int, o RemoteOutcome) error {
	return e.core.RemoteReport(ctx, stepID, workerID, attempt, o)
}

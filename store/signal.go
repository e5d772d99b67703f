package store

import (
	"context"
	"encoding/json"

	"github.com/google/uuid"

	"github.com/tasker-systems/tasker/statemachine"
)

// Signaler is implemented by stores that deliver signals to waiting steps (tasker's
// Engine.Signal): the signal is kept in the step's checkpoint, under the key SignalKey, and a
// parked step (waiting_for_retry with an error record of kind "parked") is made due at once, its
// retry timer sent, so that a worker runs it again and its handler finds the signal.
type Signaler interface {
	// SignalStep stores p.Signal in the named step's checkpoint unless one is there already (the
	// first signal wins), and wakes the step when it is parked, in one transaction. It returns
	// ErrNotFound for an unknown task or step and ErrConflict for a step that has finished.
	SignalStep(ctx context.Context, p SignalStepParams) (*SignalStepResult, error)
}

// SignalKey is the checkpoint key under which a step's signal is stored.
const SignalKey = "signal"

// SignalStepParams signals one step of a task.
type SignalStepParams struct {
	TaskID uuid.UUID
	// Step is the step's name in its task.
	Step string
	// Signal is the payload, a JSON document.
	Signal json.RawMessage
	// Namespace is the task's; the wake-up goes to its queue, through Enqueuer.
	Namespace string
	Enqueuer  Enqueuer
	// WakeOnly wakes a parked step and stores nothing (a child task's end wakes its parent).
	WakeOnly bool
}

// SignalStepResult says what a signal found and did.
type SignalStepResult struct {
	StepID uuid.UUID
	// State is the step's state when the signal arrived.
	State statemachine.StepState
	// Stored is false when the step already held a signal (which is kept).
	Stored bool
	// Woken is true when the step was parked and is now due, its retry timer sent.
	Woken bool
}

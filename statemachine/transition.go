package statemachine

import (
	"errors"
	"fmt"
)

// ErrIllegalTransition is the sentinel every rejected transition or path
// matches with errors.Is.
var ErrIllegalTransition = errors.New("illegal transition")

// TransitionError says why an event cannot move a task or step from a state:
// the state is terminal, the state or event is unknown, or the table has no
// row for the pair. It matches [ErrIllegalTransition] with errors.Is.
type TransitionError struct {
	// Machine is "task" or "step".
	Machine string
	// From is the state the move was asked from.
	From string
	// Event is the event that was applied.
	Event string
	// Reason says why the move is illegal.
	Reason string
}

// Error formats the error as
// `illegal step transition: "complete" --start-->: "complete" is terminal`.
func (e *TransitionError) Error() string {
	return fmt.Sprintf("illegal %s transition: %q --%s-->: %s", e.Machine, e.From, e.Event, e.Reason)
}

// Is reports whether target is [ErrIllegalTransition].
func (e *TransitionError) Is(target error) bool { return target == ErrIllegalTransition }

// NextTask returns the state event ev moves a task in state from to. An
// illegal move returns a *[TransitionError].
func NextTask(from TaskState, ev TaskEvent) (TaskState, error) {
	return taskMachine.step(from, ev)
}

// NextStep returns the state event ev moves a step in state from to. An
// illegal move returns a *[TransitionError].
func NextStep(from StepState, ev StepEvent) (StepState, error) {
	return stepMachine.step(from, ev)
}

// ValidateTaskPath checks a recorded history of task states: it must start at
// pending and every consecutive pair must be joined by some event. The error
// names the first illegal hop and matches [ErrIllegalTransition].
func ValidateTaskPath(states []TaskState) error {
	return taskMachine.validatePath(TaskPending, states)
}

// ValidateStepPath checks a recorded history of step states: it must start at
// pending and every consecutive pair must be joined by some event. The error
// names the first illegal hop and matches [ErrIllegalTransition].
func ValidateStepPath(states []StepState) error {
	return stepMachine.validatePath(StepPending, states)
}

// IsLegalTaskPath reports whether [ValidateTaskPath] accepts states.
func IsLegalTaskPath(states []TaskState) bool { return ValidateTaskPath(states) == nil }

// IsLegalStepPath reports whether [ValidateStepPath] accepts states.
func IsLegalStepPath(states []StepState) bool { return ValidateStepPath(states) == nil }

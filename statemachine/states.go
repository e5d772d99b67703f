package statemachine

import "slices"

// TaskState is the state of a task. The zero value is not a valid state.
type TaskState string

// Task states, in the order [TaskStates] returns them.
const (
	// TaskPending is a created task whose steps have not been looked at yet.
	TaskPending TaskState = "pending"
	// TaskInitializing is a task being prepared for its first steps.
	TaskInitializing TaskState = "initializing"
	// TaskEnqueuingSteps is a task whose ready steps are being enqueued.
	TaskEnqueuingSteps TaskState = "enqueuing_steps"
	// TaskStepsInProcess is a task with enqueued or running steps.
	TaskStepsInProcess TaskState = "steps_in_process"
	// TaskEvaluatingResults is a task deciding what to do after a step result.
	TaskEvaluatingResults TaskState = "evaluating_results"
	// TaskWaitingForDependencies is a task whose remaining steps wait on running parents.
	TaskWaitingForDependencies TaskState = "waiting_for_dependencies"
	// TaskWaitingForRetry is a task whose remaining work waits for a step's backoff.
	TaskWaitingForRetry TaskState = "waiting_for_retry"
	// TaskBlockedByFailures is a task with a step that failed for good; it
	// waits for an operator and is settled but not terminal.
	TaskBlockedByFailures TaskState = "blocked_by_failures"
	// TaskComplete is a task whose steps all finished. Terminal.
	TaskComplete TaskState = "complete"
	// TaskError is a task that failed. Terminal.
	TaskError TaskState = "error"
	// TaskCancelled is a task that was cancelled. Terminal.
	TaskCancelled TaskState = "cancelled"
	// TaskResolvedManually is a task an operator closed by hand. Terminal.
	TaskResolvedManually TaskState = "resolved_manually"
)

var taskStates = []TaskState{
	TaskPending,
	TaskInitializing,
	TaskEnqueuingSteps,
	TaskStepsInProcess,
	TaskEvaluatingResults,
	TaskWaitingForDependencies,
	TaskWaitingForRetry,
	TaskBlockedByFailures,
	TaskComplete,
	TaskError,
	TaskCancelled,
	TaskResolvedManually,
}

// TaskStates returns every task state in a stable order, pending first and the
// terminal states last. The caller owns the returned slice.
func TaskStates() []TaskState { return slices.Clone(taskStates) }

// Valid reports whether s is one of the task states.
func (s TaskState) Valid() bool { return slices.Contains(taskStates, s) }

// Terminal reports whether s is a state no event leaves: complete, error,
// cancelled or resolved_manually.
func (s TaskState) Terminal() bool {
	switch s {
	case TaskComplete, TaskError, TaskCancelled, TaskResolvedManually:
		return true
	}
	return false
}

// Settled reports whether a task in s needs nothing more from the engine, so a
// waiter may return: s is terminal or blocked_by_failures.
func (s TaskState) Settled() bool { return s.Terminal() || s == TaskBlockedByFailures }

// StepState is the state of a step. The zero value is not a valid state.
type StepState string

// Step states, in the order [StepStates] returns them.
const (
	// StepPending is a step that has not been enqueued yet.
	StepPending StepState = "pending"
	// StepEnqueued is a step sent to the queue and waiting for a worker.
	StepEnqueued StepState = "enqueued"
	// StepInProgress is a step a worker has claimed and is running.
	StepInProgress StepState = "in_progress"
	// StepEnqueuedForOrchestration is a step whose handler outcome was
	// recorded and which waits for orchestration to act on it.
	StepEnqueuedForOrchestration StepState = "enqueued_for_orchestration"
	// StepWaitingForRetry is a step that failed retryably and waits out its backoff.
	StepWaitingForRetry StepState = "waiting_for_retry"
	// StepComplete is a step that succeeded. Terminal.
	StepComplete StepState = "complete"
	// StepError is a step that failed for good. Not terminal: an operator may
	// reset, resolve or complete it.
	StepError StepState = "error"
	// StepCancelled is a step that was cancelled. Terminal.
	StepCancelled StepState = "cancelled"
	// StepResolvedManually is a step an operator closed by hand. Terminal.
	StepResolvedManually StepState = "resolved_manually"
)

var stepStates = []StepState{
	StepPending,
	StepEnqueued,
	StepInProgress,
	StepEnqueuedForOrchestration,
	StepWaitingForRetry,
	StepComplete,
	StepError,
	StepCancelled,
	StepResolvedManually,
}

// StepStates returns every step state in a stable order, pending first. The
// caller owns the returned slice.
func StepStates() []StepState { return slices.Clone(stepStates) }

// Valid reports whether s is one of the step states.
func (s StepState) Valid() bool { return slices.Contains(stepStates, s) }

// Terminal reports whether s is a state no event leaves: complete, cancelled
// or resolved_manually. error is not terminal because operators act on it.
func (s StepState) Terminal() bool {
	switch s {
	case StepComplete, StepCancelled, StepResolvedManually:
		return true
	}
	return false
}

// Finished reports whether a step in s satisfies its dependents: s is complete
// or resolved_manually. A cancelled step is terminal but releases nobody.
func (s StepState) Finished() bool { return s == StepComplete || s == StepResolvedManually }

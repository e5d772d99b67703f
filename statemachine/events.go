package statemachine

import "slices"

// TaskEvent names something that happened to a task; with the current state
// it selects a row of the task table.
type TaskEvent string

// Task events, in the order [TaskEvents] returns them.
const (
	// TaskEventStart begins work on a pending task.
	TaskEventStart TaskEvent = "start"
	// TaskEventInitialized ends initialization.
	TaskEventInitialized TaskEvent = "initialized"
	// TaskEventStepsEnqueued reports that the ready steps were enqueued.
	TaskEventStepsEnqueued TaskEvent = "steps_enqueued"
	// TaskEventEvaluate asks the task to look at its steps again.
	TaskEventEvaluate TaskEvent = "evaluate"
	// TaskEventReadyStepsFound reports steps ready to enqueue.
	TaskEventReadyStepsFound TaskEvent = "ready_steps_found"
	// TaskEventStepsStillRunning reports that steps are still enqueued or running.
	TaskEventStepsStillRunning TaskEvent = "steps_still_running"
	// TaskEventAwaitingDependencies reports that remaining steps wait on parents.
	TaskEventAwaitingDependencies TaskEvent = "awaiting_dependencies"
	// TaskEventAwaitingRetry reports that remaining work waits for a backoff.
	TaskEventAwaitingRetry TaskEvent = "awaiting_retry"
	// TaskEventPermanentFailure reports a step that failed for good.
	TaskEventPermanentFailure TaskEvent = "permanent_failure"
	// TaskEventAllStepsComplete reports that every step finished.
	TaskEventAllStepsComplete TaskEvent = "all_steps_complete"
	// TaskEventOperatorFix resumes a blocked task after an operator fixed its steps.
	TaskEventOperatorFix TaskEvent = "operator_fix"
	// TaskEventResolveManually lets an operator close a blocked task.
	TaskEventResolveManually TaskEvent = "resolve_manually"
	// TaskEventFail fails the task from any non-terminal state.
	TaskEventFail TaskEvent = "fail"
	// TaskEventCancel cancels the task from any non-terminal state.
	TaskEventCancel TaskEvent = "cancel"
)

var taskEvents = []TaskEvent{
	TaskEventStart,
	TaskEventInitialized,
	TaskEventStepsEnqueued,
	TaskEventEvaluate,
	TaskEventReadyStepsFound,
	TaskEventStepsStillRunning,
	TaskEventAwaitingDependencies,
	TaskEventAwaitingRetry,
	TaskEventPermanentFailure,
	TaskEventAllStepsComplete,
	TaskEventOperatorFix,
	TaskEventResolveManually,
	TaskEventFail,
	TaskEventCancel,
}

// TaskEvents returns every task event in a stable order. The caller owns the
// returned slice.
func TaskEvents() []TaskEvent { return slices.Clone(taskEvents) }

// Valid reports whether e is one of the task events.
func (e TaskEvent) Valid() bool { return slices.Contains(taskEvents, e) }

// StepEvent names something that happened to a step; with the current state
// it selects a row of the step table.
type StepEvent string

// Step events, in the order [StepEvents] returns them.
const (
	// StepEventEnqueue sends a step to the queue.
	StepEventEnqueue StepEvent = "enqueue"
	// StepEventStart is a worker claiming an enqueued step.
	StepEventStart StepEvent = "start"
	// StepEventReport records a handler outcome that orchestration will act on later.
	StepEventReport StepEvent = "report"
	// StepEventComplete records success.
	StepEventComplete StepEvent = "complete"
	// StepEventFailRetryable records a failure that will be retried.
	StepEventFailRetryable StepEvent = "fail_retryable"
	// StepEventFailPermanent records a failure that will not be retried.
	StepEventFailPermanent StepEvent = "fail_permanent"
	// StepEventRelease gives a claimed step back to the queue (shutdown or
	// lease rescue).
	StepEventRelease StepEvent = "release"
	// StepEventReset lets an operator retry a failed step.
	StepEventReset StepEvent = "reset"
	// StepEventResolveManually lets an operator close a failed step.
	StepEventResolveManually StepEvent = "resolve_manually"
	// StepEventCompleteManually lets an operator complete a failed step with a
	// given result.
	StepEventCompleteManually StepEvent = "complete_manually"
	// StepEventCancel cancels the step from any non-terminal state.
	StepEventCancel StepEvent = "cancel"
	// StepEventSchedule makes a new task's root step wait for the task's scheduled start
	// (TaskRequest.RunAt), as a retry waits for its backoff: in waiting_for_retry with its
	// next_retry_at at the start, with no attempt spent.
	StepEventSchedule StepEvent = "schedule"
)

var stepEvents = []StepEvent{
	StepEventEnqueue,
	StepEventStart,
	StepEventReport,
	StepEventComplete,
	StepEventFailRetryable,
	StepEventFailPermanent,
	StepEventRelease,
	StepEventReset,
	StepEventResolveManually,
	StepEventCompleteManually,
	StepEventCancel,
	StepEventSchedule,
}

// StepEvents returns every step event in a stable order. The caller owns the
// returned slice.
func StepEvents() []StepEvent { return slices.Clone(stepEvents) }

// Valid reports whether e is one of the step events.
func (e StepEvent) Valid() bool { return slices.Contains(stepEvents, e) }

package statemachine

import "slices"

// TaskTransition is one row of the task table: in state From, event Event
// moves the task to To.
type TaskTransition struct {
	From  TaskState
	Event TaskEvent
	To    TaskState
}

// StepTransition is one row of the step table: in state From, event Event
// moves the step to To.
type StepTransition struct {
	From  StepState
	Event StepEvent
	To    StepState
}

// taskTransitions is the task table. Every legal move is a row; anything not
// here is illegal. fail and cancel are spelled out for each non-terminal
// state so the table is the whole truth.
var taskTransitions = []TaskTransition{
	{TaskPending, TaskEventStart, TaskInitializing},
	{TaskInitializing, TaskEventInitialized, TaskEnqueuingSteps},
	{TaskEnqueuingSteps, TaskEventStepsEnqueued, TaskStepsInProcess},

	{TaskStepsInProcess, TaskEventEvaluate, TaskEvaluatingResults},
	{TaskWaitingForDependencies, TaskEventEvaluate, TaskEvaluatingResults},
	{TaskWaitingForRetry, TaskEventEvaluate, TaskEvaluatingResults},

	{TaskEvaluatingResults, TaskEventReadyStepsFound, TaskEnqueuingSteps},
	{TaskWaitingForRetry, TaskEventReadyStepsFound, TaskEnqueuingSteps},
	{TaskWaitingForDependencies, TaskEventReadyStepsFound, TaskEnqueuingSteps},

	{TaskEvaluatingResults, TaskEventStepsStillRunning, TaskStepsInProcess},
	{TaskEvaluatingResults, TaskEventAwaitingDependencies, TaskWaitingForDependencies},
	{TaskEvaluatingResults, TaskEventAwaitingRetry, TaskWaitingForRetry},
	{TaskEvaluatingResults, TaskEventPermanentFailure, TaskBlockedByFailures},
	{TaskEvaluatingResults, TaskEventAllStepsComplete, TaskComplete},

	{TaskBlockedByFailures, TaskEventOperatorFix, TaskEvaluatingResults},
	{TaskBlockedByFailures, TaskEventResolveManually, TaskResolvedManually},

	{TaskPending, TaskEventFail, TaskError},
	{TaskInitializing, TaskEventFail, TaskError},
	{TaskEnqueuingSteps, TaskEventFail, TaskError},
	{TaskStepsInProcess, TaskEventFail, TaskError},
	{TaskEvaluatingResults, TaskEventFail, TaskError},
	{TaskWaitingForDependencies, TaskEventFail, TaskError},
	{TaskWaitingForRetry, TaskEventFail, TaskError},
	{TaskBlockedByFailures, TaskEventFail, TaskError},

	{TaskPending, TaskEventCancel, TaskCancelled},
	{TaskInitializing, TaskEventCancel, TaskCancelled},
	{TaskEnqueuingSteps, TaskEventCancel, TaskCancelled},
	{TaskStepsInProcess, TaskEventCancel, TaskCancelled},
	{TaskEvaluatingResults, TaskEventCancel, TaskCancelled},
	{TaskWaitingForDependencies, TaskEventCancel, TaskCancelled},
	{TaskWaitingForRetry, TaskEventCancel, TaskCancelled},
	{TaskBlockedByFailures, TaskEventCancel, TaskCancelled},
}

// stepTransitions is the step table; see taskTransitions.
var stepTransitions = []StepTransition{
	{StepPending, StepEventEnqueue, StepEnqueued},
	{StepWaitingForRetry, StepEventEnqueue, StepEnqueued},
	// A scheduled task's roots wait for its start as retries wait for their backoff.
	{StepPending, StepEventSchedule, StepWaitingForRetry},

	{StepEnqueued, StepEventStart, StepInProgress},
	{StepInProgress, StepEventReport, StepEnqueuedForOrchestration},

	{StepInProgress, StepEventComplete, StepComplete},
	{StepEnqueuedForOrchestration, StepEventComplete, StepComplete},

	{StepInProgress, StepEventFailRetryable, StepWaitingForRetry},
	{StepEnqueuedForOrchestration, StepEventFailRetryable, StepWaitingForRetry},

	{StepInProgress, StepEventFailPermanent, StepError},
	{StepEnqueuedForOrchestration, StepEventFailPermanent, StepError},

	// Shutdown give-back or lease rescue puts the step back in the queue.
	{StepInProgress, StepEventRelease, StepEnqueued},

	// Operator actions on a failed step.
	{StepError, StepEventReset, StepPending},
	{StepError, StepEventResolveManually, StepResolvedManually},
	{StepError, StepEventCompleteManually, StepComplete},

	{StepPending, StepEventCancel, StepCancelled},
	{StepEnqueued, StepEventCancel, StepCancelled},
	{StepInProgress, StepEventCancel, StepCancelled},
	{StepEnqueuedForOrchestration, StepEventCancel, StepCancelled},
	{StepWaitingForRetry, StepEventCancel, StepCancelled},
	{StepError, StepEventCancel, StepCancelled},
}

// TaskTable returns the task transition table, one row per legal (state,
// event) pair, in a stable order. The caller owns the returned slice; changing
// it does not change the machine.
func TaskTable() []TaskTransition { return slices.Clone(taskTransitions) }

// StepTable returns the step transition table, one row per legal (state,
// event) pair, in a stable order. The caller owns the returned slice; changing
// it does not change the machine.
func StepTable() []StepTransition { return slices.Clone(stepTransitions) }

var (
	taskMachine = newMachine("task", taskStates, taskEvents, TaskState.Terminal,
		rowsOf(taskTransitions, func(t TaskTransition) row[TaskState, TaskEvent] {
			return row[TaskState, TaskEvent]{t.From, t.Event, t.To}
		}))
	stepMachine = newMachine("step", stepStates, stepEvents, StepState.Terminal,
		rowsOf(stepTransitions, func(t StepTransition) row[StepState, StepEvent] {
			return row[StepState, StepEvent]{t.From, t.Event, t.To}
		}))
)

func rowsOf[T any, S, E ~string](ts []T, conv func(T) row[S, E]) []row[S, E] {
	rows := make([]row[S, E], len(ts))
	for i, t := range ts {
		rows[i] = conv(t)
	}
	return rows
}

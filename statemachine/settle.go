package statemachine

import "fmt"

// StepCounts summarises a task's steps for deciding its state, as the stores keep it in
// counters (so that no step is scanned on the hot path).
type StepCounts struct {
	// Unfinished counts steps not complete, resolved_manually or cancelled.
	Unfinished int
	// Active counts steps enqueued, in progress or enqueued for orchestration.
	Active int
	// Failed counts steps in error.
	Failed int
	// Isolated counts the failed steps whose batch isolates failures: the rest of the task goes on.
	Isolated int
}

// Target is the state a task with these counts settles in: blocked_by_failures while a failure
// blocks it (or only isolated failures are left and nothing runs), complete when nothing is
// unfinished, steps_in_process while steps run, and otherwise waiting_for_retry (only steps
// waiting for their backoff, and the steps behind them, can be left).
func (c StepCounts) Target() TaskState {
	switch {
	case c.Failed-c.Isolated > 0:
		return TaskBlockedByFailures
	case c.Unfinished == 0:
		return TaskComplete
	case c.Active > 0:
		return TaskStepsInProcess
	case c.Failed > 0:
		return TaskBlockedByFailures
	default:
		return TaskWaitingForRetry
	}
}

// AtRest reports whether a task in state s, with active steps enqueued, in progress or enqueued
// for orchestration (StepCounts.Active), needs nothing more from the engine for now: it is
// terminal, or blocked_by_failures with no step left active. Steps of a blocked task that are
// active still run and record their outcomes; the task's pending steps and its steps waiting for
// a retry stay as they are until an operator's fix resumes the task, so they do not keep it from
// rest.
func AtRest(s TaskState, active int) bool {
	return s.Terminal() || (s == TaskBlockedByFailures && active == 0)
}

// SettlePath is the legal path from a task's current state to the state its counts call for,
// through evaluating_results as the machine requires; empty when the task stays (a terminal task
// always stays). It returns the path and the state it ends in.
func SettlePath(cur TaskState, c StepCounts) ([]TaskTransition, TaskState, error) {
	want := c.Target()
	if cur.Terminal() || cur == want {
		return nil, cur, nil
	}
	var events []TaskEvent
	switch cur {
	case TaskBlockedByFailures:
		events = append(events, TaskEventOperatorFix)
	case TaskStepsInProcess, TaskWaitingForRetry, TaskWaitingForDependencies:
		events = append(events, TaskEventEvaluate)
	case TaskEvaluatingResults:
	default:
		return nil, cur, fmt.Errorf("settle: a task in %s does not settle by its counts", cur)
	}
	switch want {
	case TaskComplete:
		events = append(events, TaskEventAllStepsComplete)
	case TaskBlockedByFailures:
		events = append(events, TaskEventPermanentFailure)
	case TaskWaitingForRetry:
		events = append(events, TaskEventAwaitingRetry)
	case TaskStepsInProcess:
		events = append(events, TaskEventReadyStepsFound, TaskEventStepsEnqueued)
	}
	path := make([]TaskTransition, 0, len(events))
	at := cur
	for _, ev := range events {
		next, err := NextTask(at, ev)
		if err != nil {
			return nil, cur, err
		}
		path = append(path, TaskTransition{From: at, Event: ev, To: next})
		at = next
	}
	return path, want, nil
}

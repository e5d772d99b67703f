package statemachine_test

import (
	"errors"
	"fmt"

	"github.com/tasker-systems/tasker/statemachine"
)

// A step's happy path, one event at a time: the table gives the next state, and the engine then
// writes it with a compare-and-set on the state it started from.
func ExampleNextStep() {
	s := statemachine.StepPending
	for _, ev := range []statemachine.StepEvent{
		statemachine.StepEventEnqueue,
		statemachine.StepEventStart,
		statemachine.StepEventComplete,
	} {
		next, err := statemachine.NextStep(s, ev)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%s --%s--> %s\n", s, ev, next)
		s = next
	}
	fmt.Println("terminal:", s.Terminal(), "releases dependents:", s.Finished())
	// Output:
	// pending --enqueue--> enqueued
	// enqueued --start--> in_progress
	// in_progress --complete--> complete
	// terminal: true releases dependents: true
}

// A task blocked by a failed step is settled (a waiter returns) but not terminal: an operator's
// fix sends it back to evaluating_results.
func ExampleNextTask() {
	blocked := statemachine.TaskBlockedByFailures
	fmt.Println("settled:", blocked.Settled(), "terminal:", blocked.Terminal())
	next, err := statemachine.NextTask(blocked, statemachine.TaskEventOperatorFix)
	fmt.Println(next, err)
	// Output:
	// settled: true terminal: false
	// evaluating_results <nil>
}

// An illegal move returns a *TransitionError saying why; it matches ErrIllegalTransition.
func ExampleTransitionError() {
	_, err := statemachine.NextStep(statemachine.StepComplete, statemachine.StepEventStart)
	var terr *statemachine.TransitionError
	if errors.As(err, &terr) {
		fmt.Printf("machine=%s from=%s event=%s reason=%s\n", terr.Machine, terr.From, terr.Event, terr.Reason)
	}
	fmt.Println(errors.Is(err, statemachine.ErrIllegalTransition))

	// A state that does not accept the event is just as illegal.
	_, err = statemachine.NextTask(statemachine.TaskPending, statemachine.TaskEventAllStepsComplete)
	fmt.Println(err)
	// Output:
	// machine=step from=complete event=start reason="complete" is terminal
	// true
	// illegal task transition: "pending" --all_steps_complete-->: "pending" does not accept "all_steps_complete"
}

// A recorded history is legal when it starts at pending and some event joins every hop; the
// error names the first hop that no event explains.
func ExampleValidateStepPath() {
	retried := []statemachine.StepState{
		statemachine.StepPending, statemachine.StepEnqueued, statemachine.StepInProgress,
		statemachine.StepWaitingForRetry, statemachine.StepEnqueued, statemachine.StepInProgress,
		statemachine.StepComplete,
	}
	fmt.Println(statemachine.ValidateStepPath(retried))

	skipped := []statemachine.StepState{statemachine.StepPending, statemachine.StepInProgress}
	err := statemachine.ValidateStepPath(skipped)
	fmt.Println(err)
	fmt.Println(errors.Is(err, statemachine.ErrIllegalTransition))
	// Output:
	// <nil>
	// step path: hop 1 "pending" -> "in_progress": no event leads there: illegal transition
	// true
}

// SettlePath is how a store moves a task after a step's outcome: from its counters to the state
// they call for, through evaluating_results.
func ExampleSettlePath() {
	for _, counts := range []statemachine.StepCounts{
		{Unfinished: 0},            // every step finished
		{Unfinished: 2, Failed: 1}, // a step failed for good, another waits behind it
	} {
		path, final, err := statemachine.SettlePath(statemachine.TaskStepsInProcess, counts)
		if err != nil {
			fmt.Println(err)
			return
		}
		for _, t := range path {
			fmt.Printf("%s --%s--> %s\n", t.From, t.Event, t.To)
		}
		fmt.Println("settles in", final)
	}
	// Output:
	// steps_in_process --evaluate--> evaluating_results
	// evaluating_results --all_steps_complete--> complete
	// settles in complete
	// steps_in_process --evaluate--> evaluating_results
	// evaluating_results --permanent_failure--> blocked_by_failures
	// settles in blocked_by_failures
}

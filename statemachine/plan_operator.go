package statemachine

import "fmt"

// OperatorAction is what an operator does to a step in error. Its values are
// store.OperatorAction's.
type OperatorAction string

// The operator actions.
const (
	// OperatorRetry resets the step for a fresh set of attempts and enqueues it.
	OperatorRetry OperatorAction = "retry"
	// OperatorResolve marks the step resolved_manually.
	OperatorResolve OperatorAction = "resolve"
	// OperatorComplete completes the step with a result the operator gives.
	OperatorComplete OperatorAction = "complete"
)

// OperatorTarget is the state an operator action leaves its step in, known before the step is
// read: a store may move the step with a compare-and-set on error in its first statement.
func OperatorTarget(a OperatorAction) (StepState, error) {
	switch a {
	case OperatorRetry:
		return StepEnqueued, nil
	case OperatorResolve:
		return StepResolvedManually, nil
	case OperatorComplete:
		return StepComplete, nil
	}
	return "", fmt.Errorf("unknown operator action %q", a)
}

// StepHop is one step transition a plan writes, with its metadata (nil for none).
type StepHop struct {
	StepTransition
	Meta map[string]any
}

// FixedStep is what the planner needs of the step an operator fixes.
type FixedStep struct {
	// Isolates is set when the step's batch isolates failures (failure strategy "isolate").
	Isolates bool
	// InBatch is set for a batch worker (a step with a batch group).
	InBatch bool
}

// OperatorPlan is an operator action's effect on its step and task.
type OperatorPlan struct {
	// Target is the step's new state.
	Target StepState
	// Path is the step's transitions from error, in order, each with its metadata.
	Path []StepHop
	// Meta is the operator and reason, on the step's first transition and the task's.
	Meta map[string]any
	// EnqueueSelf is set for a retry: the step itself is enqueued again.
	EnqueueSelf bool
	// ReleasesChildren is set when the step is resolved or completed: it counts itself off its
	// children's unfinished parents, as a completion does.
	ReleasesChildren bool
	// UnholdsSibling is set when the fixed batch worker's slot goes to a held sibling.
	UnholdsSibling bool
	// Resumes is set when no failure that blocks the task is left: the steps the fix releases
	// (children, a sibling) are enqueued; otherwise they stay pending.
	Resumes bool
	// Rearm is set when the task was blocked and resumes: its pending steps that are ready
	// ([JoinReady]) are enqueued, and its steps waiting for a retry get their timer message again.
	Rearm bool

	before    TaskCounters
	isolation int // the change to the isolated failures
}

// PlanOperator plans action a on step, a step in error of a task with counters before. It
// refuses a task that is terminal with a *[RefusedError]; the store checks that the step is in
// error.
func PlanOperator(a OperatorAction, before TaskCounters, step FixedStep, operator, reason string) (OperatorPlan, error) {
	if before.State.Terminal() {
		return OperatorPlan{}, refused("task is %s", before.State)
	}
	target, err := OperatorTarget(a)
	if err != nil {
		return OperatorPlan{}, err
	}
	var events []StepEvent
	switch a {
	case OperatorRetry:
		events = []StepEvent{StepEventReset, StepEventEnqueue}
	case OperatorResolve:
		events = []StepEvent{StepEventResolveManually}
	case OperatorComplete:
		events = []StepEvent{StepEventCompleteManually}
	}
	p := OperatorPlan{Target: target, Meta: map[string]any{"operator": operator, "reason": reason}, before: before}
	at := StepError
	for i, ev := range events {
		next, err := NextStep(at, ev)
		if err != nil {
			return OperatorPlan{}, err
		}
		hop := StepHop{StepTransition: StepTransition{From: at, Event: ev, To: next}}
		if i == 0 {
			hop.Meta = p.Meta // the operator's reason goes on the fix, not on a retry's enqueueing
		}
		p.Path = append(p.Path, hop)
		at = next
	}
	if at != target {
		return OperatorPlan{}, fmt.Errorf("operator %s: the step ends in %s, not %s", a, at, target)
	}
	if step.Isolates && before.Isolated > 0 {
		p.isolation = -1
	}
	// Once this fix leaves no failed step that blocks the task, the task may run again.
	p.Resumes = (before.Failed-1)-(before.Isolated+p.isolation) == 0
	p.EnqueueSelf = a == OperatorRetry
	p.ReleasesChildren = !p.EnqueueSelf
	p.UnholdsSibling = p.ReleasesChildren && step.InBatch
	p.Rearm = p.Resumes && before.State == TaskBlockedByFailures
	return p, nil
}

// Apply plans the action's effect on the task, given how many other steps the store enqueued
// for it (released children, a sibling let go, re-armed steps).
func (p OperatorPlan) Apply(enqueued int) (CounterDelta, Settlement, error) {
	d := CounterDelta{Active: enqueued, Failed: -1, Isolated: p.isolation}
	if p.EnqueueSelf {
		d.Active++
	} else {
		d.Unfinished = -1
	}
	s, err := Settle(p.before, d)
	return d, s, err
}

// CancelPlan is a cancellation's effect on a task: every step not terminal ([Cancels]) moves to
// cancelled, the counters drop them, and the task moves to cancelled.
type CancelPlan struct {
	// Path is the task's transition to cancelled.
	Path []TaskTransition
	// State is cancelled; Settled is always set: a cancellation wakes every waiter.
	State   TaskState
	Settled bool
	// Meta is the reason, on every transition the cancellation writes.
	Meta map[string]any

	before TaskCounters
}

// PlanCancel plans the cancellation of a task with counters before. A terminal task is refused
// with a *[RefusedError].
func PlanCancel(before TaskCounters, reason string) (CancelPlan, error) {
	if before.State.Terminal() {
		return CancelPlan{}, refused("it is %s", before.State)
	}
	path, err := TaskPath(before.State, TaskEventCancel)
	if err != nil {
		return CancelPlan{}, err
	}
	return CancelPlan{Path: path, State: TaskCancelled, Settled: true, Meta: map[string]any{"reason": reason}, before: before}, nil
}

// Delta is the change to the task's counters once cancelled steps were cancelled: none is
// unfinished, active or failed any more.
func (p CancelPlan) Delta(cancelled int) CounterDelta {
	return CounterDelta{Unfinished: -cancelled, Active: -p.before.Active, Failed: -p.before.Failed, Isolated: -p.before.Isolated}
}

// PromotePlan is a retry's promotion: its step goes from waiting_for_retry to enqueued and
// becomes active again, and the task settles.
type PromotePlan struct {
	Step StepTransition
	// Meta is the step transition's metadata.
	Meta  map[string]any
	Delta CounterDelta
	Settlement
}

// PlanPromote plans the promotion of a due retry in a task with counters before. A task that
// cannot run (blocked or finished) is refused with a *[RefusedError]: an operator's fix
// re-sends its retries.
func PlanPromote(before TaskCounters) (PromotePlan, error) {
	if !before.Runnable() {
		return PromotePlan{}, refused("task is %s", before.State)
	}
	to, err := NextStep(StepWaitingForRetry, StepEventEnqueue)
	if err != nil {
		return PromotePlan{}, err
	}
	d := CounterDelta{Active: 1}
	s, err := Settle(before, d)
	if err != nil {
		return PromotePlan{}, err
	}
	return PromotePlan{
		Step:       StepTransition{From: StepWaitingForRetry, Event: StepEventEnqueue, To: to},
		Meta:       map[string]any{"reason": "backoff elapsed"},
		Delta:      d,
		Settlement: s,
	}, nil
}

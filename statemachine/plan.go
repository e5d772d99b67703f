package statemachine

import (
	"errors"
	"fmt"
)

// This file and plan_*.go are the planner: what an outcome, an operator action, a cancellation,
// a retry's promotion or a task's creation does to states and counters, decided once. A store
// reads what the plan needs (a task's counters, the steps a release made ready), asks the planner,
// and applies the answer: store/postgres as SQL, store/memory as map updates. Rules that a store
// must apply row by row inside one set-based statement (which child a release makes ready, which
// edge counts its parent as unfinished) are the predicates here, and store/postgres's SQL spells
// them out with a comment naming them; store/storetest holds both stores to the same results.

// ErrRefused is matched (errors.Is) by every *RefusedError.
var ErrRefused = errors.New("refused in this state")

// RefusedError is the planner's refusal of an action in the state it finds: cancelling a
// finished task, fixing a step of one, promoting a retry of a task that cannot run. A store
// reports it as its own conflict.
type RefusedError struct {
	// Reason says what state refused it, e.g. "task is complete".
	Reason string
}

func (e *RefusedError) Error() string { return e.Reason }

// Is makes errors.Is(err, ErrRefused) true.
func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

func refused(format string, args ...any) error {
	return &RefusedError{Reason: fmt.Sprintf(format, args...)}
}

// TaskCounters is a task's state and the step counters the stores keep on its row, so that
// deciding the task's state never scans its steps.
type TaskCounters struct {
	State TaskState
	// Total counts the task's steps.
	Total int
	// Unfinished, Active, Failed and Isolated are as in [StepCounts].
	Unfinished, Active, Failed, Isolated int
}

// Counts returns the counters [StepCounts.Target] decides by.
func (c TaskCounters) Counts() StepCounts {
	return StepCounts{Unfinished: c.Unfinished, Active: c.Active, Failed: c.Failed, Isolated: c.Isolated}
}

// Runnable reports whether the task may start steps: it is neither terminal nor
// blocked_by_failures. Steps a blocked task releases stay pending until an operator's fix re-arms
// it.
func (c TaskCounters) Runnable() bool {
	return !c.State.Terminal() && c.State != TaskBlockedByFailures
}

// Add returns the counters after d.
func (c TaskCounters) Add(d CounterDelta) TaskCounters {
	c.Total += d.Total
	c.Unfinished += d.Unfinished
	c.Active += d.Active
	c.Failed += d.Failed
	c.Isolated += d.Isolated
	return c
}

// CounterDelta is a change to a task's counters, applied in one update of its row.
type CounterDelta struct {
	Total, Unfinished, Active, Failed, Isolated int
}

// Settlement is where a change leaves a task: the counters after it, the path of task
// transitions to write (empty when the task stays, since a transition that does not change the
// state is not written) and the state it ends in.
type Settlement struct {
	After TaskCounters
	Path  []TaskTransition
	State TaskState
	// Settled is set when the change brought the task to rest ([AtRest]): it was not at rest
	// before and is after. It wakes waiters.
	Settled bool
}

// Settle applies d to before and plans the task's path to the state its counters then call for
// ([SettlePath]).
func Settle(before TaskCounters, d CounterDelta) (Settlement, error) {
	after := before.Add(d)
	path, state, err := SettlePath(before.State, after.Counts())
	if err != nil {
		return Settlement{}, err
	}
	after.State = state
	return Settlement{
		After:   after,
		Path:    path,
		State:   state,
		Settled: AtRest(state, after.Active) && !AtRest(before.State, before.Active),
	}, nil
}

// TaskPath returns the transitions events make from from, checked against the task table.
func TaskPath(from TaskState, events ...TaskEvent) ([]TaskTransition, error) {
	path := make([]TaskTransition, 0, len(events))
	at := from
	for _, ev := range events {
		next, err := NextTask(at, ev)
		if err != nil {
			return nil, err
		}
		path = append(path, TaskTransition{From: at, Event: ev, To: next})
		at = next
	}
	return path, nil
}

// CheckStepMove reports an error unless ev moves a step in from to want: stores check every
// step transition they write, so an illegal move is a programming error caught before anything
// is written.
func CheckStepMove(from StepState, ev StepEvent, want StepState) error {
	got, err := NextStep(from, ev)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("step transition %s --%s--> %s, expected %s", from, ev, got, want)
	}
	return nil
}

// EventCreate is the event of a task's or a step's first transition, from no state to pending.
// It is not in the tables: no state precedes it.
const EventCreate = "create"

// CreatePlan is what creating a task writes besides its rows: the steps' first states, the
// task's counters and its path from pending to steps_in_process.
type CreatePlan struct {
	// Roots are the indices of the steps without parents: they start enqueued, the others
	// pending.
	Roots []int
	// States are the steps' first states, by index.
	States []StepState
	// Counters are the new task's state and counters.
	Counters TaskCounters
	// Path is the task's transitions after its creation row (none → pending, EventCreate).
	Path []TaskTransition
}

// PlanCreate plans a task whose step i has parents[i] parents. A task needs a root step.
func PlanCreate(parents []int) (CreatePlan, error) {
	p := CreatePlan{States: make([]StepState, len(parents))}
	for i, n := range parents {
		p.States[i] = StepPending
		if n == 0 {
			p.States[i] = StepEnqueued
			p.Roots = append(p.Roots, i)
		}
	}
	if len(p.Roots) == 0 {
		return CreatePlan{}, fmt.Errorf("create task: no root step")
	}
	path, err := TaskPath(TaskPending, TaskEventStart, TaskEventInitialized, TaskEventStepsEnqueued)
	if err != nil {
		return CreatePlan{}, err
	}
	p.Path = path
	p.Counters = TaskCounters{State: path[len(path)-1].To, Total: len(parents), Unfinished: len(parents), Active: len(p.Roots)}
	return p, nil
}

// JoinReady reports whether a step becomes ready to enqueue: it is pending, no parent of it is
// unfinished and it is not held back by its batch's parallelism. A finished parent counts itself
// off each child's unfinished parents, so a join is released, in O(1) per parent, exactly when its
// last parent finishes; an operator's re-arming of a blocked task uses the same rule.
func JoinReady(state StepState, parentsUnfinished int, held bool) bool {
	return state == StepPending && parentsUnfinished == 0 && !held
}

// EdgeUnfinished reports whether a new edge from a parent in state parent counts as one more
// unfinished parent of its child: unless the parent has finished; the deciding step whose outcome
// adds the edge always counts, since its own completion releases its new children right after.
func EdgeUnfinished(parent StepState, decider bool) bool {
	return decider || !parent.Finished()
}

// Cancels reports whether cancelling a task moves a step in state s to cancelled: every step
// not terminal does.
func Cancels(s StepState) bool { return !s.Terminal() }

// HeartbeatVerdict tells a worker whose heartbeat found its step in state, held by it or not,
// whether it still holds the step: nil, or a *[RefusedError] saying that the step moved on (it was
// cancelled, rescued, finished) or that another worker claimed it since.
func HeartbeatVerdict(state StepState, held bool) error {
	if state != StepInProgress {
		return refused("step is %s", state)
	}
	if !held {
		return refused("another worker holds it")
	}
	return nil
}

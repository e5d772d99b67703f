package statemachine

import (
	"encoding/json"
	"fmt"
	"time"
)

// Outcome is what an attempt came to. Its values are store.OutcomeKind's, so a store converts
// one with Outcome(kind).
type Outcome int

// The outcomes of an attempt.
const (
	// OutcomeSuccess completes the step with a result.
	OutcomeSuccess Outcome = iota + 1
	// OutcomeRetry leaves the step waiting_for_retry until its backoff elapses.
	OutcomeRetry
	// OutcomePermanent puts the step in error: the task is blocked until an operator acts,
	// unless the failure is isolated.
	OutcomePermanent
)

// Attempt is the outcome of one attempt, as the worker that ran it reports it.
type Attempt struct {
	Outcome  Outcome
	WorkerID string
	Attempt  int
	// Error is the failure's JSON document, if any; it goes into the transition's metadata.
	Error json.RawMessage
	// RetryDelay is an OutcomeRetry's backoff.
	RetryDelay time.Duration
	// Isolated marks an OutcomePermanent whose batch isolates failures.
	Isolated bool
}

// OutcomePlan is an outcome's effect on its step, known before anything is read: a store may
// write it in the same round trip that locks the task.
type OutcomePlan struct {
	// Step is the step's transition from in_progress.
	Step StepTransition
	// Meta is the step transition's metadata: the worker and attempt, the error, a retry's delay.
	Meta map[string]any
	// KeepsResult is set for a success: the step stores the result, a failure its error.
	KeepsResult bool
	// ReleasesChildren is set for a success: the step counts itself off its children's
	// unfinished parents, and those that become ready ([JoinReady]) are released.
	ReleasesChildren bool
	at               Attempt
}

// PlanOutcome plans a's effect on its step.
func PlanOutcome(a Attempt) (OutcomePlan, error) {
	var ev StepEvent
	switch a.Outcome {
	case OutcomeSuccess:
		ev = StepEventComplete
	case OutcomeRetry:
		ev = StepEventFailRetryable
	case OutcomePermanent:
		ev = StepEventFailPermanent
	default:
		return OutcomePlan{}, fmt.Errorf("record outcome: unknown kind %d", a.Outcome)
	}
	to, err := NextStep(StepInProgress, ev)
	if err != nil {
		return OutcomePlan{}, err
	}
	meta := map[string]any{"worker_id": a.WorkerID, "attempt": a.Attempt}
	if len(a.Error) > 0 {
		meta["error"] = a.Error
	}
	if a.Outcome == OutcomeRetry {
		meta["retry_in_ms"] = a.RetryDelay.Milliseconds()
	}
	success := a.Outcome == OutcomeSuccess
	return OutcomePlan{
		Step:             StepTransition{From: StepInProgress, Event: ev, To: to},
		Meta:             meta,
		KeepsResult:      success,
		ReleasesChildren: success,
		at:               a,
	}, nil
}

// UnholdsSibling reports whether the step, a batch worker when inBatch, gives its batch slot to
// the first of its held siblings: when it succeeded or failed in isolation (a failure that blocks
// the task starts nothing new).
func (p OutcomePlan) UnholdsSibling(inBatch bool) bool {
	return inBatch && (p.at.Outcome == OutcomeSuccess || p.at.Isolated)
}

// OutcomeEffects is what an outcome does to its task, once the store knows the task's counters
// and what the outcome released.
type OutcomeEffects struct {
	// EnqueueReleased is set when the released steps are enqueued; otherwise (the task is
	// blocked or finished) they go back to pending, and Released is 0.
	EnqueueReleased bool
	// Released is how many steps are enqueued.
	Released int
	// EnqueueRetry is set when the step's retry message is sent, delayed by its backoff.
	EnqueueRetry bool
	// Delta is the change to the task's counters.
	Delta CounterDelta
	// Settlement is where the task goes, with TaskMeta on its transitions.
	Settlement
	TaskMeta map[string]any
}

// Apply plans the outcome's effect on a task with counters before, given the steps it spawned
// (a decision's or batch's new steps) and released (children made ready, a held sibling let go)
// for step, the step's ID as text.
func (p OutcomePlan) Apply(step string, before TaskCounters, spawned, released int) (OutcomeEffects, error) {
	e := OutcomeEffects{EnqueueReleased: before.Runnable(), EnqueueRetry: p.at.Outcome == OutcomeRetry}
	if e.EnqueueReleased {
		e.Released = released
	}
	// The step leaves the active steps; the released ones join them.
	e.Delta = CounterDelta{Total: spawned, Active: e.Released - 1}
	switch p.at.Outcome {
	case OutcomeSuccess:
		e.Delta.Unfinished = spawned - 1
	case OutcomePermanent:
		e.Delta.Failed = 1
		if p.at.Isolated {
			e.Delta.Isolated = 1
		}
	}
	var err error
	if e.Settlement, err = Settle(before, e.Delta); err != nil {
		return OutcomeEffects{}, err
	}
	e.TaskMeta = map[string]any{"step": step, "worker_id": p.at.WorkerID}
	return e, nil
}

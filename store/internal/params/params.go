// Package params turns the store seam's params into the planner's inputs (package statemachine),
// once for every store: store/memory and store/postgres ask the planner with the same values and
// differ only in how they apply its answer.
package params

import (
	"errors"
	"fmt"
	"time"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

// Attempt is the planner's view of an outcome's attempt.
func Attempt(p store.OutcomeParams) statemachine.Attempt {
	return statemachine.Attempt{Outcome: outcome(p.Kind), WorkerID: p.WorkerID, Attempt: p.Attempt, Error: p.Error,
		RetryDelay: p.RetryDelay, Isolated: p.Isolated}
}

func outcome(k store.OutcomeKind) statemachine.Outcome {
	switch k {
	case store.OutcomeSuccess:
		return statemachine.OutcomeSuccess
	case store.OutcomeRetry:
		return statemachine.OutcomeRetry
	case store.OutcomePermanent:
		return statemachine.OutcomePermanent
	}
	return statemachine.Outcome(k) // unknown: the planner refuses it by its number
}

// Operator is the planner's name of an operator action.
func Operator(a store.OperatorAction) statemachine.OperatorAction {
	return statemachine.OperatorAction(a)
}

// FixedStep is the planner's view of the step in error an operator fixes.
func FixedStep(st store.Step) statemachine.FixedStep {
	return statemachine.FixedStep{Isolates: st.FailureStrategy == "isolate", InBatch: st.BatchGroup != nil}
}

// Create plans a new task's states and counters, and returns the queue references of its root
// steps, which creating it enqueues.
func Create(p store.CreateTaskParams) (statemachine.CreatePlan, []store.StepRef, error) {
	parents := make([]int, len(p.Steps))
	for i, st := range p.Steps {
		parents[i] = len(st.Parents)
	}
	plan, err := statemachine.PlanCreate(parents)
	if !p.RunAt.IsZero() {
		plan, err = statemachine.PlanScheduledCreate(parents)
	}
	if err != nil {
		return plan, nil, err
	}
	roots := make([]store.StepRef, len(plan.Roots))
	for i, r := range plan.Roots {
		st := p.Steps[r]
		roots[i] = store.StepRef{TaskID: p.TaskID, StepID: st.StepID, TaskName: p.Name, Version: p.Version, Name: st.TemplateStep, Handler: st.Handler,
			Retry: !p.RunAt.IsZero()}
	}
	return plan, roots, nil
}

// RootDelay is how long the roots' messages of a task created at now wait: until p.RunAt for a
// scheduled task (at least 0), else none, and their priority credit dates them back (a negative
// delay).
func RootDelay(p store.CreateTaskParams, now time.Time) time.Duration {
	if p.RunAt.IsZero() {
		return -max(p.PriorityCredit, 0)
	}
	return max(p.RunAt.Sub(now), 0)
}

// Conflict reports the planner's refusal (statemachine.ErrRefused) as the store's conflict
// (store.ErrConflict), after what was refused; any other error, or nil, is returned as is.
func Conflict(what string, err error) error {
	if errors.Is(err, statemachine.ErrRefused) {
		return fmt.Errorf("%s: %w: %w", what, err, store.ErrConflict)
	}
	return err
}

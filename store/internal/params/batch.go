package params

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

// CheckPlan reports an error unless o carries a plan of an attempt (statemachine.PlanOutcome's):
// a zero plan is a caller's mistake, not an outcome to apply.
func CheckPlan(o store.Outcome) error {
	if o.Plan.Step.From != statemachine.StepInProgress || o.Plan.Step.To == "" {
		return fmt.Errorf("outcome of step %s attempt %d has no plan (statemachine.PlanOutcome)", o.StepID, o.Attempt)
	}
	return nil
}

// CheckPlans is CheckPlan for every outcome of a batch: the batch is refused whole, before anything
// is applied, when one of them has no plan.
func CheckPlans(outcomes []store.Outcome) error {
	for _, o := range outcomes {
		if err := CheckPlan(o); err != nil {
			return err
		}
	}
	return nil
}

// CheckBatch refuses, before anything is applied, a batch with an outcome without a plan
// (CheckPlans), or one that asks for a hand-over without a lease for it.
func CheckBatch(p store.RecordOutcomesParams) error {
	if err := CheckPlans(p.Outcomes); err != nil {
		return err
	}
	if p.Lease > 0 {
		return nil
	}
	for _, o := range p.Outcomes {
		if o.Handoff {
			return fmt.Errorf("outcome of step %s asks for a hand-over, and the batch has no lease for it (RecordOutcomesParams.Lease)", o.StepID)
		}
	}
	return nil
}

// HandsOver reports whether an outcome, once recorded, hands a step it released over to its
// worker: a success (its plan releases children) that asked for it.
func HandsOver(o store.Outcome) bool { return o.Handoff && o.Plan.ReleasesChildren }

// PickHandoff returns the index in refs of the step an outcome hands over: the first released
// step (not a retry timer) whose handler is one of callables; -1 when there is none.
func PickHandoff(refs []store.StepRef, callables []string) int {
	return slices.IndexFunc(refs, func(r store.StepRef) bool { return !r.Retry && slices.Contains(callables, r.Handler) })
}

// Single is a batched outcome in the form of today's single-step path, which the stores apply
// with o.Plan (Kind stays unset: the plan has decided), sending its enqueues to enq.
func Single(o store.Outcome, enq store.Enqueuer) store.OutcomeParams {
	return store.OutcomeParams{TaskID: o.TaskID, StepID: o.StepID, WorkerID: o.WorkerID, Attempt: o.Attempt,
		Result: o.Result, Error: o.Error, RetryDelay: o.RetryDelay, Namespace: o.Namespace, Enqueuer: enq,
		LeaseExpired: o.LeaseExpired, Spawn: o.Spawn, PriorityCredit: o.PriorityCredit}
}

// Publisher is a store.Enqueuer that sends nothing: it lists the enqueues as store.Publish
// groups for the caller to send after the commit.
type Publisher struct {
	List []store.Publish
}

// EnqueueTx implements store.Enqueuer.
func (p *Publisher) EnqueueTx(_ context.Context, _ pgx.Tx, ns string, refs []store.StepRef, delay time.Duration) error {
	if len(refs) > 0 {
		p.List = append(p.List, store.Publish{Namespace: ns, Steps: append([]store.StepRef(nil), refs...), Delay: delay})
	}
	return nil
}

// Mark returns how many groups are listed, for Rewind.
func (p *Publisher) Mark() int { return len(p.List) }

// Rewind drops the groups listed after mark: an outcome rolled back sends nothing.
func (p *Publisher) Rewind(mark int) { p.List = p.List[:mark] }

// Status sorts the error with which the single-step path refused an outcome into the outcome's
// status: store.NotFound, or for store.ErrConflict store.AlreadyRecorded when landed (the step's
// latest transition is this outcome) says so, else store.Conflict. Any other error is returned:
// it fails the whole batch.
func Status(err error, landed func() (bool, error)) (store.OutcomeStatus, error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.NotFound, nil
	case errors.Is(err, store.ErrConflict):
		ok, err := landed()
		if err != nil {
			return 0, err
		}
		if ok {
			return store.AlreadyRecorded, nil
		}
		return store.Conflict, nil
	}
	return 0, err
}

// ReleaseEach gives back each step of p with release (the store's ReleaseStep inside its one
// transaction or operation) and reports each in order: a step the worker no longer holds
// (store.ErrConflict) is skipped and reported, any other error fails the whole call.
func ReleaseEach(p store.ReleaseStepsParams, release func(store.ReleaseStepParams) error) ([]store.ReleaseRecord, error) {
	out := make([]store.ReleaseRecord, len(p.Steps))
	for i, r := range p.Steps {
		err := release(store.ReleaseStepParams{StepID: r.StepID, WorkerID: p.WorkerID, Attempt: r.Attempt, Reason: r.Reason})
		if err != nil && !errors.Is(err, store.ErrConflict) {
			return nil, err
		}
		out[i] = store.ReleaseRecord{StepID: r.StepID, Released: err == nil}
	}
	return out, nil
}

// PromoteRefused reports PromoteRetry's refusals of one step (not due, not waiting or its task
// not runnable, unknown), which PromoteRetries reports per step; any other error fails the batch.
func PromoteRefused(err error) bool {
	return errors.Is(err, store.ErrNotDue) || errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound)
}

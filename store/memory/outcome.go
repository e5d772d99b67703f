package memory

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
	"github.com/tasker-systems/tasker/store/internal/params"
)

// RecordOutcome records an attempt's outcome with a compare-and-set on the attempt the worker
// holds, releases and enqueues the dependents it makes ready, updates the task's counters and
// settles the task, atomically (with p.BeforeCommit, called with a nil pgx.Tx). It returns
// store.ErrConflict when the worker no longer holds the step (cancelled, rescued).
func (s *Store) RecordOutcome(ctx context.Context, p store.OutcomeParams) (*store.OutcomeResult, error) {
	var res *store.OutcomeResult
	plan, err := statemachine.PlanOutcome(params.Attempt(p))
	if err != nil {
		return nil, err
	}
	err = s.write(ctx, func(tx *txn) error {
		var err error
		res, err = tx.recordOutcome(ctx, p, plan)
		return err
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// stepWrites returns what plan writes on p's step: its result or error, and its transition's
// metadata, as the steps table stores them.
func stepWrites(p store.OutcomeParams, plan statemachine.OutcomePlan) (result, lastErr, meta json.RawMessage, err error) {
	if plan.KeepsResult {
		if result, err = jsonb(p.Result); err != nil {
			return nil, nil, nil, fmt.Errorf("record outcome of %s: result: %w", p.StepID, err)
		}
	} else if lastErr, err = jsonb(p.Error); err != nil {
		return nil, nil, nil, fmt.Errorf("record outcome of %s: error: %w", p.StepID, err)
	}
	raw, err := json.Marshal(plan.Meta)
	if err != nil {
		return nil, nil, nil, err
	}
	meta, err = jsonb(raw)
	return result, lastErr, meta, err
}

// recordOutcome applies plan, p's plan from the planner.
func (tx *txn) recordOutcome(ctx context.Context, p store.OutcomeParams, plan statemachine.OutcomePlan) (*store.OutcomeResult, error) {
	s := tx.s
	result, lastErr, meta, err := stepWrites(p, plan)
	if err != nil {
		return nil, err
	}
	t, ok := s.tasks[p.TaskID]
	if !ok {
		return nil, fmt.Errorf("task %s: %w", p.TaskID, store.ErrNotFound)
	}
	before := countersOf(t)
	st, ok := s.steps[p.StepID]
	if !ok || !holds(st, p.WorkerID, p.Attempt) || (p.LeaseExpired && (st.s.LeaseExpiresAt == nil || !st.s.LeaseExpiresAt.Before(tx.live))) {
		return nil, fmt.Errorf("record outcome of %s attempt %d: %w", p.StepID, p.Attempt, store.ErrConflict)
	}
	to := plan.Step.To
	tx.setStepState(st, to)
	if result != nil {
		set(tx, &st.s.Result, result)
	}
	if lastErr != nil {
		set(tx, &st.s.LastError, lastErr)
	}
	var next *time.Time
	if to == statemachine.StepWaitingForRetry {
		next = ptr(tx.now.Add(millis(p.RetryDelay)))
	}
	set(tx, &st.s.NextRetryAt, next)
	set(tx, &st.s.LeaseOwner, "")
	set(tx, &st.s.LeaseExpiresAt, nil)
	set(tx, &st.s.UpdatedAt, tx.now)
	if to == statemachine.StepComplete {
		set(tx, &st.s.CompletedAt, ptr(tx.now))
	}
	if err := tx.stepTransition(st, plan.Step.From, to, plan.Step.Event, meta); err != nil {
		return nil, fmt.Errorf("record transition of %s: %w", p.StepID, err)
	}

	var ready []*stepRow
	spawned := 0
	if plan.ReleasesChildren {
		if p.Spawn != nil {
			if spawned, err = tx.spawn(t, st, p.Spawn); err != nil {
				return nil, err
			}
		}
		if ready, err = tx.releaseChildren(st, true); err != nil {
			return nil, fmt.Errorf("release children of %s: %w", p.StepID, err)
		}
	}
	if plan.UnholdsSibling(st.s.BatchGroup != nil) {
		ready = append(ready, tx.unholdNext(t, *st.s.BatchGroup)...)
	}
	eff, err := plan.Apply(p.StepID.String(), before.TaskCounters, spawned, len(ready))
	if err != nil {
		return nil, fmt.Errorf("settle task %s: %w", p.TaskID, err)
	}
	if !eff.EnqueueReleased {
		for _, r := range ready {
			tx.setStepState(r, statemachine.StepPending)
		}
		ready = nil
	}
	if err := tx.writeStepTransitions(pendingMoves(ready), statemachine.StepEventEnqueue, statemachine.StepEnqueued, nil); err != nil {
		return nil, fmt.Errorf("record enqueue transitions: %w", err)
	}
	if len(ready) > 0 {
		refs := make([]store.StepRef, len(ready))
		for i, r := range ready {
			refs[i] = store.StepRef{TaskID: p.TaskID, StepID: r.s.ID, TaskName: before.name, Version: before.version, Name: r.s.TemplateStep, Handler: r.s.Handler}
		}
		tx.enqueue(p.Enqueuer, p.Namespace, refs, -p.PriorityCredit)
	}
	if eff.EnqueueRetry {
		ref := []store.StepRef{{TaskID: p.TaskID, StepID: p.StepID, Retry: true, TaskName: before.name, Version: before.version, Name: st.s.TemplateStep, Handler: st.s.Handler}}
		// The timer at next_retry_at's millisecond, so that the message is visible once the step is
		// due (a test's clock moved exactly to it finds the retry ready).
		tx.enqueue(p.Enqueuer, p.Namespace, ref, millis(p.RetryDelay))
	}
	if err := tx.settle(t, eff.Delta, eff.Path, eff.TaskMeta); err != nil {
		return nil, err
	}
	if p.BeforeCommit != nil {
		if err := p.BeforeCommit(ctx, nil); err != nil {
			return nil, err
		}
	}
	return &store.OutcomeResult{TaskID: p.TaskID, TaskState: eff.State, Released: eff.Released, Settled: eff.Settled}, nil
}

// pendingMoves lists steps moving out of pending.
func pendingMoves(sts []*stepRow) []stepMove {
	moves := make([]stepMove, len(sts))
	for i, st := range sts {
		moves[i] = stepMove{st, statemachine.StepPending}
	}
	return moves
}

// releaseChildren counts a finished step off each child's unfinished parents (a join costs O(1)
// per parent) and, when canEnqueue, moves the children that become ready (pending, not held, no
// unfinished parent left) to enqueued; it returns those. Their transitions are the caller's.
func (tx *txn) releaseChildren(st *stepRow, canEnqueue bool) ([]*stepRow, error) {
	var ready []*stepRow
	for _, c := range st.children {
		set(tx, &c.parentsUnfinished, c.parentsUnfinished-1)
		set(tx, &c.s.UpdatedAt, tx.now)
		if err := checkStep(c); err != nil {
			return nil, err
		}
		if canEnqueue && tx.s.joinReady(c.s.State, c.parentsUnfinished, c.held) {
			tx.setStepState(c, statemachine.StepEnqueued)
			ready = append(ready, c)
		}
	}
	return ready, nil
}

// unholdNext lets the first held worker of a batch (by name) go, enqueued if its parents are
// done, as a sibling frees its slot. It returns the worker when it became ready.
func (tx *txn) unholdNext(t *taskRow, group uuid.UUID) []*stepRow {
	var pick *stepRow
	for _, st := range t.steps {
		if st.held && st.s.BatchGroup != nil && *st.s.BatchGroup == group && (pick == nil || st.s.Name < pick.s.Name) {
			pick = st
		}
	}
	if pick == nil {
		return nil
	}
	set(tx, &pick.held, false)
	set(tx, &pick.s.UpdatedAt, tx.now)
	if statemachine.JoinReady(pick.s.State, pick.parentsUnfinished, pick.held) {
		tx.setStepState(pick, statemachine.StepEnqueued)
		return []*stepRow{pick}
	}
	return nil
}

// enqueuePending records pending → enqueued for steps already set to enqueued and sends them
// (with their template step's name, not their template's).
func (tx *txn) enqueuePending(t *taskRow, ns string, ready []*stepRow, q store.Enqueuer) error {
	if len(ready) == 0 {
		return nil
	}
	if err := tx.writeStepTransitions(pendingMoves(ready), statemachine.StepEventEnqueue, statemachine.StepEnqueued, nil); err != nil {
		return err
	}
	refs := make([]store.StepRef, len(ready))
	for i, r := range ready {
		refs[i] = store.StepRef{TaskID: t.t.ID, StepID: r.s.ID, Name: r.s.TemplateStep, Handler: r.s.Handler}
	}
	tx.enqueue(q, ns, refs, 0)
	return nil
}

// spawn creates the steps of a decision's or batchable step's outcome, with their edges and first
// transitions, and returns how many steps it created. The deciding step counts as an unfinished
// parent of its new children: its own completion releases them right after, through the usual
// release. Names are unique per task, so replaying an outcome cannot create a step twice.
func (tx *txn) spawn(t *taskRow, decider *stepRow, plan *store.SpawnPlan) (int, error) {
	created := 0
	for _, ns := range plan.Steps {
		if _, exists := t.byName[ns.Name]; exists {
			continue
		}
		st, err := tx.newStep(t, ns)
		if err != nil {
			return 0, fmt.Errorf("create steps: %w", err)
		}
		tx.firstStepTransition(st)
		created++
	}
	// Edges from every named parent that exists to every child still pending; a child counts each
	// new parent as unfinished unless it has already finished (the decider never has: its release
	// follows).
	for _, ns := range plan.Steps {
		for _, parentName := range ns.ParentNames {
			child, parent := t.byName[ns.Name], t.byName[parentName]
			if child == nil || parent == nil || child.s.State != statemachine.StepPending {
				continue
			}
			if _, dup := tx.s.edges[[2]uuid.UUID{parent.s.ID, child.s.ID}]; dup {
				continue
			}
			if err := tx.addEdge(parent, child); err != nil {
				return 0, fmt.Errorf("create edges: %w", err)
			}
			set(tx, &child.parentsTotal, child.parentsTotal+1)
			if statemachine.EdgeUnfinished(parent.s.State, parent == decider) {
				set(tx, &child.parentsUnfinished, child.parentsUnfinished+1)
			}
			set(tx, &child.s.UpdatedAt, tx.now)
		}
	}
	return created, nil
}

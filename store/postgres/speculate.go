package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

// This file is the one-trip outcome. The pipelined outcome (recordOutcomePipelined) takes two
// round trips because the planner (statemachine.OutcomePlan.Apply) needs what the first one reads:
// the task's counters under its lock, whether the step moved, which children the release made
// ready. For the tasks this store created, and as long as only this store instance changed their
// counters, it knows all three already: the counters it last wrote, the step's children and their
// parents (from the creation). It then plans with what it knows and sends everything in one
// pipeline, each of those three facts checked on the server by the statement that reads it (a
// division by zero when it differs, which rolls the transaction back before the COMMIT that rides
// in the same trip). A check that fails costs that trip: the outcome is recorded again the
// two-trip way, and the task is forgotten.

// maxShapeSteps bounds the tasks remembered: larger ones take the two-trip path.
const maxShapeSteps = 64

// maxShapes bounds the cache; it is emptied when full.
const maxShapes = 4096

// shapes remembers, by task, what the one-trip outcome plans from.
type shapes struct {
	mu sync.Mutex
	m  map[uuid.UUID]*taskShape
}

// taskShape is a task's counters as this store last wrote them, and its steps.
type taskShape struct {
	counters counters
	steps    map[uuid.UUID]shapeStep
}

// shapeStep is what the one-trip outcome needs of a step: its message's names, and its children
// (each with its number of parents and whether a batch holds it back).
type shapeStep struct {
	templateStep, handler string
	children              []uuid.UUID
	parents               int
}

// created remembers a task the store just created, with counters c.
func (sh *shapes) created(p store.CreateTaskParams, c statemachine.TaskCounters) {
	if len(p.Steps) > maxShapeSteps {
		return
	}
	ts := &taskShape{counters: counters{TaskCounters: c, name: p.Name, version: p.Version}, steps: make(map[uuid.UUID]shapeStep, len(p.Steps))}
	for _, st := range p.Steps {
		if st.Held || st.BatchGroup != uuid.Nil {
			return // batch workers hold and let go of each other: not planned here
		}
		ts.steps[st.StepID] = shapeStep{templateStep: st.TemplateStep, handler: st.Handler, parents: len(st.Parents)}
	}
	for _, st := range p.Steps {
		for _, parent := range st.Parents {
			id := p.Steps[parent].StepID
			s := ts.steps[id]
			s.children = append(s.children, st.StepID)
			ts.steps[id] = s
		}
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.m == nil || len(sh.m) >= maxShapes {
		sh.m = map[uuid.UUID]*taskShape{}
	}
	sh.m[p.TaskID] = ts
}

// get returns what the store knows of task id's counters and of step: nil unless it knows both
// and step's children can be planned (each has step as its only parent).
func (sh *shapes) get(id, step uuid.UUID) (counters, shapeStep, []released, bool) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	ts := sh.m[id]
	if ts == nil {
		return counters{}, shapeStep{}, nil, false
	}
	st, ok := ts.steps[step]
	if !ok {
		return counters{}, shapeStep{}, nil, false
	}
	ready := make([]released, 0, len(st.children))
	for _, c := range st.children {
		child := ts.steps[c]
		if child.parents != 1 {
			return counters{}, shapeStep{}, nil, false
		}
		ready = append(ready, released{id: c, name: child.templateStep, handler: child.handler})
	}
	slices.SortFunc(ready, func(a, b released) int { return bytes.Compare(a.id[:], b.id[:]) }) // uuid order, as the server's
	return ts.counters, st, ready, true
}

// wrote notes the counters an outcome of this store committed for task id: before, changed as
// eff says. A task that came to rest is forgotten.
func (sh *shapes) wrote(id uuid.UUID, before counters, eff statemachine.OutcomeEffects) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	ts := sh.m[id]
	if ts == nil {
		return
	}
	after := before.TaskCounters.Add(eff.Delta)
	after.State = eff.State
	if statemachine.AtRest(after.State, after.Active) {
		delete(sh.m, id)
		return
	}
	ts.counters = counters{TaskCounters: after, name: before.name, version: before.version}
}

// forget drops task id: its counters changed in a way the store did not follow.
func (sh *shapes) forget(ids ...uuid.UUID) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for _, id := range ids {
		delete(sh.m, id)
	}
}

// settleCheckedSQL applies an outcome planned from what the store knows to task $1, only if its
// state and counters are $2 to $7 (and fails, a division by zero, otherwise): the counters become
// $8 to $12 and the state $13, with transition_seq advanced by the path's $14 hops, whose
// transitions pathTransitionsSQL writes later in the transaction. It takes the task's row lock
// first, as the lock of the two-trip path does, and it is the task's only update: one row
// version and no lock record where the lock, the counters and the move took three statements.
const settleCheckedSQL = `
		WITH u AS (
			UPDATE {s}.tasks
			   SET steps_total = $8::int, steps_unfinished = $9::int, steps_active = $10::int, steps_failed = $11::int,
			       steps_isolated = $12::int, -- int, not the counter domain: a stale plan's negative count fails the WHERE, not the bind
			       state = $13::text, transition_seq = transition_seq + $14, updated_at = now(),
			       completed_at = CASE WHEN $14 > 0 AND $13::text IN ('complete', 'error', 'cancelled', 'resolved_manually')
			                           THEN now() ELSE completed_at END
			 WHERE task_id = $1 AND state = $2 AND steps_total = $3 AND steps_unfinished = $4 AND steps_active = $5
			   AND steps_failed = $6 AND steps_isolated = $7
			RETURNING 1
		)
		SELECT 1 / (SELECT count(*)::int FROM u)`

// pathTransitionsSQL records the path ($2 from, $3 to, $4 events, $5 metadata) of task $1, which
// settleCheckedSQL moved in this transaction: the hops sit below its transition_seq, the last one
// current. It runs after the step's statements, so that the audit trail keeps its order.
const pathTransitionsSQL = `
		INSERT INTO {s}.task_transitions (task_id, from_state, to_state, event, metadata, sort_key, created_at)
		SELECT $1, x.f, x.t, x.e, $5, t.transition_seq - cardinality($2::text[]) + x.ord, clock_timestamp()
		  FROM {s}.tasks t, unnest($2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS x(f, t, e, ord)
		 WHERE t.task_id = $1`

// releaseChecked is the store's release of children ({release}: releaseChildrenSQL, or a test's
// broken one) for step $1, failing unless it made ready exactly the steps $3 (in uuid order).
const releaseChecked = `
		WITH rel AS ({release}
		)
		SELECT 1 / (CASE WHEN coalesce((SELECT array_agg(step_id ORDER BY step_id) FROM rel r(step_id, ready) WHERE ready),
		                               '{}'::uuid[]) = $3::uuid[] THEN 1 ELSE 0 END)`

// recordOutcomeOneTrip records p in one round trip on conn when the store knows what the outcome
// finds (see the top of this file). ok is false when it does not, or when a check failed (the
// transaction rolled back): the caller records p the two-trip way.
func (s *Store) recordOutcomeOneTrip(ctx context.Context, conn *pgxpool.Conn, p store.OutcomeParams, be store.BatchEnqueuer,
	plan statemachine.OutcomePlan, result, lastErr any, metaJSON []byte) (res *store.OutcomeResult, ok bool, err error) {
	before, st, ready, known := s.shapes.get(p.TaskID, p.StepID)
	if !known {
		return nil, false, nil
	}
	if !plan.ReleasesChildren {
		ready = nil
	}
	eff, err := plan.Apply(p.StepID.String(), before.TaskCounters, 0, len(ready))
	if err != nil || (!eff.EnqueueReleased && len(ready) > 0) {
		return nil, false, nil // refused, or releases to demote: the two-trip path says why, or does it
	}
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(keyedPlans)
	c, after := before.TaskCounters, before.TaskCounters.Add(eff.Delta)
	b.Queue(s.q(settleCheckedSQL), pgID(p.TaskID), string(c.State), c.Total, c.Unfinished, c.Active, c.Failed, c.Isolated,
		after.Total, after.Unfinished, after.Active, after.Failed, after.Isolated, string(eff.State), len(eff.Path))
	b.Queue(s.q(stepMovedCheckedSQL), pgID(p.StepID), p.WorkerID, p.Attempt, string(plan.Step.To), result, lastErr, p.RetryDelay.Milliseconds(),
		p.LeaseExpired, string(plan.Step.Event), metaJSON, string(plan.Step.From))
	if plan.ReleasesChildren {
		b.Queue(s.q(strings.Replace(releaseChecked, "{release}", s.releaseSQL, 1)), pgID(p.StepID), nil, pgIDs(releasedIDs(ready)))
	}
	row := outcomeStepRow{templateStep: st.templateStep, handler: st.handler}
	next, err := s.queueOutcomeEffects(b, p, be, before, row, ready, eff, true)
	if err != nil {
		return nil, false, err
	}
	b.Queue("COMMIT")
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		// The pipeline stopped at its first error, before the COMMIT: end the transaction.
		_, rerr := conn.Exec(context.WithoutCancel(ctx), "ROLLBACK")
		s.shapes.forget(p.TaskID)
		var pgErr *pgconn.PgError
		if rerr == nil && errors.As(err, &pgErr) && pgErr.Code == pgDivisionByZero {
			return nil, false, nil // a check failed: the two-trip path
		}
		if rerr != nil {
			return nil, false, fmt.Errorf("record outcome of %s: %w (and the rollback failed: %v)", p.StepID, err, rerr)
		}
		return nil, false, fmt.Errorf("record outcome of %s: %w", p.StepID, err)
	}
	s.shapes.wrote(p.TaskID, before, eff)
	return outcomeResult(p, eff, next), true, nil
}

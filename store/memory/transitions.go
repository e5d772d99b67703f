package memory

import (
	"encoding/json"
	"fmt"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

// stepMove is one step's transition.
type stepMove struct {
	st   *stepRow
	from statemachine.StepState
}

// appendTrail adds a transition to its task's audit trail.
func (tx *txn) appendTrail(t *taskRow, tr *transition) {
	tx.s.seq++
	tr.id = tx.s.seq
	tr.createdAt = tx.s.clock()
	set(tx, &t.trail, append(t.trail, tr))
}

// writeStepTransitions records `to` (reached by event) for every step in moves, each from its own
// state, and makes it the step's current transition. The table's rules are checked first, so an
// illegal move is a programming error reported before anything is written.
func (tx *txn) writeStepTransitions(moves []stepMove, event statemachine.StepEvent, to statemachine.StepState, meta map[string]any) error {
	if len(moves) == 0 {
		return nil
	}
	for _, m := range moves {
		if err := statemachine.CheckStepMove(m.from, event, to); err != nil {
			return err
		}
	}
	var metaJSON json.RawMessage
	if meta != nil {
		metaJSON = mustJSONB(meta)
	}
	for _, m := range moves {
		if err := tx.stepTransition(m.st, m.from, to, event, metaJSON); err != nil {
			return err
		}
	}
	return nil
}

// stepTransition appends one transition after the step's current one, which must have reached
// from, and makes it current.
func (tx *txn) stepTransition(st *stepRow, from, to statemachine.StepState, event statemachine.StepEvent, meta json.RawMessage) error {
	prev := st.cur
	if prev == nil || prev.to != string(from) {
		return fmt.Errorf("record step transitions: step %s has no current transition to %s", st.s.ID, from)
	}
	set(tx, &prev.mostRecent, false)
	tr := &transition{step: st, from: string(from), to: string(to), event: string(event), meta: meta,
		sortKey: prev.sortKey + 1, mostRecent: true}
	tx.appendTrail(st.task, tr)
	set(tx, &st.cur, tr)
	return nil
}

// firstStepTransition records a new step's creation (and, for a root, its enqueueing).
func (tx *txn) firstStepTransition(st *stepRow) {
	tr := &transition{step: st, to: string(statemachine.StepPending), event: statemachine.EventCreate, sortKey: 1, mostRecent: true}
	tx.appendTrail(st.task, tr)
	set(tx, &st.cur, tr)
}

// moveTask sets the task's state with a compare-and-set on the path's first state and records
// the path as transitions, the last one current.
func (tx *txn) moveTask(t *taskRow, path []statemachine.TaskTransition, meta map[string]any) error {
	if len(path) == 0 {
		return nil
	}
	from := path[0].From
	if t.t.State != from {
		return fmt.Errorf("move task %s from %s: %w", t.t.ID, from, store.ErrConflict)
	}
	to := path[len(path)-1].To
	set(tx, &t.t.State, to)
	set(tx, &t.t.UpdatedAt, tx.now)
	if to.Terminal() {
		set(tx, &t.t.CompletedAt, ptr(tx.now))
	}
	prev := t.cur
	if prev == nil {
		return fmt.Errorf("move task %s: no current transition", t.t.ID)
	}
	var metaJSON json.RawMessage
	if meta != nil {
		metaJSON = mustJSONB(meta)
	}
	set(tx, &prev.mostRecent, false)
	for i, h := range path {
		tr := &transition{from: string(h.From), to: string(h.To), event: string(h.Event), meta: metaJSON,
			sortKey: prev.sortKey + i + 1, mostRecent: i == len(path)-1}
		tx.appendTrail(t, tr)
		set(tx, &t.cur, tr)
	}
	return nil
}

// counters are a task's state and step counters, with the names its queue messages carry.
type counters struct {
	statemachine.TaskCounters
	name, version string
}

func countersOf(t *taskRow) counters {
	return counters{TaskCounters: statemachine.TaskCounters{State: t.t.State, Total: t.t.StepsTotal,
		Unfinished: t.t.StepsUnfinished, Active: t.t.StepsActive, Failed: t.t.StepsFailed, Isolated: t.isolated},
		name: t.t.Name, version: t.t.Version}
}

// addCounters applies a planned change to the task's counters; the table's check constraints
// apply.
func (tx *txn) addCounters(t *taskRow, d statemachine.CounterDelta) error {
	set(tx, &t.t.StepsTotal, t.t.StepsTotal+d.Total)
	set(tx, &t.t.StepsUnfinished, t.t.StepsUnfinished+d.Unfinished)
	set(tx, &t.t.StepsActive, t.t.StepsActive+d.Active)
	set(tx, &t.t.StepsFailed, t.t.StepsFailed+d.Failed)
	set(tx, &t.isolated, t.isolated+d.Isolated)
	set(tx, &t.t.UpdatedAt, tx.now)
	return checkTask(t)
}

// settle applies a planned change to the task's counters and moves it along the planned path.
func (tx *txn) settle(t *taskRow, d statemachine.CounterDelta, path []statemachine.TaskTransition, meta map[string]any) error {
	if err := tx.addCounters(t, d); err != nil {
		return fmt.Errorf("update task counters: %w", err)
	}
	return tx.moveTask(t, path, meta)
}

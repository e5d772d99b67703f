package memory

import (
	"encoding/json"
	"fmt"

	"github.com/google/uuid"

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
		got, err := statemachine.NextStep(m.from, event)
		if err != nil {
			return err
		}
		if got != to {
			return fmt.Errorf("step transition %s --%s--> %s, expected %s", m.from, event, got, to)
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
	tr := &transition{step: st, to: string(statemachine.StepPending), event: eventCreate, sortKey: 1, mostRecent: true}
	tx.appendTrail(st.task, tr)
	set(tx, &st.cur, tr)
}

// eventCreate is the event of a task's or step's first transition, from no state to pending.
const eventCreate = "create"

// taskHop is one transition of a task's path.
type taskHop struct {
	event statemachine.TaskEvent
	to    statemachine.TaskState
}

// taskPath checks a sequence of task events from `from` and returns the hops.
func taskPath(from statemachine.TaskState, events ...statemachine.TaskEvent) ([]taskHop, error) {
	hops := make([]taskHop, 0, len(events))
	cur := from
	for _, ev := range events {
		next, err := statemachine.NextTask(cur, ev)
		if err != nil {
			return nil, err
		}
		hops = append(hops, taskHop{ev, next})
		cur = next
	}
	return hops, nil
}

// moveTask sets the task's state with a compare-and-set on from and records the hops as
// transitions, the last one current.
func (tx *txn) moveTask(t *taskRow, from statemachine.TaskState, hops []taskHop, meta map[string]any) error {
	if len(hops) == 0 {
		return nil
	}
	if t.t.State != from {
		return fmt.Errorf("move task %s from %s: %w", t.t.ID, from, store.ErrConflict)
	}
	to := hops[len(hops)-1].to
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
	cur := from
	for i, h := range hops {
		tr := &transition{from: string(cur), to: string(h.to), event: string(h.event), meta: metaJSON,
			sortKey: prev.sortKey + i + 1, mostRecent: i == len(hops)-1}
		tx.appendTrail(t, tr)
		set(tx, &t.cur, tr)
		cur = h.to
	}
	return nil
}

// counters are a task's state and step counters.
type counters struct {
	state                             statemachine.TaskState
	total, unfinished, active, failed int
	isolated                          int
	name, version                     string
}

// cameToRest tells whether a change from before to state, with the counters after, brought the
// task to rest (statemachine.AtRest): store.OutcomeResult.Settled, which wakes waiters.
func cameToRest(before counters, state statemachine.TaskState, after counters) bool {
	return statemachine.AtRest(state, after.active) && !statemachine.AtRest(before.state, before.active)
}

func countersOf(t *taskRow) counters {
	return counters{state: t.t.State, total: t.t.StepsTotal, unfinished: t.t.StepsUnfinished, active: t.t.StepsActive,
		failed: t.t.StepsFailed, isolated: t.isolated, name: t.t.Name, version: t.t.Version}
}

// addCounters applies deltas to every counter and returns the new values; the table's check
// constraints apply.
func (tx *txn) addCounters(t *taskRow, dTotal, dUnfinished, dActive, dFailed, dIsolated int) (counters, error) {
	set(tx, &t.t.StepsTotal, t.t.StepsTotal+dTotal)
	set(tx, &t.t.StepsUnfinished, t.t.StepsUnfinished+dUnfinished)
	set(tx, &t.t.StepsActive, t.t.StepsActive+dActive)
	set(tx, &t.t.StepsFailed, t.t.StepsFailed+dFailed)
	set(tx, &t.isolated, t.isolated+dIsolated)
	set(tx, &t.t.UpdatedAt, tx.now)
	if err := checkTask(t); err != nil {
		return counters{}, err
	}
	return countersOf(t), nil
}

// settle moves the task from its current state to the one its counters call for, through
// evaluating_results, as the state machine requires. A task that stays writes nothing:
// transitions that do not change the state are not recorded.
func (tx *txn) settle(t *taskRow, c counters, meta map[string]any) (statemachine.TaskState, error) {
	hops, want, err := settleHops(t.t.ID, c)
	if err != nil || len(hops) == 0 {
		return want, err
	}
	if err := tx.moveTask(t, c.state, hops, meta); err != nil {
		return c.state, err
	}
	return want, nil
}

// settleHops plans the path from the task's state to the one its counters call for; no hops
// when it stays.
func settleHops(taskID uuid.UUID, c counters) ([]taskHop, statemachine.TaskState, error) {
	path, want, err := statemachine.SettlePath(c.state, statemachine.StepCounts{
		Unfinished: c.unfinished, Active: c.active, Failed: c.failed, Isolated: c.isolated})
	if err != nil {
		return nil, c.state, fmt.Errorf("settle task %s: %w", taskID, err)
	}
	hops := make([]taskHop, len(path))
	for i, h := range path {
		hops[i] = taskHop{event: h.Event, to: h.To}
	}
	return hops, want, nil
}

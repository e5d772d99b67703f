package postgres

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

// stepMove is one step's transition.
type stepMove struct {
	id   uuid.UUID
	from statemachine.StepState
}

// writeStepTransitions records `to` (reached by event) for every step in moves, each from its own
// state, and makes it the step's current transition. The table's rules are checked first, so an
// illegal move is a programming error reported before anything is written.
func (s *Store) writeStepTransitions(ctx context.Context, tx pgx.Tx, moves []stepMove, event statemachine.StepEvent, to statemachine.StepState, meta map[string]any) error {
	if len(moves) == 0 {
		return nil
	}
	ids := make([]uuid.UUID, len(moves))
	froms := make([]string, len(moves))
	for i, m := range moves {
		got, err := statemachine.NextStep(m.from, event)
		if err != nil {
			return err
		}
		if got != to {
			return fmt.Errorf("step transition %s --%s--> %s, expected %s", m.from, event, got, to)
		}
		ids[i], froms[i] = m.id, string(m.from)
	}
	var metaJSON []byte
	if meta != nil {
		var err error
		if metaJSON, err = json.Marshal(meta); err != nil {
			return err
		}
	}
	tag, err := tx.Exec(ctx, s.q(`
		WITH moves AS (
			SELECT * FROM unnest($1::uuid[], $2::text[]) AS m(step_id, from_state)
		), prev AS (
			UPDATE {s}.step_transitions t SET most_recent = false
			  FROM moves m
			 WHERE t.step_id = m.step_id AND t.most_recent
			RETURNING t.step_id, t.task_id, t.sort_key, m.from_state
		)
		INSERT INTO {s}.step_transitions (step_id, task_id, from_state, to_state, event, metadata, sort_key, created_at)
		SELECT step_id, task_id, from_state, $3, $4, $5, sort_key + 1, clock_timestamp() FROM prev`),
		ids, froms, string(to), string(event), metaJSON)
	if err != nil {
		return fmt.Errorf("record step transitions: %w", err)
	}
	if int(tag.RowsAffected()) != len(moves) {
		return fmt.Errorf("record step transitions: wrote %d of %d", tag.RowsAffected(), len(moves))
	}
	return nil
}

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

// moveTask writes the hops as transitions and sets the task's state with a compare-and-set on
// from. The last hop becomes the current transition.
func (s *Store) moveTask(ctx context.Context, tx pgx.Tx, taskID uuid.UUID, from statemachine.TaskState, hops []taskHop, meta map[string]any) error {
	if len(hops) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	if err := s.queueMoveTask(b, taskID, from, hops, meta); err != nil {
		return err
	}
	return tx.SendBatch(ctx, b).Close()
}

// queueMoveTask adds to b the statements that set the task's state with a compare-and-set on
// from and record the hops as transitions, the last one current.
func (s *Store) queueMoveTask(b *pgx.Batch, taskID uuid.UUID, from statemachine.TaskState, hops []taskHop, meta map[string]any) error {
	froms := make([]string, len(hops))
	tos := make([]string, len(hops))
	events := make([]string, len(hops))
	cur := from
	for i, h := range hops {
		froms[i], tos[i], events[i] = string(cur), string(h.to), string(h.event)
		cur = h.to
	}
	var metaJSON []byte
	if meta != nil {
		var err error
		if metaJSON, err = json.Marshal(meta); err != nil {
			return err
		}
	}
	b.Queue(s.q(`
		UPDATE {s}.tasks SET state = $3, updated_at = now(),
		       completed_at = CASE WHEN $3 IN ('complete', 'error', 'cancelled', 'resolved_manually') THEN now() ELSE completed_at END
		 WHERE task_id = $1 AND state = $2`), taskID, string(from), string(cur)).Exec(func(tag pgconn.CommandTag) error {
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("move task %s from %s: %w", taskID, from, store.ErrConflict)
		}
		return nil
	})
	b.Queue(s.q(`
		WITH prev AS (
			UPDATE {s}.task_transitions SET most_recent = false
			 WHERE task_id = $1 AND most_recent
			RETURNING sort_key
		)
		INSERT INTO {s}.task_transitions (task_id, from_state, to_state, event, metadata, sort_key, most_recent, created_at)
		SELECT $1, x.f, x.t, x.e, $5, prev.sort_key + x.ord, x.ord = cardinality($2::text[]), clock_timestamp()
		  FROM prev, unnest($2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS x(f, t, e, ord)`),
		taskID, froms, tos, events, metaJSON)
	return nil
}

// counters are a task's state and step counters, read under the task row's lock.
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

func (s *Store) lockTask(ctx context.Context, tx pgx.Tx, taskID uuid.UUID) (counters, error) {
	var c counters
	err := tx.QueryRow(ctx, s.q(`
		SELECT `+counterColumns+` FROM {s}.tasks WHERE task_id = $1 FOR NO KEY UPDATE`), taskID).
		Scan(c.dest()...)
	if err == pgx.ErrNoRows {
		return c, fmt.Errorf("task %s: %w", taskID, store.ErrNotFound)
	}
	return c, err
}

// addCounters applies deltas to the task's counters and returns the new values.
func (s *Store) addCounters(ctx context.Context, tx pgx.Tx, taskID uuid.UUID, dUnfinished, dActive, dFailed int) (counters, error) {
	return s.addCountersIsolated(ctx, tx, taskID, 0, dUnfinished, dActive, dFailed, 0)
}

// addCountersIsolated applies deltas to every counter, steps_total and steps_isolated included.
func (s *Store) addCountersIsolated(ctx context.Context, tx pgx.Tx, taskID uuid.UUID, dTotal, dUnfinished, dActive, dFailed, dIsolated int) (counters, error) {
	var c counters
	err := tx.QueryRow(ctx, s.q(`
		UPDATE {s}.tasks
		   SET steps_total = steps_total + $2, steps_unfinished = steps_unfinished + $3,
		       steps_active = steps_active + $4, steps_failed = steps_failed + $5,
		       steps_isolated = steps_isolated + $6, updated_at = now()
		 WHERE task_id = $1
		RETURNING `+counterColumns), taskID, dTotal, dUnfinished, dActive, dFailed, dIsolated).Scan(c.dest()...)
	return c, err
}

// counterColumns are the task columns a counters value holds, in dest's order.
const counterColumns = `state, steps_total, steps_unfinished, steps_active, steps_failed, steps_isolated, name, version`

func (c *counters) dest() []any {
	return []any{&c.state, &c.total, &c.unfinished, &c.active, &c.failed, &c.isolated, &c.name, &c.version}
}

// settle moves the task from its current state to the one its counters call for, through
// evaluating_results, as the state machine requires. A task that stays in steps_in_process writes
// nothing: transitions that do not change the state are not recorded.
func (s *Store) settle(ctx context.Context, tx pgx.Tx, taskID uuid.UUID, c counters, meta map[string]any) (statemachine.TaskState, error) {
	hops, want, err := settleHops(taskID, c)
	if err != nil || len(hops) == 0 {
		return want, err
	}
	if err := s.moveTask(ctx, tx, taskID, c.state, hops, meta); err != nil {
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

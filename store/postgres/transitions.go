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

// writeStepTransitions records, for steps of task taskID, `to` (reached by event) for every step in moves, each from its own
// state, and makes it the step's current transition: it bumps the step's transition_seq and
// writes the transition at that sort key. It serves the paths whose state change did not bump the
// sequence itself (promotion, release, cancellation, operator fixes: none of them hot); the hot
// paths bump transition_seq in the statement that changes the state. The table's rules are
// checked first, so an illegal move is a programming error reported before anything is written.
func (s *Store) writeStepTransitions(ctx context.Context, tx pgx.Tx, taskID uuid.UUID, moves []stepMove, event statemachine.StepEvent, to statemachine.StepState, meta map[string]any) error {
	if len(moves) == 0 {
		return nil
	}
	ids := make([]uuid.UUID, len(moves))
	froms := make([]string, len(moves))
	for i, m := range moves {
		if err := statemachine.CheckStepMove(m.from, event, to); err != nil {
			return err
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
		), seq AS (
			UPDATE {s}.steps st SET transition_seq = st.transition_seq + 1
			  FROM moves m
			 WHERE st.task_id = $6 AND st.step_id = m.step_id -- the task: keyed whatever plan is cached
			RETURNING st.step_id, st.task_id, st.transition_seq, m.from_state
		)
		INSERT INTO {s}.step_transitions (step_id, task_id, from_state, to_state, event, metadata, sort_key, created_at)
		SELECT step_id, task_id, from_state, $3, $4, $5, transition_seq, clock_timestamp() FROM seq`),
		ids, froms, string(to), string(event), metaJSON, taskID)
	if err != nil {
		return fmt.Errorf("record step transitions: %w", err)
	}
	if int(tag.RowsAffected()) != len(moves) {
		return fmt.Errorf("record step transitions: wrote %d of %d", tag.RowsAffected(), len(moves))
	}
	return nil
}

// moveTask writes the path as transitions and sets the task's state with a compare-and-set on
// the path's first state. The last hop becomes the current transition.
func (s *Store) moveTask(ctx context.Context, tx pgx.Tx, taskID uuid.UUID, path []statemachine.TaskTransition, meta map[string]any) error {
	if len(path) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	if err := s.queueMoveTask(b, taskID, path, meta); err != nil {
		return err
	}
	return tx.SendBatch(ctx, b).Close()
}

// pathMeta is the metadata of a task's path, as its transitions store it.
func pathMeta(meta map[string]any) ([]byte, error) {
	if meta == nil {
		return nil, nil
	}
	return json.Marshal(meta)
}

// pathColumns are a path's hops as the transition inserts take them.
func pathColumns(path []statemachine.TaskTransition) (froms, tos, events []string) {
	froms, tos, events = make([]string, len(path)), make([]string, len(path)), make([]string, len(path))
	for i, h := range path {
		froms[i], tos[i], events[i] = string(h.From), string(h.To), string(h.Event)
	}
	return froms, tos, events
}

// queueMoveTask adds to b the statement that sets the task's state with a compare-and-set on
// the path's first state and records the path as transitions, the last one current (at the
// task's transition_seq, which the same statement advances by the path's length).
func (s *Store) queueMoveTask(b *pgx.Batch, taskID uuid.UUID, path []statemachine.TaskTransition, meta map[string]any) error {
	froms, tos, events := pathColumns(path)
	from, cur := path[0].From, path[len(path)-1].To
	metaJSON, err := pathMeta(meta)
	if err != nil {
		return err
	}
	// The task's row takes the path's hops on its transition_seq in the statement that moves it,
	// and the hops are written below the new value: the last one is current.
	b.Queue(s.q(`
		WITH moved AS (
			UPDATE {s}.tasks SET state = $3::text, transition_seq = transition_seq + cardinality($4::text[]), updated_at = now(),
			       completed_at = CASE WHEN $3 IN ('complete', 'error', 'cancelled', 'resolved_manually') THEN now() ELSE completed_at END
			 WHERE task_id = $1 AND state = $2
			RETURNING transition_seq
		)
		INSERT INTO {s}.task_transitions (task_id, from_state, to_state, event, metadata, sort_key, created_at)
		SELECT $1, x.f, x.t, x.e, $7, moved.transition_seq - cardinality($4::text[]) + x.ord, clock_timestamp()
		  FROM moved, unnest($4::text[], $5::text[], $6::text[]) WITH ORDINALITY AS x(f, t, e, ord)`),
		pgID(taskID), string(from), string(cur), froms, tos, events, metaJSON).Exec(func(tag pgconn.CommandTag) error {
		if int(tag.RowsAffected()) != len(path) {
			return fmt.Errorf("move task %s from %s: %w", taskID, from, store.ErrConflict)
		}
		return nil
	})
	return nil
}

// counters are a task's state and step counters, read under the task row's lock, with the names
// its queue messages carry.
type counters struct {
	statemachine.TaskCounters
	name, version string
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

// counterColumns are the task columns a counters value holds, in dest's order.
const counterColumns = `state, steps_total, steps_unfinished, steps_active, steps_failed, steps_isolated, name, version`

func (c *counters) dest() []any {
	return []any{&c.State, &c.Total, &c.Unfinished, &c.Active, &c.Failed, &c.Isolated, &c.name, &c.version}
}

// addCountersSQL applies a planned change ($2 to $6) to the counters of task $1.
const addCountersSQL = `
		UPDATE {s}.tasks
		   SET steps_total = steps_total + $2, steps_unfinished = steps_unfinished + $3,
		       steps_active = steps_active + $4, steps_failed = steps_failed + $5,
		       steps_isolated = steps_isolated + $6, updated_at = now()
		 WHERE task_id = $1`

// queueAddCounters adds to b the update of the task's counters by d.
func (s *Store) queueAddCounters(b *pgx.Batch, taskID uuid.UUID, d statemachine.CounterDelta) {
	b.Queue(s.q(addCountersSQL), pgID(taskID), d.Total, d.Unfinished, d.Active, d.Failed, d.Isolated)
}

// settle applies a planned change to the task's counters and moves it along the planned path,
// in one round trip.
func (s *Store) settle(ctx context.Context, tx pgx.Tx, taskID uuid.UUID, d statemachine.CounterDelta, path []statemachine.TaskTransition, meta map[string]any) error {
	b := &pgx.Batch{}
	s.queueAddCounters(b, taskID, d)
	if len(path) > 0 {
		if err := s.queueMoveTask(b, taskID, path, meta); err != nil {
			return err
		}
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("settle task %s: %w", taskID, err)
	}
	return nil
}

package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
	"github.com/tasker-systems/tasker/store/internal/params"
)

// activeColumns are the columns of an ActiveTask, from tasks t joined to its current transition tr.
const activeColumns = `t.task_id, t.namespace, t.name, t.version, t.state, t.priority, t.created_at, tr.created_at,
	tr.sort_key, extract(epoch FROM now() - t.created_at)::float8, extract(epoch FROM now() - tr.created_at)::float8,
	t.state = 'waiting_for_retry' AND EXISTS (SELECT 1 FROM {s}.steps ws WHERE ws.task_id = t.task_id AND (ws.state = 'waiting_for_retry') IS TRUE
	                                           AND (ws.attempts = 0 OR ws.last_error->>'kind' = 'parked'))`

func scanActive(rows pgx.Rows) ([]store.ActiveTask, error) {
	defer rows.Close()
	var out []store.ActiveTask
	for rows.Next() {
		var a store.ActiveTask
		var age, stateAge float64
		if err := rows.Scan(&a.ID, &a.Namespace, &a.Name, &a.Version, &a.State, &a.Priority, &a.CreatedAt, &a.StateSince,
			&a.StateSortKey, &age, &stateAge, &a.Waiting); err != nil {
			return nil, err
		}
		a.Age, a.StateAge = seconds(age), seconds(stateAge)
		out = append(out, a)
	}
	return out, rows.Err()
}

func seconds(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

// ActiveTasks lists tasks not in a terminal state, in task ID order, with their ages on the
// database's clock.
func (s *Store) ActiveTasks(ctx context.Context, p store.ActiveTasksParams) ([]store.ActiveTask, error) {
	args := []any{p.AfterID, p.Namespace, p.MinAge.Seconds(), limitOr(p.Limit, 100)}
	out, err := keyedQuery(ctx, s, scanActive, s.q(`
		SELECT `+activeColumns+`
		  FROM {s}.tasks t
		  JOIN {s}.task_transitions tr ON tr.task_id = t.task_id AND tr.sort_key = t.transition_seq
		 WHERE t.state NOT IN ('complete', 'error', 'cancelled', 'resolved_manually')
		   AND t.task_id > $1 AND ($2 = '' OR t.namespace = $2)
		   AND ($3::float8 <= 0 OR t.created_at <= now() - make_interval(secs => $3::float8))
		 ORDER BY t.task_id LIMIT $4`), args...)
	if err != nil {
		return nil, fmt.Errorf("list active tasks: %w", err)
	}
	return out, nil
}

// keyedQuery runs one query under keyedPlans (in the implicit transaction of a batch: one round
// trip) and scans its rows with scan: for the maintenance services' walks through the tables,
// which a plan cached while the tables were small would otherwise make whole-table scans.
func keyedQuery[T any](ctx context.Context, s *Store, scan func(pgx.Rows) (T, error), sql string, args ...any) (T, error) {
	var out T
	b := &pgx.Batch{}
	b.Queue(keyedPlans)
	b.Queue(sql, args...).Query(func(rows pgx.Rows) error {
		var err error
		out, err = scan(rows)
		return err
	})
	err := s.pool.SendBatch(ctx, b).Close()
	return out, err
}

// ExhaustedTasks lists blocked tasks with a retryable step in error that used all its attempts,
// and no entry pending or written since the task was blocked.
func (s *Store) ExhaustedTasks(ctx context.Context, p store.ExhaustedTasksParams) ([]store.ActiveTask, error) {
	out, err := keyedQuery(ctx, s, scanActive, s.q(`
		SELECT `+activeColumns+`
		  FROM {s}.tasks t
		  JOIN {s}.task_transitions tr ON tr.task_id = t.task_id AND tr.sort_key = t.transition_seq
		 WHERE t.state = 'blocked_by_failures'
		   AND EXISTS (SELECT 1 FROM {s}.steps st WHERE st.task_id = t.task_id AND (st.state = 'error') IS TRUE
		                  AND st.retryable AND st.attempts >= st.max_attempts)
		   AND NOT EXISTS (SELECT 1 FROM {s}.dead_letters d WHERE d.task_id = t.task_id
		                      AND (d.status = 'pending' OR d.created_at >= tr.created_at))
		 ORDER BY t.task_id LIMIT $1`), limitOr(p.Limit, 100))
	if err != nil {
		return nil, fmt.Errorf("list exhausted tasks: %w", err)
	}
	return out, nil
}

func limitOr(n, def int) int {
	if n <= 0 {
		return def
	}
	return n
}

// checkMeasured locks the task and checks that it is still in from, at the transition of sort key
// sortKey (when > 0).
func (s *Store) checkMeasured(ctx context.Context, tx pgx.Tx, taskID uuid.UUID, from statemachine.TaskState, sortKey int) (counters, error) {
	c, err := s.lockTask(ctx, tx, taskID)
	if err != nil {
		return c, err
	}
	if from != "" && c.State != from {
		return c, fmt.Errorf("task %s is %s, not %s: %w", taskID, c.State, from, store.ErrConflict)
	}
	if sortKey > 0 {
		var cur int
		if err := tx.QueryRow(ctx, s.q(`SELECT transition_seq FROM {s}.tasks WHERE task_id = $1`), taskID).Scan(&cur); err != nil {
			return c, fmt.Errorf("read the current transition of %s: %w", taskID, err)
		}
		if cur != sortKey {
			return c, fmt.Errorf("task %s moved since it was measured: %w", taskID, store.ErrConflict)
		}
	}
	return c, nil
}

// insertDeadLetter writes an entry with a snapshot of the task as it is in tx; it reports false
// when the task has a pending entry already (and writes nothing).
func (s *Store) insertDeadLetter(ctx context.Context, tx pgx.Tx, taskID uuid.UUID, e store.NewDeadLetter) (bool, error) {
	if !e.Reason.Valid() {
		return false, fmt.Errorf("dead letter reason %q is not one of the table's", e.Reason)
	}
	t, err := s.getTask(ctx, tx, taskID)
	if err != nil {
		return false, err
	}
	steps, err := s.getSteps(ctx, tx, taskID)
	if err != nil {
		return false, err
	}
	snap, err := store.MakeSnapshot(t, steps, e.Detail)
	if err != nil {
		return false, fmt.Errorf("snapshot of task %s: %w", taskID, err)
	}
	tag, err := tx.Exec(ctx, s.q(`
		INSERT INTO {s}.dead_letters (dlq_id, task_id, reason, task_state, snapshot, created_at)
		VALUES ($1, $2, $3, $4, $5, clock_timestamp())
		ON CONFLICT (task_id) WHERE status = 'pending' DO NOTHING`), e.ID, taskID, string(e.Reason), string(t.State), snap)
	if err != nil {
		return false, fmt.Errorf("write the dead letter of %s: %w", taskID, err)
	}
	return tag.RowsAffected() == 1, nil
}

// FailTask moves a task to error, cancels its steps that could still run, and writes its entry.
func (s *Store) FailTask(ctx context.Context, p store.FailTaskParams) (*store.FailTaskResult, error) {
	var res *store.FailTaskResult
	err := s.withRetry(ctx, func(tx pgx.Tx) error {
		c, err := s.checkMeasured(ctx, tx, p.TaskID, p.From, p.FromSortKey)
		if err != nil {
			return err
		}
		plan, err := statemachine.PlanFail(c.TaskCounters, p.Meta)
		if err != nil {
			return params.Conflict(fmt.Sprintf("fail task %s", p.TaskID), err)
		}
		if p.DeadLetter != nil {
			if _, err := s.insertDeadLetter(ctx, tx, p.TaskID, *p.DeadLetter); err != nil {
				return err
			}
		}
		// The steps statemachine.FailCancels moves: neither terminal nor in error.
		rows, err := tx.Query(ctx, s.q(`
			WITH old AS (
				SELECT step_id, state FROM {s}.steps
				 WHERE task_id = $1 AND state NOT IN ('complete', 'resolved_manually', 'cancelled', 'error')
				 FOR UPDATE
			)
			UPDATE {s}.steps st
			   SET state = 'cancelled', lease_owner = NULL, lease_expires_at = NULL, next_retry_at = NULL, updated_at = now()
			  FROM old WHERE st.step_id = old.step_id
			RETURNING st.step_id, old.state`), p.TaskID)
		if err != nil {
			return fmt.Errorf("cancel the steps of %s: %w", p.TaskID, err)
		}
		moves, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (stepMove, error) {
			var m stepMove
			return m, r.Scan(&m.id, &m.from)
		})
		if err != nil {
			return err
		}
		if err := s.writeStepTransitions(ctx, tx, p.TaskID, moves, statemachine.StepEventCancel, statemachine.StepCancelled, plan.Meta); err != nil {
			return err
		}
		if err := s.settle(ctx, tx, p.TaskID, plan.Delta(len(moves)), plan.Path, plan.Meta); err != nil {
			return err
		}
		if err := s.notify(ctx, tx, eventCancelled, p.TaskID); err != nil {
			return fmt.Errorf("announce the failure of %s: %w", p.TaskID, err)
		}
		res = &store.FailTaskResult{TaskState: plan.State}
		if p.DeadLetter != nil {
			if res.DeadLetter, err = s.taskDeadLetter(ctx, tx, p.TaskID); err != nil {
				return err
			}
		}
		return nil
	})
	return res, err
}

// AddDeadLetter writes an entry for a task without moving it.
func (s *Store) AddDeadLetter(ctx context.Context, p store.AddDeadLetterParams) (*store.DeadLetter, error) {
	var d *store.DeadLetter
	err := s.withRetry(ctx, func(tx pgx.Tx) error {
		if _, err := s.checkMeasured(ctx, tx, p.TaskID, p.From, p.FromSortKey); err != nil {
			return err
		}
		ok, err := s.insertDeadLetter(ctx, tx, p.TaskID, p.Entry)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("dead-letter task %s: %w", p.TaskID, store.ErrDeadLetterOpen)
		}
		d, err = s.taskDeadLetter(ctx, tx, p.TaskID)
		return err
	})
	return d, err
}

// deadLetterColumns are a DeadLetter's columns, from dead_letters d joined to tasks t.
const deadLetterColumns = `d.dlq_id, d.task_id, d.reason, d.status, d.task_state, d.snapshot, d.created_at, d.resolved_at,
	coalesce(d.resolved_by, ''), coalesce(d.resolution_notes, ''), t.namespace, t.name, t.state, t.priority`

func scanDeadLetter(row pgx.Row) (*store.DeadLetter, error) {
	var d store.DeadLetter
	err := row.Scan(&d.ID, &d.TaskID, &d.Reason, &d.Status, &d.OriginalState, &d.Snapshot, &d.CreatedAt, &d.ResolvedAt,
		&d.ResolvedBy, &d.Notes, &d.Namespace, &d.TaskName, &d.TaskState, &d.TaskPriority)
	if err != nil {
		return nil, err
	}
	return &d, nil
}

// ListDeadLetters returns the entries that match the filter, newest first.
func (s *Store) ListDeadLetters(ctx context.Context, p store.ListDeadLettersParams) ([]store.DeadLetter, error) {
	var where []string
	var args []any
	arg := func(v any) string { args = append(args, v); return fmt.Sprintf("$%d", len(args)) }
	if p.Status != "" {
		where = append(where, "d.status = "+arg(string(p.Status)))
	}
	if p.Reason != "" {
		where = append(where, "d.reason = "+arg(string(p.Reason)))
	}
	if p.Namespace != "" {
		where = append(where, "t.namespace = "+arg(p.Namespace))
	}
	if !p.Since.IsZero() {
		where = append(where, "d.created_at >= "+arg(p.Since))
	}
	order, after := "DESC", "<"
	if p.OldestFirst {
		order, after = "ASC", ">"
	}
	if p.AfterID != uuid.Nil {
		where = append(where, "d.dlq_id "+after+" "+arg(p.AfterID))
	}
	query := `SELECT ` + deadLetterColumns + ` FROM {s}.dead_letters d JOIN {s}.tasks t ON t.task_id = d.task_id`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY d.dlq_id " + order + " LIMIT " + arg(limitOr(p.Limit, 100))
	rows, err := s.pool.Query(ctx, s.q(query), args...)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	defer rows.Close()
	var out []store.DeadLetter
	for rows.Next() {
		d, err := scanDeadLetter(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *d)
	}
	return out, rows.Err()
}

// TaskDeadLetter returns a task's pending entry, or else its newest.
func (s *Store) TaskDeadLetter(ctx context.Context, taskID uuid.UUID) (*store.DeadLetter, error) {
	return s.taskDeadLetter(ctx, s.pool, taskID)
}

func (s *Store) taskDeadLetter(ctx context.Context, q querier, taskID uuid.UUID) (*store.DeadLetter, error) {
	d, err := scanDeadLetter(q.QueryRow(ctx, s.q(`
		SELECT `+deadLetterColumns+` FROM {s}.dead_letters d JOIN {s}.tasks t ON t.task_id = d.task_id
		 WHERE d.task_id = $1 ORDER BY d.status = 'pending' DESC, d.dlq_id DESC LIMIT 1`), taskID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("dead letter of task %s: %w", taskID, store.ErrNotFound)
	}
	return d, err
}

// ResolveDeadLetter sets a pending entry's resolution.
func (s *Store) ResolveDeadLetter(ctx context.Context, p store.ResolveDeadLetterParams) (*store.DeadLetter, error) {
	var d *store.DeadLetter
	err := s.withRetry(ctx, func(tx pgx.Tx) error {
		var status statemachine.DeadLetterStatus
		err := tx.QueryRow(ctx, s.q(`SELECT status FROM {s}.dead_letters WHERE dlq_id = $1 FOR UPDATE`), p.ID).Scan(&status)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("dead letter %s: %w", p.ID, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		if err := statemachine.CheckResolution(status, p.Status); err != nil {
			return params.Conflict(fmt.Sprintf("resolve dead letter %s", p.ID), err)
		}
		if _, err := tx.Exec(ctx, s.q(`
			UPDATE {s}.dead_letters SET status = $2, resolution_notes = nullif($3, ''), resolved_by = nullif($4, ''),
			       resolved_at = clock_timestamp()
			 WHERE dlq_id = $1`), p.ID, string(p.Status), p.Notes, p.ResolvedBy); err != nil {
			return fmt.Errorf("resolve dead letter %s: %w", p.ID, err)
		}
		d, err = scanDeadLetter(tx.QueryRow(ctx, s.q(`
			SELECT `+deadLetterColumns+` FROM {s}.dead_letters d JOIN {s}.tasks t ON t.task_id = d.task_id
			 WHERE d.dlq_id = $1`), p.ID))
		return err
	})
	return d, err
}

// DeadLetterStats counts the entries per reason.
func (s *Store) DeadLetterStats(ctx context.Context, p store.DeadLetterStatsParams) ([]store.DeadLetterStats, error) {
	rows, err := s.pool.Query(ctx, s.q(`
		SELECT d.reason, d.status, count(*),
		       coalesce(extract(epoch FROM sum(d.resolved_at - d.created_at)), 0)::float8
		  FROM {s}.dead_letters d JOIN {s}.tasks t ON t.task_id = d.task_id
		 WHERE ($1 = '' OR t.namespace = $1) AND ($2::timestamptz IS NULL OR d.created_at >= $2)
		 GROUP BY d.reason, d.status ORDER BY d.reason, d.status`), p.Namespace, nullTime(p.Since))
	if err != nil {
		return nil, fmt.Errorf("dead letter stats: %w", err)
	}
	defer rows.Close()
	var out []store.DeadLetterStats
	var resolvedSecs float64
	var resolved int
	flush := func() {
		if n := len(out); n > 0 && resolved > 0 {
			out[n-1].MeanTimeToResolution = seconds(resolvedSecs / float64(resolved))
		}
		resolvedSecs, resolved = 0, 0
	}
	for rows.Next() {
		var reason store.DeadLetterReason
		var status statemachine.DeadLetterStatus
		var n int
		var secs float64
		if err := rows.Scan(&reason, &status, &n, &secs); err != nil {
			return nil, err
		}
		if len(out) == 0 || out[len(out)-1].Reason != reason {
			flush()
			out = append(out, store.DeadLetterStats{Reason: reason, ByStatus: map[statemachine.DeadLetterStatus]int{}})
		}
		cur := &out[len(out)-1]
		cur.Total += n
		cur.ByStatus[status] += n
		if status.Resolved() {
			resolved += n
			resolvedSecs += secs
		}
	}
	flush()
	return out, rows.Err()
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

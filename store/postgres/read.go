package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/tasker/store"
)

const taskColumns = `task_id, namespace, name, version, state, context, identity_hash, coalesce(idempotency_key, ''),
	priority, coalesce(correlation_id, ''), tags, steps_total, steps_unfinished, steps_active, steps_failed,
	created_at, updated_at, completed_at, coalesce(initiator, ''), coalesce(source_system, ''), coalesce(reason, ''),
	coalesce(trace_parent, '')`

func scanTask(row pgx.Row) (*store.Task, error) {
	var t store.Task
	if err := row.Scan(taskDest(&t)...); err != nil {
		return nil, err
	}
	return &t, nil
}

// taskDest returns the scan destinations of taskColumns in t.
func taskDest(t *store.Task) []any {
	return []any{&t.ID, &t.Namespace, &t.Name, &t.Version, &t.State, &t.Context, &t.IdentityHash, &t.IdempotencyKey,
		&t.Priority, &t.CorrelationID, &t.Tags, &t.StepsTotal, &t.StepsUnfinished, &t.StepsActive, &t.StepsFailed,
		&t.CreatedAt, &t.UpdatedAt, &t.CompletedAt, &t.Initiator, &t.SourceSystem, &t.Reason, &t.TraceParent}
}

const stepColumns = `step_id, task_id, name, template_step, handler, step_type, state, attempts, max_attempts, retryable,
	backoff, backoff_base_ms, max_backoff_ms, timeout_ms, next_retry_at, coalesce(lease_owner, ''), lease_expires_at,
	inputs, result, last_error, created_at, updated_at, started_at, completed_at, checkpoint, batch_group,
	coalesce(failure_strategy, '')`

func scanStep(row pgx.Row) (*store.Step, error) { return scanStepWith(row) }

// scanStepWith scans a step row followed by extra columns.
func scanStepWith(row pgx.Row, extra ...any) (*store.Step, error) {
	var d stepScan
	if err := row.Scan(append(d.dest(), extra...)...); err != nil {
		return nil, err
	}
	return d.step(), nil
}

// stepScan receives the columns of stepColumns.
type stepScan struct {
	st                       store.Step
	baseMs, maxMs, timeoutMs int64
}

// dest returns the scan destinations of stepColumns.
func (d *stepScan) dest() []any {
	st := &d.st
	return []any{&st.ID, &st.TaskID, &st.Name, &st.TemplateStep, &st.Handler, &st.Type, &st.State, &st.Attempts,
		&st.MaxAttempts, &st.Retryable, &st.Backoff, &d.baseMs, &d.maxMs, &d.timeoutMs, &st.NextRetryAt, &st.LeaseOwner,
		&st.LeaseExpiresAt, &st.Inputs, &st.Result, &st.LastError, &st.CreatedAt, &st.UpdatedAt, &st.StartedAt, &st.CompletedAt,
		&st.Checkpoint, &st.BatchGroup, &st.FailureStrategy}
}

// step returns the scanned step.
func (d *stepScan) step() *store.Step {
	d.st.BackoffBase, d.st.MaxBackoff, d.st.Timeout = millis(d.baseMs), millis(d.maxMs), millis(d.timeoutMs)
	return &d.st
}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func (s *Store) getTask(ctx context.Context, q querier, id uuid.UUID) (*store.Task, error) {
	t, err := scanTask(q.QueryRow(ctx, s.q(`SELECT `+taskColumns+` FROM {s}.tasks WHERE task_id = $1`), pgID(id)))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("task %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get task %s: %w", id, err)
	}
	return t, nil
}

func (s *Store) taskByIdentity(ctx context.Context, q querier, ns, name, hash string) (*store.Task, error) {
	t, err := scanTask(q.QueryRow(ctx, s.q(`SELECT `+taskColumns+` FROM {s}.tasks
		WHERE namespace = $1 AND name = $2 AND identity_hash = $3`), ns, name, hash))
	if err != nil {
		return nil, fmt.Errorf("find duplicate task: %w", err)
	}
	return t, nil
}

// GetTask returns a task.
func (s *Store) GetTask(ctx context.Context, id uuid.UUID) (*store.Task, error) {
	return s.getTask(ctx, s.pool, id)
}

// GetTaskWithSteps returns a task and its steps in creation order, in one round trip (the two
// reads pipelined in one implicit transaction).
func (s *Store) GetTaskWithSteps(ctx context.Context, id uuid.UUID) (*store.Task, []store.Step, error) {
	b := &pgx.Batch{}
	var task *store.Task
	var steps []store.Step
	b.Queue(s.q(`SELECT `+taskColumns+` FROM {s}.tasks WHERE task_id = $1`), pgID(id)).QueryRow(func(row pgx.Row) error {
		t, err := scanTask(row)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("task %s: %w", id, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("get task %s: %w", id, err)
		}
		task = t
		return nil
	})
	b.Queue(s.q(`SELECT `+stepColumns+` FROM {s}.steps WHERE task_id = $1 ORDER BY step_id`), id).Query(func(rows pgx.Rows) error {
		var err error
		if steps, err = collectSteps(rows); err != nil {
			return fmt.Errorf("get steps of %s: %w", id, err)
		}
		return nil
	})
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return nil, nil, err
	}
	return task, steps, nil
}

// GetSteps returns a task's steps in creation order.
func (s *Store) GetSteps(ctx context.Context, taskID uuid.UUID) ([]store.Step, error) {
	return s.getSteps(ctx, s.pool, taskID)
}

func (s *Store) getSteps(ctx context.Context, q querier, taskID uuid.UUID) ([]store.Step, error) {
	rows, err := q.Query(ctx, s.q(`SELECT `+stepColumns+` FROM {s}.steps WHERE task_id = $1 ORDER BY step_id`), pgID(taskID))
	if err != nil {
		return nil, fmt.Errorf("get steps of %s: %w", taskID, err)
	}
	steps, err := collectSteps(rows)
	if err != nil {
		return nil, fmt.Errorf("get steps of %s: %w", taskID, err)
	}
	return steps, nil
}

// collectSteps scans step rows (stepColumns) and closes them.
func collectSteps(rows pgx.Rows) ([]store.Step, error) {
	defer rows.Close()
	var out []store.Step
	for rows.Next() {
		st, err := scanStep(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *st)
	}
	return out, rows.Err()
}

// scheduledSQL keeps the tasks waiting for their scheduled start (store.ListTasksParams.Scheduled),
// through steps_name_unique's leading task_id.
const scheduledSQL = `state = 'waiting_for_retry'
	AND EXISTS (SELECT 1 FROM {s}.steps st WHERE st.task_id = tasks.task_id AND st.state = 'waiting_for_retry' AND st.attempts = 0)
	AND NOT EXISTS (SELECT 1 FROM {s}.steps st WHERE st.task_id = tasks.task_id AND st.attempts > 0)`

// ListTasks returns tasks matching the filter, newest first.
func (s *Store) ListTasks(ctx context.Context, p store.ListTasksParams) ([]store.Task, error) {
	var where []string
	var args []any
	arg := func(v any) string { args = append(args, v); return fmt.Sprintf("$%d", len(args)) }
	if p.Namespace != "" {
		where = append(where, "namespace = "+arg(p.Namespace))
	}
	if p.Name != "" {
		where = append(where, "name = "+arg(p.Name))
	}
	if len(p.States) > 0 {
		states := make([]string, len(p.States))
		for i, st := range p.States {
			states[i] = string(st)
		}
		where = append(where, "state = ANY("+arg(states)+")")
	}
	if !p.CreatedAfter.IsZero() {
		where = append(where, "created_at >= "+arg(p.CreatedAfter))
	}
	if !p.CreatedBefore.IsZero() {
		where = append(where, "created_at < "+arg(p.CreatedBefore))
	}
	if p.AfterID != uuid.Nil {
		where = append(where, "(created_at, task_id) < (SELECT created_at, task_id FROM {s}.tasks WHERE task_id = "+arg(p.AfterID)+")")
	}
	if p.Scheduled {
		where = append(where, scheduledSQL)
	}
	limit := p.Limit
	if limit <= 0 {
		limit = 100
	}
	query := `SELECT ` + taskColumns + ` FROM {s}.tasks`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY created_at DESC, task_id DESC LIMIT " + arg(limit)
	rows, err := s.pool.Query(ctx, strings.ReplaceAll(query, "{s}", s.ident), args...)
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	defer rows.Close()
	var out []store.Task
	for rows.Next() {
		t, err := scanTask(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *t)
	}
	return out, rows.Err()
}

// Transitions returns the audit trail of a task and its steps in the order it was written.
func (s *Store) Transitions(ctx context.Context, taskID uuid.UUID) ([]store.Transition, error) {
	rows, err := s.pool.Query(ctx, s.q(`
		SELECT task_id, NULL::uuid, '', coalesce(from_state, ''), to_state, event, metadata, sort_key, created_at, 0 AS kind, id
		  FROM {s}.task_transitions WHERE task_id = $1
		UNION ALL
		SELECT t.task_id, t.step_id, st.name, coalesce(t.from_state, ''), t.to_state, t.event, t.metadata, t.sort_key, t.created_at, 1, t.id
		  FROM {s}.steps st JOIN {s}.step_transitions t USING (step_id) WHERE st.task_id = $1 -- by step: no task_id index
		ORDER BY created_at, kind, id`), taskID)
	if err != nil {
		return nil, fmt.Errorf("transitions of %s: %w", taskID, err)
	}
	defer rows.Close()
	var out []store.Transition
	for rows.Next() {
		var tr store.Transition
		var stepID *uuid.UUID
		var kind int
		var id int64
		if err := rows.Scan(&tr.TaskID, &stepID, &tr.StepName, &tr.From, &tr.To, &tr.Event, &tr.Metadata, &tr.SortKey, &tr.CreatedAt, &kind, &id); err != nil {
			return nil, err
		}
		if stepID != nil {
			tr.StepID = *stepID
		}
		out = append(out, tr)
	}
	return out, rows.Err()
}

// StepTask returns the task and namespace of a step.
func (s *Store) StepTask(ctx context.Context, stepID uuid.UUID) (uuid.UUID, string, error) {
	var taskID uuid.UUID
	var ns string
	err := s.pool.QueryRow(ctx, s.q(`SELECT t.task_id, t.namespace FROM {s}.steps st JOIN {s}.tasks t USING (task_id) WHERE st.step_id = $1`), stepID).Scan(&taskID, &ns)
	if errors.Is(err, pgx.ErrNoRows) {
		return uuid.Nil, "", fmt.Errorf("step %s: %w", stepID, store.ErrNotFound)
	}
	return taskID, ns, err
}

// StepNames returns the names of a task's existing steps.
func (s *Store) StepNames(ctx context.Context, taskID uuid.UUID) ([]string, error) {
	rows, err := s.pool.Query(ctx, s.q(`SELECT name FROM {s}.steps WHERE task_id = $1`), taskID)
	if err != nil {
		return nil, fmt.Errorf("step names of %s: %w", taskID, err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// SaveCheckpoint stores a checkpoint for the attempt the worker holds.
func (s *Store) SaveCheckpoint(ctx context.Context, p store.CheckpointParams) error {
	tag, err := s.pool.Exec(ctx, s.q(`UPDATE {s}.steps SET checkpoint = $4, updated_at = now()
		WHERE step_id = $1 AND state = 'in_progress' AND lease_owner = $2 AND attempts = $3`),
		p.StepID, p.WorkerID, p.Attempt, p.Checkpoint)
	if err != nil {
		return fmt.Errorf("save checkpoint of %s: %w", p.StepID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("save checkpoint of %s: %w", p.StepID, store.ErrConflict)
	}
	return nil
}

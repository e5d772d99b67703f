package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

// RegisterTemplate stores a template definition in the registry, replacing an older definition
// under the same key.
func (s *Store) RegisterTemplate(ctx context.Context, p store.RegisterTemplateParams) error {
	_, err := s.pool.Exec(ctx, s.q(`
		INSERT INTO {s}.templates (namespace, name, version, definition, checksum)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (namespace, name, version) DO UPDATE
		   SET definition = EXCLUDED.definition, checksum = EXCLUDED.checksum, updated_at = now()
		 WHERE {s}.templates.checksum <> EXCLUDED.checksum`),
		p.Namespace, p.Name, p.Version, p.Definition, p.Checksum)
	if err != nil {
		return fmt.Errorf("register template %s/%s@%s: %w", p.Namespace, p.Name, p.Version, err)
	}
	return nil
}

// CreateTask inserts the task, its steps, edges and initial transitions and enqueues the root
// steps, in tx when given (through a savepoint) or in a transaction of its own. A task with the
// same identity hash for the same template is returned with Duplicate set, and nothing is written.
func (s *Store) CreateTask(ctx context.Context, tx pgx.Tx, p store.CreateTaskParams) (*store.CreateTaskResult, error) {
	var res *store.CreateTaskResult
	err := s.inTx(ctx, tx, func(tx pgx.Tx) error {
		var err error
		res, err = s.createTask(ctx, tx, p)
		return err
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

func (s *Store) createTask(ctx context.Context, tx pgx.Tx, p store.CreateTaskParams) (*store.CreateTaskResult, error) {
	var roots []store.StepRef
	for _, st := range p.Steps {
		if len(st.Parents) == 0 {
			roots = append(roots, store.StepRef{TaskID: p.TaskID, StepID: st.StepID})
		}
	}
	if len(roots) == 0 {
		return nil, errors.New("create task: no root step")
	}
	tags := p.Tags
	if tags == nil {
		tags = []string{}
	}
	initial := statemachine.TaskStepsInProcess
	var inserted bool
	err := tx.QueryRow(ctx, s.q(`
		INSERT INTO {s}.tasks (task_id, namespace, name, version, state, context, identity_hash, idempotency_key,
		                       priority, correlation_id, tags, steps_total, steps_unfinished, steps_active)
		VALUES ($1, $2, $3, $4, $5, $6, $7, NULLIF($8, ''), $9, NULLIF($10, ''), $11, $12, $12, $13)
		ON CONFLICT ON CONSTRAINT tasks_identity_unique DO NOTHING
		RETURNING true`),
		p.TaskID, p.Namespace, p.Name, p.Version, string(initial), p.Context, p.IdentityHash, p.IdempotencyKey,
		p.Priority, p.CorrelationID, tags, len(p.Steps), len(roots)).Scan(&inserted)
	if errors.Is(err, pgx.ErrNoRows) {
		existing, err := s.taskByIdentity(ctx, tx, p.Namespace, p.Name, p.IdentityHash)
		if err != nil {
			return nil, err
		}
		return &store.CreateTaskResult{Task: *existing, Duplicate: true}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("insert task: %w", err)
	}

	stepRows := make([][]any, len(p.Steps))
	transRows := make([][]any, 0, len(p.Steps)+len(roots))
	var edgeRows [][]any
	for i, st := range p.Steps {
		state := statemachine.StepPending
		if len(st.Parents) == 0 {
			state = statemachine.StepEnqueued
		}
		var inputs any
		if len(st.Inputs) > 0 {
			inputs = st.Inputs
		}
		stepRows[i] = []any{st.StepID, p.TaskID, st.Name, st.TemplateStep, st.Handler, st.Type, string(state),
			st.MaxAttempts, st.Retryable, st.Backoff, st.BackoffBase.Milliseconds(), st.MaxBackoff.Milliseconds(),
			st.Timeout.Milliseconds(), len(st.Parents), len(st.Parents), inputs}
		transRows = append(transRows, []any{st.StepID, p.TaskID, nil, string(statemachine.StepPending), "create", 1, len(st.Parents) > 0})
		if len(st.Parents) == 0 {
			transRows = append(transRows, []any{st.StepID, p.TaskID, string(statemachine.StepPending), string(statemachine.StepEnqueued), string(statemachine.StepEventEnqueue), 2, true})
		}
		for _, parent := range st.Parents {
			edgeRows = append(edgeRows, []any{p.TaskID, p.Steps[parent].StepID, st.StepID})
		}
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{s.schema, "steps"},
		[]string{"step_id", "task_id", "name", "template_step", "handler", "step_type", "state", "max_attempts",
			"retryable", "backoff", "backoff_base_ms", "max_backoff_ms", "timeout_ms", "parents_total",
			"parents_unfinished", "inputs"},
		pgx.CopyFromRows(stepRows)); err != nil {
		return nil, fmt.Errorf("insert steps: %w", err)
	}
	if len(edgeRows) > 0 {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{s.schema, "edges"},
			[]string{"task_id", "from_step_id", "to_step_id"}, pgx.CopyFromRows(edgeRows)); err != nil {
			return nil, fmt.Errorf("insert edges: %w", err)
		}
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{s.schema, "step_transitions"},
		[]string{"step_id", "task_id", "from_state", "to_state", "event", "sort_key", "most_recent"},
		pgx.CopyFromRows(transRows)); err != nil {
		return nil, fmt.Errorf("insert step transitions: %w", err)
	}
	_, err = tx.Exec(ctx, s.q(`
		INSERT INTO {s}.task_transitions (task_id, from_state, to_state, event, sort_key, most_recent, created_at)
		VALUES ($1, NULL, 'pending', 'create', 1, false, clock_timestamp()),
		       ($1, 'pending', 'initializing', 'start', 2, false, clock_timestamp()),
		       ($1, 'initializing', 'enqueuing_steps', 'initialized', 3, false, clock_timestamp()),
		       ($1, 'enqueuing_steps', 'steps_in_process', 'steps_enqueued', 4, true, clock_timestamp())`), p.TaskID)
	if err != nil {
		return nil, fmt.Errorf("insert task transitions: %w", err)
	}
	if p.Enqueuer != nil {
		if err := p.Enqueuer.EnqueueTx(ctx, tx, p.Namespace, roots, 0); err != nil {
			return nil, fmt.Errorf("enqueue root steps: %w", err)
		}
	}
	task, err := s.getTask(ctx, tx, p.TaskID)
	if err != nil {
		return nil, err
	}
	return &store.CreateTaskResult{Task: *task}, nil
}

package postgres

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/tasker/store"
)

// spawn creates the steps of a decision's or batchable step's outcome, with their edges and first
// transitions, and returns how many steps it created. The deciding step counts as an unfinished
// parent of its new children: its own completion releases them right after, through the usual
// release. Names are unique per task, so replaying an outcome cannot create a step twice.
func (s *Store) spawn(ctx context.Context, tx pgx.Tx, taskID, decider uuid.UUID, plan *store.SpawnPlan) (int, error) {
	n := len(plan.Steps)
	if n == 0 {
		return 0, nil
	}
	ids := make([]uuid.UUID, n)
	names, tsteps, handlers, types, backoffs, strategies := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]*string, n)
	maxAttempts := make([]int64, n) // pgx refuses, not truncates, a value beyond int4
	retryable, held := make([]bool, n), make([]bool, n)
	baseMs, maxMs, timeoutMs := make([]int64, n), make([]int64, n), make([]int64, n)
	inputs := make([]*string, n)
	groups := make([]*uuid.UUID, n)
	var edgeChild, edgeParent []string
	for i, st := range plan.Steps {
		ids[i], names[i], tsteps[i], handlers[i], types[i], backoffs[i] = st.StepID, st.Name, st.TemplateStep, st.Handler, st.Type, st.Backoff
		maxAttempts[i], retryable[i], held[i] = int64(st.MaxAttempts), st.Retryable, st.Held
		baseMs[i], maxMs[i], timeoutMs[i] = st.BackoffBase.Milliseconds(), st.MaxBackoff.Milliseconds(), st.Timeout.Milliseconds()
		if len(st.Inputs) > 0 {
			v := string(st.Inputs)
			inputs[i] = &v
		}
		if st.BatchGroup != uuid.Nil {
			g := st.BatchGroup
			groups[i] = &g
		}
		if st.FailureStrategy != "" {
			v := st.FailureStrategy
			strategies[i] = &v
		}
		for _, parent := range st.ParentNames {
			edgeChild = append(edgeChild, st.Name)
			edgeParent = append(edgeParent, parent)
		}
	}
	// New steps start pending with no parents counted; the edges below count them.
	rows, err := tx.Query(ctx, s.q(`
		WITH ins AS (
			INSERT INTO {s}.steps (step_id, task_id, name, template_step, handler, step_type, state, max_attempts,
			                       retryable, backoff, backoff_base_ms, max_backoff_ms, timeout_ms, parents_total,
			                       parents_unfinished, inputs, held, batch_group, failure_strategy)
			SELECT u.id, $1, u.name, u.tstep, u.handler, u.type, 'pending', u.max_attempts, u.retryable, u.backoff,
			       u.base_ms, u.max_ms, u.timeout_ms, 0, 0, u.inputs::jsonb, u.held, u.grp, u.strategy
			  FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int[], $8::bool[],
			              $9::text[], $10::bigint[], $11::bigint[], $12::bigint[], $13::text[], $14::bool[],
			              $15::uuid[], $16::text[])
			       AS u(id, name, tstep, handler, type, max_attempts, retryable, backoff, base_ms, max_ms,
			            timeout_ms, inputs, held, grp, strategy)
			ON CONFLICT (task_id, name) DO NOTHING
			RETURNING step_id
		), tr AS (
			INSERT INTO {s}.step_transitions (step_id, task_id, from_state, to_state, event, sort_key, created_at)
			SELECT step_id, $1, NULL, 'pending', 'create', 1, clock_timestamp() FROM ins -- transition_seq starts at 1
		)
		SELECT step_id FROM ins`),
		taskID, ids, names, tsteps, handlers, types, maxAttempts, retryable, backoffs, baseMs, maxMs, timeoutMs,
		inputs, held, groups, strategies)
	if err != nil {
		return 0, fmt.Errorf("create steps: %w", err)
	}
	created, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return 0, fmt.Errorf("create steps: %w", err)
	}
	if len(edgeChild) == 0 {
		return len(created), nil
	}
	// Edges from every named parent that exists to every child still pending; a child counts each
	// new parent as unfinished unless it has already finished (the decider never has: its release
	// follows).
	_, err = tx.Exec(ctx, s.q(`
		WITH want AS (
			SELECT DISTINCT c.step_id AS child, p.step_id AS parent,
			       -- statemachine.EdgeUnfinished
			       (p.state NOT IN ('complete', 'resolved_manually') OR p.step_id = $4) AS unfinished
			  FROM unnest($2::text[], $3::text[]) AS u(child_name, parent_name)
			  JOIN {s}.steps c ON c.task_id = $1 AND c.name = u.child_name AND c.state = 'pending'
			  JOIN {s}.steps p ON p.task_id = $1 AND p.name = u.parent_name
		), ins AS (
			INSERT INTO {s}.edges (task_id, from_step_id, to_step_id)
			SELECT $1, parent, child FROM want
			ON CONFLICT DO NOTHING
			RETURNING from_step_id, to_step_id
		), counts AS (
			SELECT w.child, count(*) AS total, count(*) FILTER (WHERE w.unfinished) AS unfinished
			  FROM want w JOIN ins ON ins.from_step_id = w.parent AND ins.to_step_id = w.child
			 GROUP BY w.child
		)
		UPDATE {s}.steps st
		   SET parents_total = st.parents_total + counts.total,
		       parents_unfinished = st.parents_unfinished + counts.unfinished, updated_at = now()
		  FROM counts WHERE st.step_id = counts.child`),
		taskID, edgeChild, edgeParent, decider)
	if err != nil {
		return 0, fmt.Errorf("create edges: %w", err)
	}
	return len(created), nil
}

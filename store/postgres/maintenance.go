package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/tasker/store"
)

// TryLead takes the named leadership when it is free or expired, or renews it for its holder, in
// one statement; it reports whether p.LeaderID holds it afterwards.
func (s *Store) TryLead(ctx context.Context, p store.LeadParams) (bool, error) {
	var holder string
	err := s.pool.QueryRow(ctx, s.q(`
		INSERT INTO {s}.leaders AS l (name, leader_id, elected_at, expires_at)
		VALUES ($1, $2, now(), now() + $3 * interval '1 millisecond')
		ON CONFLICT (name) DO UPDATE
		   SET leader_id = EXCLUDED.leader_id,
		       elected_at = CASE WHEN l.leader_id = EXCLUDED.leader_id THEN l.elected_at ELSE now() END,
		       expires_at = EXCLUDED.expires_at
		 WHERE l.leader_id = EXCLUDED.leader_id OR l.expires_at < now()
		RETURNING leader_id`), p.Name, p.LeaderID, p.TTL.Milliseconds()).Scan(&holder)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("elect %s: %w", p.Name, err)
	}
	return holder == p.LeaderID, nil
}

// Resign frees the leadership at once if p.LeaderID holds it, so that another engine takes over
// without waiting for the lease to expire.
func (s *Store) Resign(ctx context.Context, p store.LeadParams) error {
	_, err := s.pool.Exec(ctx, s.q(`DELETE FROM {s}.leaders WHERE name = $1 AND leader_id = $2`), p.Name, p.LeaderID)
	if err != nil {
		return fmt.Errorf("resign %s: %w", p.Name, err)
	}
	return nil
}

// ExpiredSteps lists in-progress steps whose lease has expired, oldest first.
func (s *Store) ExpiredSteps(ctx context.Context, p store.ExpiredStepsParams) ([]store.ExpiredStep, error) {
	limit := p.Limit
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.pool.Query(ctx, s.q(`
		SELECT `+stepColumns+`,
		       (SELECT t.namespace FROM {s}.tasks t WHERE t.task_id = st.task_id),
		       (SELECT t.name FROM {s}.tasks t WHERE t.task_id = st.task_id),
		       (SELECT t.version FROM {s}.tasks t WHERE t.task_id = st.task_id),
		       (SELECT coalesce(t.trace_parent, '') FROM {s}.tasks t WHERE t.task_id = st.task_id)
		  FROM (SELECT * FROM {s}.steps
		         WHERE state = 'in_progress' AND lease_expires_at < now()
		         ORDER BY lease_expires_at LIMIT $1) st`), limit)
	if err != nil {
		return nil, fmt.Errorf("expired steps: %w", err)
	}
	defer rows.Close()
	var out []store.ExpiredStep
	for rows.Next() {
		var ex store.ExpiredStep
		st, err := scanStepWith(rows, &ex.Namespace, &ex.TaskName, &ex.Version, &ex.TraceParent)
		if err != nil {
			return nil, err
		}
		ex.Step = *st
		out = append(out, ex)
	}
	return out, rows.Err()
}

// StaleSteps lists steps enqueued, or due for their retry, since longer than p.OlderThan, and
// touches them so that the next sweep within OlderThan skips them.
func (s *Store) StaleSteps(ctx context.Context, p store.StaleStepsParams) ([]store.StaleStep, error) {
	limit := p.Limit
	if limit <= 0 {
		limit = 500
	}
	rows, err := s.pool.Query(ctx, s.q(`
		WITH stale AS (
			SELECT step_id FROM {s}.steps
			 WHERE state IN ('enqueued', 'waiting_for_retry')
			   AND updated_at < now() - $1 * interval '1 millisecond'
			   AND (state = 'enqueued' OR next_retry_at < now())
			 ORDER BY updated_at
			 LIMIT $2
			   FOR UPDATE SKIP LOCKED
		)
		UPDATE {s}.steps st SET updated_at = now()
		  FROM stale, {s}.tasks t
		 WHERE st.step_id = stale.step_id AND t.task_id = st.task_id
		RETURNING st.step_id, st.task_id, st.state = 'waiting_for_retry', st.template_step, st.handler, t.namespace, t.name, t.version`),
		p.OlderThan.Milliseconds(), limit)
	if err != nil {
		return nil, fmt.Errorf("stale steps: %w", err)
	}
	defer rows.Close()
	var out []store.StaleStep
	for rows.Next() {
		var st store.StaleStep
		if err := rows.Scan(&st.Ref.StepID, &st.Ref.TaskID, &st.Ref.Retry, &st.Ref.Name, &st.Ref.Handler, &st.Namespace, &st.Ref.TaskName, &st.Ref.Version); err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, rows.Err()
}

package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/tasker/store"
)

var _ store.PoolReporter = (*Store)(nil)

// Ping checks that the database answers, in one round trip on a pooled connection.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("ping the database: %w", err)
	}
	return nil
}

// Leader returns the holder of the named leadership whose lease has not expired.
func (s *Store) Leader(ctx context.Context, name string) (store.Leader, bool, error) {
	l := store.Leader{Name: name}
	err := s.pool.QueryRow(ctx, s.q(`
		SELECT leader_id, elected_at, expires_at FROM {s}.leaders
		 WHERE name = $1 AND expires_at >= now()`), name).Scan(&l.LeaderID, &l.ElectedAt, &l.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Leader{}, false, nil
	}
	if err != nil {
		return store.Leader{}, false, fmt.Errorf("read leader %s: %w", name, err)
	}
	return l, true, nil
}

// Edges returns the dependencies between a task's steps, by parent then child ID.
func (s *Store) Edges(ctx context.Context, taskID uuid.UUID) ([]store.Edge, error) {
	rows, err := s.pool.Query(ctx, s.q(`
		SELECT from_step_id, to_step_id FROM {s}.edges WHERE task_id = $1
		 ORDER BY from_step_id, to_step_id`), taskID)
	if err != nil {
		return nil, fmt.Errorf("read edges of task %s: %w", taskID, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Edge, error) {
		var e store.Edge
		err := r.Scan(&e.From, &e.To)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("read edges of task %s: %w", taskID, err)
	}
	return out, nil
}

// PoolStats reports the store's connection pool.
func (s *Store) PoolStats() store.PoolStats {
	st := s.pool.Stat()
	return store.PoolStats{
		MaxConns: int(st.MaxConns()), TotalConns: int(st.TotalConns()), AcquiredConns: int(st.AcquiredConns()),
		IdleConns: int(st.IdleConns()), ConstructingConns: int(st.ConstructingConns()),
		AcquireCount: st.AcquireCount(), EmptyAcquireCount: st.EmptyAcquireCount(),
		CanceledAcquireCount: st.CanceledAcquireCount(), AcquireDuration: st.AcquireDuration(),
	}
}

package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/tasker/store"
)

var _ store.Limiter = (*Store)(nil)

// unlockTimeout bounds the advisory unlock.
const unlockTimeout = 5 * time.Second

// LockLimit implements store.Limiter with a session advisory lock on a connection of its own, held
// until unlock: a claim's transaction on another connection commits before the lock goes, so the
// next engine's count sees it. The lock and the count are pipelined: one round trip; the count,
// a statement of its own, reads a snapshot taken once the lock is held.
func (s *Store) LockLimit(ctx context.Context, key, namespace string) (func(), int, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("lock limit %q: %w", key, err)
	}
	lockKey := "tasker.limit:" + s.schema + ":" + key
	b := &pgx.Batch{}
	b.Queue(`SELECT pg_advisory_lock(hashtextextended($1, 0))`, lockKey)
	var n int
	b.Queue(s.q(inProgressSQL), namespace).QueryRow(func(row pgx.Row) error { return row.Scan(&n) })
	unlock := func() {
		ctx, cancel := context.WithTimeout(context.Background(), unlockTimeout)
		defer cancel()
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock(hashtextextended($1, 0))`, lockKey); err != nil {
			// The session may still hold the lock: close it rather than hand it back to the pool.
			_ = conn.Conn().Close(ctx)
		}
		conn.Release()
	}
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		unlock() // the lock may have been taken before the count failed
		return nil, 0, fmt.Errorf("lock limit %q: %w", key, err)
	}
	return unlock, n, nil
}

// inProgressSQL counts the in_progress steps of namespace $1, through steps_lease_idx, which
// holds the in-progress steps.
const inProgressSQL = `
		SELECT count(*) FROM {s}.steps st JOIN {s}.tasks t ON t.task_id = st.task_id
		 WHERE st.state = 'in_progress' AND t.namespace = $1`

// InProgress implements store.Limiter.
func (s *Store) InProgress(ctx context.Context, namespace string) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, s.q(inProgressSQL), namespace).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count the steps in progress of %q: %w", namespace, err)
	}
	return n, nil
}

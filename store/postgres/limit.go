package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/tasker/store"
)

var _ store.Limiter = (*Store)(nil)

// unlockTimeout bounds the advisory unlock.
const unlockTimeout = 5 * time.Second

// LockLimit implements store.Limiter with a session advisory lock on a connection of its own, held
// until unlock. The claim made under it runs on that same connection (LimitHold.Within: the claim
// paths take the connection from the context), so the server ends the lock only after the
// claim's transaction: at the unlock, which follows the commit, or, when the process dies, at the
// end of the session, which the server reaches only once it has run (or aborted) what the
// process had sent. On a connection of its own the claim could commit after a dead process's
// lock had gone, and a second engine's count then missed it (TestChaosGlobalLimit caught 7 in
// progress under a limit of 6). The lock and the count are pipelined: one round trip; the
// count, a statement of its own, reads a snapshot taken once the lock is held.
func (s *Store) LockLimit(ctx context.Context, p store.LockLimitParams) (*store.LimitHold, error) {
	counts := make([]store.LimitCounts, len(p.Scopes))
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("lock limit %q: %w", p.Key, err)
	}
	lockKey := "tasker.limit:" + s.schema + ":" + p.Key
	b := &pgx.Batch{}
	b.Queue(`BEGIN ISOLATION LEVEL READ COMMITTED`) // each count's snapshot follows the lock's wait
	b.Queue(`SELECT pg_advisory_lock(hashtextextended($1, 0))`, lockKey)
	for i, sc := range p.Scopes {
		c := &counts[i]
		b.Queue(s.q(scopedInProgressSQL), p.Namespace, sc.Template, sc.ContextKey, sc.Task).
			QueryRow(func(row pgx.Row) error { return row.Scan(&c.InProgress) })
		if sc.Window > 0 {
			b.Queue(s.q(startedSQL), p.Namespace, sc.Template, sc.ContextKey, sc.Task, sc.Window.Microseconds()).
				QueryRow(func(row pgx.Row) error { return row.Scan(&c.Started) })
		}
	}
	b.Queue(`COMMIT`)
	unlock := func() {
		ctx, cancel := context.WithTimeout(context.Background(), unlockTimeout)
		defer cancel()
		var held bool
		if err := conn.QueryRow(ctx, `SELECT pg_advisory_unlock(hashtextextended($1, 0))`, lockKey).Scan(&held); err != nil || !held {
			// The session may still hold the lock (or, behind a transaction-mode pooler, which
			// session limits need not to be, another server session does): close it rather than
			// hand it back to the pool.
			_ = conn.Conn().Close(ctx)
		}
		conn.Release()
	}
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		unlock() // the lock may have been taken before a count failed
		return nil, fmt.Errorf("lock limit %q: %w", p.Key, err)
	}
	within := func(ctx context.Context) context.Context { return context.WithValue(ctx, limitConnKey{}, conn) }
	return &store.LimitHold{Counts: counts, Within: within, Unlock: unlock}, nil
}

// limitConnKey keys, in a claim's context, the connection that holds the limit lock the claim is
// made under (LockLimit).
type limitConnKey struct{}

// limitConn is the limit lock's connection in ctx, or nil.
func limitConn(ctx context.Context) *pgxpool.Conn {
	c, _ := ctx.Value(limitConnKey{}).(*pgxpool.Conn)
	return c
}

// scopeSQL narrows a count of namespace $1's steps to a store.LimitScope: $2 a template (empty:
// any), $3 a context key (empty: none) whose value at task $4 the counted tasks share (the tasks
// lacking the key share NULL).
const scopeSQL = `
		   AND ($2 = '' OR t.name = $2)
		   AND ($3 = '' OR t.context->>$3 IS NOT DISTINCT FROM (SELECT k.context->>$3 FROM {s}.tasks k WHERE k.task_id = $4))`

// startedSQL counts the steps of namespace $1 whose latest attempt started within the last $5
// µs, by the clock (the pipeline's now() is from before the lock's wait), in a scope
// (scopeSQL). No index serves started_at yet (a migration would add one): it reads the
// namespace's steps.
const startedSQL = `
		SELECT count(*) FROM {s}.steps st JOIN {s}.tasks t ON t.task_id = st.task_id
		 WHERE st.started_at > clock_timestamp() - $5 * interval '1 microsecond' AND t.namespace = $1` + scopeSQL

// inProgressSQL counts the in_progress steps of namespace $1, through steps_lease_idx, which
// holds the in-progress steps.
const inProgressSQL = `
		SELECT count(*) FROM {s}.steps st JOIN {s}.tasks t ON t.task_id = st.task_id
		 WHERE st.state = 'in_progress' AND t.namespace = $1`

// scopedInProgressSQL is inProgressSQL in a scope (scopeSQL).
const scopedInProgressSQL = inProgressSQL + scopeSQL

// InProgress implements store.Limiter.
func (s *Store) InProgress(ctx context.Context, namespace string) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, s.q(inProgressSQL), namespace).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count the steps in progress of %q: %w", namespace, err)
	}
	return n, nil
}

package store

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// Inspector is the read-only views that operators' tools need from a store: whether it answers
// (Engine.Health), who leads the maintenance services (Engine.Health), and a task's edges (the
// pictures of a task's DAG).
type Inspector interface {
	// Ping checks that the store answers, in one round trip for a database; it returns the
	// error that kept it from answering.
	Ping(ctx context.Context) error
	// Leader returns the holder of the named leadership (see TryLead); ok is false when nobody
	// holds it, or its lease has expired.
	Leader(ctx context.Context, name string) (l Leader, ok bool, err error)
	// Edges returns the dependencies between a task's steps, ordered by parent then child ID
	// (UUIDv7s, so by creation); none for a task that does not exist.
	Edges(ctx context.Context, taskID uuid.UUID) ([]Edge, error)
}

// Leader is the holder of a named leadership.
type Leader struct {
	Name     string
	LeaderID string
	// ElectedAt is when LeaderID took the leadership (renewals keep it); ExpiresAt is when its
	// lease ends unless renewed.
	ElectedAt, ExpiresAt time.Time
}

// Edge is one dependency of a task's DAG: To runs after From.
type Edge struct {
	From, To uuid.UUID
}

// PoolReporter is implemented by stores that run on a connection pool (store/postgres), so that
// Engine.Health can report it.
type PoolReporter interface {
	PoolStats() PoolStats
}

// PoolStats is a snapshot of a connection pool.
type PoolStats struct {
	// MaxConns is the pool's size limit; TotalConns the connections open or being opened, of
	// which AcquiredConns are in use, IdleConns idle and ConstructingConns being opened.
	MaxConns, TotalConns, AcquiredConns, IdleConns, ConstructingConns int
	// AcquireCount counts the acquisitions since the pool opened; EmptyAcquireCount those that
	// had to wait for a connection (the pool had none idle); CanceledAcquireCount those whose
	// context ended while waiting.
	AcquireCount, EmptyAcquireCount, CanceledAcquireCount int64
	// AcquireDuration is the total time spent acquiring.
	AcquireDuration time.Duration
}

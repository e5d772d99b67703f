package store

import (
	"context"
	"time"
)

// Limiter is implemented by stores that hold global concurrency limits, across every engine on
// one database: the engine takes a limit's lock, counts the steps in progress under it and claims
// at most what the limit leaves, then lets the lock go once the claim has committed, so that two
// engines never both see the same free slot.
type Limiter interface {
	// LockLimit waits for the lock of p.Key, then counts the steps of p.Namespace's tasks as of
	// then, and returns the counts and the lock's unlock, which must be called once (after the
	// claim has committed or failed).
	LockLimit(ctx context.Context, p LockLimitParams) (unlock func(), counts LimitCounts, err error)
	// InProgress counts the in_progress steps of the tasks of a namespace.
	InProgress(ctx context.Context, namespace string) (int, error)
}

// LockLimitParams names a limit's lock and what to count under it.
type LockLimitParams struct {
	Key       string
	Namespace string
	// Window, when positive, asks for LimitCounts.Started: the steps whose latest attempt started
	// within the last Window (a rate limit's sliding window).
	Window time.Duration
}

// LimitCounts are what a limit's lock counted.
type LimitCounts struct {
	InProgress int
	Started    int
}

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
	// then, and returns the counts and the held lock. The claim made under the lock runs with
	// the context LimitHold.Within gives it, and LimitHold.Unlock is called once after that
	// claim has committed or failed.
	LockLimit(ctx context.Context, p LockLimitParams) (*LimitHold, error)
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

// LimitHold is a held limit lock (Limiter.LockLimit).
type LimitHold struct {
	Counts LimitCounts
	// Within returns the context for the claim made under the lock. A store may tie that claim
	// to the lock through it (store/postgres runs it on the lock's own connection), so that the
	// lock cannot end before the claim's commit, even when the process holding both dies
	// between them.
	Within func(context.Context) context.Context
	// Unlock lets the lock go; call it once, after the claim.
	Unlock func()
}

// LimitCounts are what a limit's lock counted.
type LimitCounts struct {
	InProgress int
	Started    int
}

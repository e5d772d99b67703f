package store

import "context"

// Limiter is implemented by stores that hold global concurrency limits, across every engine on
// one database: the engine takes a limit's lock, counts the steps in progress under it and claims
// at most what the limit leaves, then lets the lock go once the claim has committed, so that two
// engines never both see the same free slot.
type Limiter interface {
	// LockLimit waits for the lock of the limit key, then counts the in_progress steps of the
	// tasks of namespace as of then, and returns the count and the lock's unlock, which must be
	// called once (after the claim has committed or failed).
	LockLimit(ctx context.Context, key, namespace string) (unlock func(), inProgress int, err error)
	// InProgress counts the in_progress steps of the tasks of a namespace.
	InProgress(ctx context.Context, namespace string) (int, error)
}

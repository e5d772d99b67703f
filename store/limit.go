package store

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// Limiter is implemented by stores that hold global concurrency and rate limits, across every
// engine on one database: the engine takes a limit's lock, counts the steps under it and claims
// at most what the limits leave, then lets the lock go once the claim has committed, so that two
// engines never both see the same free slot.
type Limiter interface {
	// LockLimit waits for the lock of p.Key, then counts, as of then, the steps of each of
	// p.Scopes, and returns the counts (one per scope, in order) and the held lock. The claim
	// made under the lock runs with the context LimitHold.Within gives it, and LimitHold.Unlock
	// is called once after that claim has committed or failed.
	LockLimit(ctx context.Context, p LockLimitParams) (*LimitHold, error)
	// InProgress counts the in_progress steps of the tasks of a namespace.
	InProgress(ctx context.Context, namespace string) (int, error)
}

// LockLimitParams names a limit's lock and what to count under it.
type LockLimitParams struct {
	Key       string
	Namespace string
	// Scopes are the groups of the namespace's steps to count; LimitHold.Counts has one entry
	// per scope.
	Scopes []LimitScope
}

// LimitScope is a group of a namespace's steps that a limit holds for: all of them (the zero
// LimitScope), those of one template, or those of the tasks that share a value of a field of
// their context.
type LimitScope struct {
	// Template, when set, narrows the group to the tasks of that template (tasks.name).
	Template string
	// ContextKey, when set, narrows the group to the tasks whose context has the same value at
	// that top-level field as task Task (compared as text, as PostgreSQL's ->> gives it); the
	// tasks whose context lacks the field form one group of their own.
	ContextKey string
	// Task is, with ContextKey, the task whose value names the group.
	Task uuid.UUID
	// Window, when positive, asks for LimitCounts.Started: the steps whose latest attempt
	// started within the last Window (a rate limit's sliding window).
	Window time.Duration
}

// LimitHold is a held limit lock (Limiter.LockLimit).
type LimitHold struct {
	// Counts are what the lock counted, one per LockLimitParams.Scopes entry.
	Counts []LimitCounts
	// Within returns the context for the claim made under the lock. A store may tie that claim
	// to the lock through it (store/postgres runs it on the lock's own connection), so that the
	// lock cannot end before the claim's commit, even when the process holding both dies
	// between them.
	Within func(context.Context) context.Context
	// Unlock lets the lock go; call it once, after the claim.
	Unlock func()
}

// LimitCounts are what a limit's lock counted for one scope.
type LimitCounts struct {
	InProgress int
	Started    int
}

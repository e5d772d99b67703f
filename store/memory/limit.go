package memory

import (
	"context"
	"fmt"
	"sync"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

var _ store.Limiter = (*Store)(nil)

// limitLock is the lock of a limit key: a buffered channel, so that a wait honours its context.
// The store's engines share it.
func (s *Store) limitLock(key string) chan struct{} {
	ch, _ := s.limits.LoadOrStore(key, make(chan struct{}, 1))
	return ch.(chan struct{})
}

// LockLimit implements store.Limiter.
func (s *Store) LockLimit(ctx context.Context, p store.LockLimitParams) (*store.LimitHold, error) {
	var counts store.LimitCounts
	ch := s.limitLock(p.Key)
	select {
	case ch <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("lock limit %q: %w", p.Key, ctx.Err())
	}
	unlock := sync.OnceFunc(func() { <-ch })
	err := s.read(ctx, func() error {
		since := s.clock().Add(-p.Window)
		for _, st := range s.steps {
			if st.task.t.Namespace != p.Namespace {
				continue
			}
			if st.s.State == statemachine.StepInProgress {
				counts.InProgress++
			}
			if p.Window > 0 && st.s.StartedAt != nil && st.s.StartedAt.After(since) {
				counts.Started++
			}
		}
		return nil
	})
	if err != nil {
		unlock()
		return nil, err
	}
	// A process holds the lock and its claims together: nothing to tie.
	return &store.LimitHold{Counts: counts, Unlock: unlock, Within: func(ctx context.Context) context.Context { return ctx }}, nil
}

// InProgress implements store.Limiter.
func (s *Store) InProgress(ctx context.Context, namespace string) (int, error) {
	n := 0
	err := s.read(ctx, func() error {
		for _, st := range s.steps {
			if st.s.State == statemachine.StepInProgress && st.task.t.Namespace == namespace {
				n++
			}
		}
		return nil
	})
	return n, err
}

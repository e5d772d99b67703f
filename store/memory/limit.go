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
func (s *Store) LockLimit(ctx context.Context, key, namespace string) (func(), int, error) {
	ch := s.limitLock(key)
	select {
	case ch <- struct{}{}:
	case <-ctx.Done():
		return nil, 0, fmt.Errorf("lock limit %q: %w", key, ctx.Err())
	}
	unlock := sync.OnceFunc(func() { <-ch })
	n, err := s.InProgress(ctx, namespace)
	if err != nil {
		unlock()
		return nil, 0, err
	}
	return unlock, n, nil
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

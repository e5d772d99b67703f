package memory

import (
	"context"
	"encoding/json"
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
	counts := make([]store.LimitCounts, len(p.Scopes))
	ch := s.limitLock(p.Key)
	select {
	case ch <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("lock limit %q: %w", p.Key, ctx.Err())
	}
	unlock := sync.OnceFunc(func() { <-ch })
	err := s.read(ctx, func() error {
		now := s.clock()
		for i, sc := range p.Scopes {
			var want string
			var has bool
			if sc.ContextKey != "" {
				if t, ok := s.tasks[sc.Task]; ok {
					want, has = contextText(t.t.Context, sc.ContextKey)
				}
			}
			keys := map[*taskRow]bool{} // whether a task is in the scope's group
			in := func(t *taskRow) bool {
				if t.t.Namespace != p.Namespace || (sc.Template != "" && t.t.Name != sc.Template) {
					return false
				}
				if sc.ContextKey == "" {
					return true
				}
				ok, seen := keys[t]
				if !seen {
					v, h := contextText(t.t.Context, sc.ContextKey)
					ok = h == has && v == want
					keys[t] = ok
				}
				return ok
			}
			since := now.Add(-sc.Window)
			for _, st := range s.steps {
				inProgress := st.s.State == statemachine.StepInProgress
				started := sc.Window > 0 && st.s.StartedAt != nil && st.s.StartedAt.After(since)
				if (!inProgress && !started) || !in(st.task) {
					continue
				}
				if inProgress {
					counts[i].InProgress++
				}
				if started {
					counts[i].Started++
				}
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

// contextText is the value of a top-level field of a task's context as PostgreSQL's ->> gives
// it: a string unquoted, any other value as its JSON text; false when the field is missing or
// null.
func contextText(ctx json.RawMessage, key string) (string, bool) {
	var fields map[string]json.RawMessage
	if json.Unmarshal(ctx, &fields) != nil {
		return "", false
	}
	v, ok := fields[key]
	if !ok || string(v) == "null" {
		return "", false
	}
	var str string
	if json.Unmarshal(v, &str) == nil {
		return str, true
	}
	return string(v), true // stored as jsonb gives it back (jsonb.go): the text ->> gives
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

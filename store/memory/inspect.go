package memory

import (
	"bytes"
	"cmp"
	"context"
	"slices"

	"github.com/google/uuid"

	"github.com/tasker-systems/tasker/store"
)

// Ping answers at once, unless ctx has ended: the memory store is always there.
func (s *Store) Ping(ctx context.Context) error { return s.read(ctx, func() error { return nil }) }

// Leader returns the holder of the named leadership whose lease has not expired.
func (s *Store) Leader(ctx context.Context, name string) (store.Leader, bool, error) {
	var (
		l  store.Leader
		ok bool
	)
	err := s.read(ctx, func() error {
		row, found := s.leaders[name]
		if found && !row.expiresAt.Before(s.live(s.clock())) {
			l, ok = store.Leader{Name: name, LeaderID: row.leaderID, ElectedAt: row.electedAt, ExpiresAt: row.expiresAt}, true
		}
		return nil
	})
	return l, ok, err
}

// Edges returns the dependencies between a task's steps, by parent then child ID.
func (s *Store) Edges(ctx context.Context, taskID uuid.UUID) ([]store.Edge, error) {
	var out []store.Edge
	err := s.read(ctx, func() error {
		t, ok := s.tasks[taskID]
		if !ok {
			return nil
		}
		for _, st := range t.steps {
			for _, p := range st.parents {
				out = append(out, store.Edge{From: p.s.ID, To: st.s.ID})
			}
		}
		return nil
	})
	slices.SortFunc(out, func(a, b store.Edge) int {
		return cmp.Or(bytes.Compare(a.From[:], b.From[:]), bytes.Compare(a.To[:], b.To[:]))
	})
	return out, err
}

package memory

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

// TryLead takes the named leadership when it is free or expired, or renews it for its holder; it
// reports whether p.LeaderID holds it afterwards.
func (s *Store) TryLead(ctx context.Context, p store.LeadParams) (bool, error) {
	var leading bool
	err := s.write(ctx, func(tx *txn) error {
		expires := tx.live.Add(millis(p.TTL))
		l, ok := s.leaders[p.Name]
		switch {
		case !ok:
			s.leaders[p.Name] = &leaderRow{leaderID: p.LeaderID, electedAt: tx.live, expiresAt: expires}
		case l.leaderID == p.LeaderID:
			l.expiresAt = expires
		case l.expiresAt.Before(tx.live):
			*l = leaderRow{leaderID: p.LeaderID, electedAt: tx.live, expiresAt: expires}
		default:
			return nil
		}
		leading = true
		return nil
	})
	return leading, err
}

// Resign frees the leadership at once if p.LeaderID holds it, so that another engine takes over
// without waiting for the lease to expire.
func (s *Store) Resign(ctx context.Context, p store.LeadParams) error {
	return s.write(ctx, func(*txn) error {
		if l, ok := s.leaders[p.Name]; ok && l.leaderID == p.LeaderID {
			delete(s.leaders, p.Name)
		}
		return nil
	})
}

// ExpiredSteps lists in-progress steps whose lease has expired, oldest first; Limit defaults to
// 100.
func (s *Store) ExpiredSteps(ctx context.Context, p store.ExpiredStepsParams) ([]store.ExpiredStep, error) {
	limit := p.Limit
	if limit <= 0 {
		limit = 100
	}
	var out []store.ExpiredStep
	err := s.read(ctx, func() error {
		now := s.live(s.clock())
		var expired []*stepRow
		for _, st := range s.inProgress {
			if st.s.State == statemachine.StepInProgress && st.s.LeaseExpiresAt != nil && st.s.LeaseExpiresAt.Before(now) {
				expired = append(expired, st)
			}
		}
		slices.SortFunc(expired, func(a, b *stepRow) int {
			if c := a.s.LeaseExpiresAt.Compare(*b.s.LeaseExpiresAt); c != 0 {
				return c
			}
			return bytes.Compare(a.s.ID[:], b.s.ID[:])
		})
		for _, st := range expired[:min(limit, len(expired))] {
			t := &st.task.t
			out = append(out, store.ExpiredStep{Step: cloneStep(&st.s), Namespace: t.Namespace, TaskName: t.Name, Version: t.Version, TraceParent: t.TraceParent})
		}
		return nil
	})
	return out, err
}

// StaleSteps lists steps enqueued, or due for their retry, since longer than p.OlderThan (oldest
// first; Limit defaults to 500), and touches them so that the next sweep within OlderThan skips
// them.
func (s *Store) StaleSteps(ctx context.Context, p store.StaleStepsParams) ([]store.StaleStep, error) {
	limit := p.Limit
	if limit <= 0 {
		limit = 500
	}
	var out []store.StaleStep
	err := s.write(ctx, func(tx *txn) error {
		cutoff := tx.now.Add(-millis(p.OlderThan))
		var stale []*stepRow
		for _, st := range s.steps {
			switch {
			case !st.s.UpdatedAt.Before(cutoff):
			case st.s.State == statemachine.StepEnqueued,
				st.s.State == statemachine.StepWaitingForRetry && st.s.NextRetryAt != nil && st.s.NextRetryAt.Before(tx.now):
				stale = append(stale, st)
			}
		}
		slices.SortFunc(stale, func(a, b *stepRow) int {
			if c := a.s.UpdatedAt.Compare(b.s.UpdatedAt); c != 0 {
				return c
			}
			return bytes.Compare(a.s.ID[:], b.s.ID[:])
		})
		for _, st := range stale[:min(limit, len(stale))] {
			set(tx, &st.s.UpdatedAt, tx.now)
			t := &st.task.t
			out = append(out, store.StaleStep{Namespace: t.Namespace, Ref: store.StepRef{TaskID: t.ID, StepID: st.s.ID,
				TaskName: t.Name, Version: t.Version, Name: st.s.TemplateStep, Handler: st.s.Handler, Retry: st.s.State == statemachine.StepWaitingForRetry}})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("stale steps: %w", err)
	}
	return out, nil
}

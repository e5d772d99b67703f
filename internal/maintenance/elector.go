// Package maintenance runs the engine's periodic services — lease rescue and the like — in
// exactly one engine at a time, chosen by a leader election in the database.
package maintenance

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	"github.com/tasker-systems/tasker/store"
)

// LeaderStore is what the elector needs from the store.
type LeaderStore interface {
	TryLead(ctx context.Context, p store.LeadParams) (bool, error)
	Resign(ctx context.Context, p store.LeadParams) error
}

// Elector campaigns for a named leadership. Every candidate tries every TTL/3; the holder renews
// its lease, and when it dies another candidate takes over within a TTL.
type Elector struct {
	Store LeaderStore
	Name  string
	ID    string
	TTL   time.Duration
	Log   logr.Logger
}

// Run campaigns until ctx ends. While this candidate leads, lead runs with a context that ends
// when the leadership is lost or ctx ends; Run waits for it before returning, and resigns so
// that another engine takes over at once.
//
// The leadership is held for TTL from the moment a renewal was sent, as the store counts it from
// when it ran the renewal. So a leader whose renewals stall (a slow or vanished database, a
// starved process) ends its term locally, a tenth of the TTL before the store's lease can expire,
// even while a renewal is still waiting for its answer: another candidate can take over only
// after that, and two leaders never act at once.
func (e *Elector) Run(ctx context.Context, lead func(ctx context.Context)) {
	params := store.LeadParams{Name: e.Name, LeaderID: e.ID, TTL: e.TTL}
	margin := e.TTL / 10
	var (
		wg    sync.WaitGroup
		term  *term
		timer *time.Timer
	)
	stop := func() {
		if term != nil {
			timer.Stop()
			term.cancel()
			wg.Wait()
			term = nil
		}
	}
	defer func() {
		wasLeader := term != nil && !term.lapsed.Load()
		stop()
		if wasLeader {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := e.Store.Resign(rctx, params); err != nil {
				e.Log.Error(err, "resign leadership", "name", e.Name)
			}
		}
	}()
	ticker := time.NewTicker(e.TTL / 3)
	defer ticker.Stop()
	for {
		if term != nil && term.lapsed.Load() {
			// The term ran out before a renewal came back: it is over, whatever the next answer.
			e.Log.Info("leadership lapsed: no renewal within its lease", "name", e.Name, "id", e.ID)
			stop()
		}
		sent := time.Now()
		leading, err := e.Store.TryLead(ctx, params)
		if err != nil && ctx.Err() == nil {
			e.Log.Error(err, "leader election", "name", e.Name)
		}
		switch {
		case leading && term == nil:
			if left := time.Until(sent.Add(e.TTL - margin)); left > 0 {
				e.Log.Info("elected leader", "name", e.Name, "id", e.ID)
				term = startTerm(ctx, &wg, lead)
				timer = time.AfterFunc(left, term.lapse)
			}
		case leading:
			if left := time.Until(sent.Add(e.TTL - margin)); left > 0 {
				timer.Reset(left)
			}
		case !leading && term != nil:
			// Lost it (or could not renew it in time): stop before someone else starts.
			e.Log.Info("lost leadership", "name", e.Name, "id", e.ID)
			stop()
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// term is one leadership term: cancel ends the context lead runs with. lapsed is set when the term
// ran out without a renewal (its lease may be another's by now), as opposed to ending with Run's
// context, after which the leadership is still this candidate's to resign.
type term struct {
	cancel context.CancelFunc
	lapsed atomic.Bool
}

// lapse ends the term for want of a renewal.
func (t *term) lapse() {
	t.lapsed.Store(true)
	t.cancel()
}

// startTerm runs lead in a goroutine tracked by wg, with a context the returned term's cancel ends.
func startTerm(ctx context.Context, wg *sync.WaitGroup, lead func(ctx context.Context)) *term {
	lctx, cancel := context.WithCancel(ctx)
	wg.Add(1)
	go func() {
		defer wg.Done()
		lead(lctx)
	}()
	return &term{cancel: cancel}
}

// Every runs fn at once and then every interval until ctx ends.
func Every(ctx context.Context, interval time.Duration, fn func(ctx context.Context)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		fn(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

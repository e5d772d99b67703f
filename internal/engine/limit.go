package engine

import (
	"context"
	"errors"
	"time"

	"github.com/tasker-systems/tasker/queue"
	"github.com/tasker-systems/tasker/store"
)

// Global limits (Config.GlobalConcurrency, Config.GlobalRate) hold across every engine on one
// store: a claim of a limited namespace takes the limit's lock in the store (store.Limiter),
// counts the namespace's steps in progress and those started within the rate's window, claims at
// most what the limits leave and lets the lock go once the claim has committed. Messages left over stay in the queue, visible, with no attempt spent,
// and the fetch loop tries again after limitBackoff. A limited namespace hands no released step
// straight over (ClaimNext), since that claim would bypass the lock.

// limitBackoff is how soon a claim held back by a global limit tries again.
const limitBackoff = 5 * time.Millisecond

// RateLimit allows at most N step starts in any window of Per.
type RateLimit struct {
	N   int
	Per time.Duration
}

// nsLimits are a namespace's global limits.
type nsLimits struct {
	concurrency int
	rate        RateLimit
	lim         store.Limiter
}

// globalLimit is ns's global limits; lim is nil when there are none (or the store cannot hold
// them).
func (e *Engine) globalLimit(ns string) nsLimits {
	l := nsLimits{concurrency: e.cfg.GlobalConcurrency[ns], rate: e.cfg.GlobalRate[ns]}
	lim, ok := e.store.(store.Limiter)
	if !ok || (l.concurrency <= 0 && (l.rate.N <= 0 || l.rate.Per <= 0)) {
		return nsLimits{}
	}
	l.lim = lim
	return l
}

// lock takes ns's limit lock and returns it with how many of n claims the limits leave now.
func (l nsLimits) lock(ctx context.Context, ns string, n int) (*store.LimitHold, int, error) {
	p := store.LockLimitParams{Key: "namespace:" + ns, Namespace: ns}
	if l.rate.N > 0 && l.rate.Per > 0 {
		p.Window = l.rate.Per
	}
	h, err := l.lim.LockLimit(ctx, p)
	if err != nil {
		return nil, 0, err
	}
	if l.concurrency > 0 {
		n = min(n, l.concurrency-h.Counts.InProgress)
	}
	if p.Window > 0 {
		n = min(n, l.rate.N-h.Counts.Started)
	}
	return h, max(n, 0), nil
}

// unlimited is limitGate's and limitOne's answer for a namespace without limits.
var unlimited = &store.LimitHold{Within: func(ctx context.Context) context.Context { return ctx }, Unlock: func() {}}

// limitGate takes ns's limit lock and returns how many of the n slots held may claim now, after
// giving back the others, and the lock: the claim runs with its Within context, and its Unlock
// is called once the claim has committed. With no limit it returns n and a no-op lock. When none
// may claim, it schedules the next try.
func (w *workers) limitGate(ctx context.Context, ns string, n int) (int, *store.LimitHold) {
	l := w.e.globalLimit(ns)
	if l.lim == nil {
		return n, unlimited
	}
	h, allowed, err := l.lock(ctx, ns, n)
	if err != nil {
		w.release(ns, n)
		if ctx.Err() == nil {
			w.e.log.Error(err, "take the global limit's lock and count the steps under it", "namespace", ns)
			w.wakeAfter(ns, time.Second)
		}
		return 0, unlimited
	}
	if allowed <= 0 {
		h.Unlock()
		w.release(ns, n)
		w.wakeAfter(ns, limitBackoff)
		return 0, unlimited
	}
	w.release(ns, n-allowed)
	return allowed, h
}

// limitOne is limitGate for the claim of one delivered message: when ns's limits leave no room,
// it puts the message back for limitBackoff (its step not claimed, no attempt spent) and reports
// false. The claim runs with the returned lock's Within context, and its Unlock follows it.
func (w *workers) limitOne(ns string, m queue.Message) (*store.LimitHold, bool) {
	l := w.e.globalLimit(ns)
	if l.lim == nil {
		return unlimited, true
	}
	later := func() {
		if err := w.e.queue.RetryLater(w.dbctx, ns, m.ID, limitBackoff); err != nil && !errors.Is(err, queue.ErrNotFound) {
			w.e.log.Error(err, "put back a message held by the global limit", "namespace", ns)
		}
		w.wakeAfter(ns, limitBackoff)
	}
	h, allowed, err := l.lock(w.dbctx, ns, 1)
	if err != nil {
		w.e.log.Error(err, "take the global limit's lock and count the steps under it", "namespace", ns)
		later()
		return nil, false
	}
	if allowed <= 0 {
		h.Unlock()
		later()
		return nil, false
	}
	return h, true
}

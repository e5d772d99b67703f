package engine

import (
	"context"
	"errors"
	"time"

	"github.com/tasker-systems/tasker/queue"
	"github.com/tasker-systems/tasker/store"
)

// Global concurrency limits (Config.GlobalConcurrency) hold across every engine on one store: a
// claim of a limited namespace takes the limit's lock in the store (store.Limiter), counts the
// namespace's steps in progress, claims at most what the limit leaves and lets the lock go once
// the claim has committed. Messages left over stay in the queue, visible, with no attempt spent,
// and the fetch loop tries again after limitBackoff. A limited namespace hands no released step
// straight over (ClaimNext), since that claim would bypass the lock.

// limitBackoff is how soon a claim held back by a global limit tries again.
const limitBackoff = 5 * time.Millisecond

// globalLimit is ns's global concurrency limit, 0 for none (or a store that cannot hold one).
func (e *Engine) globalLimit(ns string) (int, store.Limiter) {
	n := e.cfg.GlobalConcurrency[ns]
	lim, ok := e.store.(store.Limiter)
	if n <= 0 || !ok {
		return 0, nil
	}
	return n, lim
}

// limitGate takes ns's limit lock and returns how many of the n slots held may claim now, after
// giving back the others, and the unlock to call once the claim has committed. With no limit it
// returns n and a no-op. When none may claim, it schedules the next try.
func (w *workers) limitGate(ctx context.Context, ns string, n int) (int, func()) {
	limit, lim := w.e.globalLimit(ns)
	if lim == nil {
		return n, func() {}
	}
	unlock, busy, err := lim.LockLimit(ctx, "namespace:"+ns, ns)
	if err != nil {
		w.release(ns, n)
		if ctx.Err() == nil {
			w.e.log.Error(err, "take the global limit's lock and count the steps in progress", "namespace", ns)
			w.wakeAfter(ns, time.Second)
		}
		return 0, func() {}
	}
	allowed := min(n, limit-busy)
	if allowed <= 0 {
		unlock()
		w.release(ns, n)
		w.wakeAfter(ns, limitBackoff)
		return 0, func() {}
	}
	w.release(ns, n-allowed)
	return allowed, unlock
}

// limitOne is limitGate for the claim of one delivered message: when ns's limit leaves no room, it
// puts the message back for limitBackoff (its step not claimed, no attempt spent) and reports
// false.
func (w *workers) limitOne(ns string, m queue.Message) (func(), bool) {
	limit, lim := w.e.globalLimit(ns)
	if lim == nil {
		return func() {}, true
	}
	later := func() {
		if err := w.e.queue.RetryLater(w.dbctx, ns, m.ID, limitBackoff); err != nil && !errors.Is(err, queue.ErrNotFound) {
			w.e.log.Error(err, "put back a message held by the global limit", "namespace", ns)
		}
		w.wakeAfter(ns, limitBackoff)
	}
	unlock, busy, err := lim.LockLimit(w.dbctx, "namespace:"+ns, ns)
	if err != nil {
		w.e.log.Error(err, "take the global limit's lock and count the steps in progress", "namespace", ns)
		later()
		return nil, false
	}
	if busy >= limit {
		unlock()
		later()
		return nil, false
	}
	return unlock, true
}

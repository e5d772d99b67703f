package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-systems/tasker/queue"
	"github.com/tasker-systems/tasker/store"
)

// Global limits (Config.Limits) hold across every engine on one store. A claim of a limited
// namespace takes the namespace's limit lock in the store (store.Limiter), counts the steps in
// progress and those started within a rate's window in every scope that applies, claims at most
// what the limits leave and lets the lock go once the claim has committed.
//
// A namespace whose limits are all namespace-wide claims in batches (ClaimFromQueue), as many
// steps as they leave; the messages left over stay in the queue, visible, with no attempt spent,
// and the fetch loop tries again after limitBackoff. A namespace with a limit per template or per
// context key claims its steps one at a time (limitOne), since each step's scopes differ: a step
// over a limit has its message put back for limitBackoff, its attempt not spent. A limited
// namespace hands no released step straight over (ClaimNext), since that claim would bypass the
// lock.

// limitBackoff is how soon a claim held back by a global limit tries again.
const limitBackoff = 5 * time.Millisecond

// RateLimit allows at most N step starts in any window of Per.
type RateLimit struct {
	N   int
	Per time.Duration
}

// on reports whether r limits anything.
func (r RateLimit) on() bool { return r.N > 0 && r.Per > 0 }

// Limit is a global concurrency or rate limit (or both) on the steps of a namespace, of one of
// its templates (Template), and of each value of a field of their tasks' context (ContextKey).
type Limit struct {
	Namespace   string
	Template    string
	ContextKey  string
	Concurrency int
	Rate        RateLimit
}

// on reports whether l limits anything.
func (l Limit) on() bool { return l.Concurrency > 0 || l.Rate.on() }

// nsLimits are a namespace's global limits.
type nsLimits struct {
	rules []Limit
	// fine: a rule per template or per context key, so that the namespace claims one step at a
	// time.
	fine bool
	lim  store.Limiter
	// gate lets one claim of this engine at a time wait for the namespace's lock in the store, so
	// that waiting claims never hold more than one of the pool's connections: on PostgreSQL a
	// wait holds one, and a pool full of waiters left the lock's holder none for what it does
	// next.
	gate chan struct{}
}

// limitsByNamespace groups the limits that limit anything by namespace; none when the store
// cannot hold them.
func limitsByNamespace(limits []Limit, st store.Store) map[string]nsLimits {
	lim, ok := st.(store.Limiter)
	if !ok {
		return nil
	}
	out := map[string]nsLimits{}
	for _, l := range limits {
		if !l.on() {
			continue
		}
		n := out[l.Namespace]
		n.rules, n.lim = append(n.rules, l), lim
		if n.gate == nil {
			n.gate = make(chan struct{}, 1)
		}
		n.fine = n.fine || l.Template != "" || l.ContextKey != ""
		out[l.Namespace] = n
	}
	return out
}

// byTemplate reports whether a rule is per template.
func (l nsLimits) byTemplate() bool {
	for _, r := range l.rules {
		if r.Template != "" {
			return true
		}
	}
	return false
}

// globalLimit is ns's global limits; lim is nil when there are none (or the store cannot hold
// them).
func (e *Engine) globalLimit(ns string) nsLimits { return e.limits[ns] }

// lock takes ns's limit lock and returns it with how many of n claims the limits leave now for
// steps of template name of task (both unused when no rule is per template or context key).
func (l nsLimits) lock(ctx context.Context, ns string, n int, name string, task uuid.UUID) (*store.LimitHold, int, error) {
	p := store.LockLimitParams{Key: "namespace:" + ns, Namespace: ns}
	var rules []Limit
	for _, r := range l.rules {
		if r.Template != "" && r.Template != name {
			continue
		}
		sc := store.LimitScope{Template: r.Template, ContextKey: r.ContextKey}
		if r.ContextKey != "" {
			sc.Task = task
		}
		if r.Rate.on() {
			sc.Window = r.Rate.Per
		}
		p.Scopes = append(p.Scopes, sc)
		rules = append(rules, r)
	}
	if len(rules) == 0 {
		return unlimited, n, nil
	}
	select {
	case l.gate <- struct{}{}:
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
	h, err := l.lim.LockLimit(ctx, p)
	if err != nil {
		<-l.gate
		return nil, 0, err
	}
	unlock := h.Unlock
	h.Unlock = sync.OnceFunc(func() {
		unlock()
		<-l.gate
	})
	for i, r := range rules {
		c := h.Counts[i]
		if r.Concurrency > 0 {
			n = min(n, r.Concurrency-c.InProgress)
		}
		if r.Rate.on() {
			n = min(n, r.Rate.N-c.Started)
		}
	}
	return h, max(n, 0), nil
}

// unlimited is limitGate's and limitOne's answer for a namespace without limits.
var unlimited = &store.LimitHold{Within: func(ctx context.Context) context.Context { return ctx }, Unlock: func() {}}

// limitGate takes ns's limit lock and returns how many of the n slots held may claim now, after
// giving back the others, and the lock: the claim runs with its Within context, and its Unlock
// is called once the claim has committed. With no limit it returns n and a no-op lock. When none
// may claim, it schedules the next try. It serves namespaces whose limits are all
// namespace-wide (limitOne serves the others).
func (w *workers) limitGate(ctx context.Context, ns string, n int) (int, *store.LimitHold) {
	l := w.e.globalLimit(ns)
	if l.lim == nil {
		return n, unlimited
	}
	h, allowed, err := l.lock(ctx, ns, n, "", uuid.Nil)
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

// limitStep takes ns's limit lock for the claim of one step of template name (read from the
// store when empty and a limit is per template) of task, and reports whether the limits that
// apply leave room for it. When they do, the claim runs with the lock's Within context and its
// Unlock follows the claim; when they do not, the lock is already let go.
func (e *Engine) limitStep(ctx context.Context, ns, name string, task uuid.UUID) (*store.LimitHold, bool, error) {
	l := e.globalLimit(ns)
	if l.lim == nil {
		return unlimited, true, nil
	}
	if name == "" && l.byTemplate() {
		// A message that does not name its template (an older sender's): the task does.
		t, err := e.store.GetTask(ctx, task)
		if errors.Is(err, store.ErrNotFound) {
			// No such task, so no such step: the claim finds nothing and drops the message.
			return unlimited, true, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("read the task of a step under a global limit per template: %w", err)
		}
		name = t.Name
	}
	h, allowed, err := l.lock(ctx, ns, 1, name, task)
	if err != nil {
		return nil, false, fmt.Errorf("take the global limit's lock and count the steps under it: %w", err)
	}
	if allowed <= 0 {
		h.Unlock()
		return nil, false, nil
	}
	return h, true, nil
}

// limitOne is limitStep for the claim of one delivered message, of a step of template name of
// task: when the limits that apply leave no room, it puts the message back for limitBackoff (its
// step not claimed, no attempt spent) and reports false. The claim runs with the returned lock's
// Within context, and its Unlock follows it.
func (w *workers) limitOne(ns string, m queue.Message, name string, task uuid.UUID) (*store.LimitHold, bool) {
	h, ok, err := w.e.limitStep(w.dbctx, ns, name, task)
	backoff := limitBackoff
	if err != nil {
		w.e.log.Error(err, "claim a step under a global limit", "namespace", ns, "task", task)
		backoff = time.Second // as limitGate does: a failing store is not asked again at once
	}
	if !ok {
		if err := w.e.queue.RetryLater(w.dbctx, ns, m.ID, backoff); err != nil && !errors.Is(err, queue.ErrNotFound) {
			w.e.log.Error(err, "put back a message held by the global limit", "namespace", ns)
		}
		w.wakeAfter(ns, backoff)
	}
	return h, ok
}

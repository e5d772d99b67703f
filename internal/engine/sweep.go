package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/tasker-systems/tasker/queue"
	"github.com/tasker-systems/tasker/store"
)

// sweep publishes again the messages of steps that waited enqueued for longer than
// Config.RepublishAfter: with a queue outside the database, a message can be lost between a
// commit and its publish (a crash, a broker outage). A duplicate is dropped at its claim. With a
// queue.ReadyCounter it holds back a namespace whose queue has messages waiting: the steps behind a
// backlog have their messages in it, and re-publishing them every RepublishAfter would only grow it.
func (w *workers) sweep(ctx context.Context) error {
	e := w.e
	pub, ok := e.queue.(queue.Publisher)
	if !ok {
		return nil
	}
	stale, err := e.store.StaleSteps(ctx, store.StaleStepsParams{OlderThan: e.cfg.RepublishAfter, Limit: 500})
	if err != nil {
		if ctx.Err() == nil {
			e.log.Error(err, "look for stale steps")
		}
		return fmt.Errorf("look for stale steps: %w", err)
	}
	var failed error
	// One publish per namespace; a namespace whose queue has a backlog is held back (see
	// queue.ReadyCounter): its steps come up again after another RepublishAfter.
	var order []string
	byNS := map[string][]store.StepRef{}
	for _, st := range stale {
		if _, ok := byNS[st.Namespace]; !ok {
			order = append(order, st.Namespace)
		}
		byNS[st.Namespace] = append(byNS[st.Namespace], st.Ref)
	}
	rc, counts := e.queue.(queue.ReadyCounter)
	for _, ns := range order {
		refs := byNS[ns]
		if counts {
			n, err := rc.ReadyCount(ctx, ns)
			if err == nil && n > 0 && w.holdBack(ns, n) {
				e.log.V(1).Info("holding back re-publishing while the queue has a backlog", "namespace", ns, "ready", n, "steps", len(refs))
				continue
			}
			if err != nil && ctx.Err() == nil {
				e.log.Error(err, "count the messages ready in the queue; re-publishing anyway", "namespace", ns)
			}
		}
		w.heldMu.Lock()
		delete(w.holds, ns)
		w.heldMu.Unlock()
		payloads, err := e.stepPayloads(ns, refs)
		if err == nil {
			err = pub.Publish(ctx, ns, payloads, 0)
		}
		if err != nil {
			if ctx.Err() == nil {
				e.log.Error(err, "re-publish step messages", "namespace", ns, "steps", len(refs))
				failed = fmt.Errorf("re-publish the messages of %d steps of namespace %s: %w", len(refs), ns, err)
			}
			continue
		}
		for _, ref := range refs {
			e.log.Info("re-published the message of a step that waited too long", "step", ref.StepID, "task", ref.TaskID)
		}
	}
	return failed
}

// hold is the sweeper's hold-back of one namespace: since when, and when it last found a backlog.
type hold struct{ since, seen time.Time }

// maxHoldBack bounds, in RepublishAfter periods, how long the sweeper holds back a namespace whose
// queue always has a backlog (a queue saturated for good), so that a lost message still goes out.
const maxHoldBack = 10

// holdBack reports whether the sweeper may hold back ns's re-publishing for its backlog: it may,
// unless it has done so for maxHoldBack RepublishAfter periods in a row.
//
// A hold not renewed for two RepublishAfter periods (the backlog drained, or no step went stale
// since) is over: the next backlog starts a new one.
func (w *workers) holdBack(ns string, ready int) bool {
	w.heldMu.Lock()
	defer w.heldMu.Unlock()
	now := time.Now()
	h, ok := w.holds[ns]
	if !ok || now.Sub(h.seen) > 2*w.e.cfg.RepublishAfter {
		w.holds[ns] = hold{since: now, seen: now}
		return true
	}
	w.holds[ns] = hold{since: h.since, seen: now}
	since := h.since
	if now.Sub(since) < maxHoldBack*w.e.cfg.RepublishAfter {
		return true
	}
	w.e.log.Info("the queue has had a backlog for too long; re-publishing anyway", "namespace", ns, "ready", ready,
		"since", since)
	return false
}

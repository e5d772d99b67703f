package engine

import (
	"context"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

// A child task (the root's Step.Child) carries a tag naming its parent step; when an outcome
// brings the child to rest, the engine wakes the parked parent at once (store.Signaler with
// WakeOnly), and the parent's handler reads the child. A wake-up lost (a crash right after the
// child's commit, a child ended by an operator or a cancellation) costs the parent its next poll.

// ParentTagPrefix starts the tag of a child task that names its parent: "tasker:parent=<task
// id>/<step name>".
const ParentTagPrefix = "tasker:parent="

// ParentTag is the tag of a child of step of task.
func ParentTag(task uuid.UUID, step string) string {
	return ParentTagPrefix + task.String() + "/" + step
}

// parentOf reads a child's parent from its tags.
func parentOf(tags []string) (uuid.UUID, string, bool) {
	for _, tag := range tags {
		rest, ok := strings.CutPrefix(tag, ParentTagPrefix)
		if !ok {
			continue
		}
		id, step, ok := strings.Cut(rest, "/")
		if !ok {
			continue
		}
		if tid, err := uuid.Parse(id); err == nil && step != "" {
			return tid, step, true
		}
	}
	return uuid.Nil, "", false
}

// wakeParent wakes the parent step of a child task that came to rest.
func (w *workers) wakeParent(task *store.Task) {
	parent, step, ok := parentOf(task.Tags)
	if !ok {
		return
	}
	sg, ok := w.e.store.(store.Signaler)
	if !ok {
		return
	}
	pt, err := w.e.store.GetTask(w.dbctx, parent)
	if err != nil {
		w.e.log.Error(err, "read the parent of a child task that ended; the parent finds it at its next poll", "task", task.ID, "parent", parent)
		return
	}
	// A parent whose handler still runs (it read the child before the child ended) is woken once
	// it has parked, for a lease at most.
	giveUp := time.Now().Add(w.e.cfg.Lease)
	for delay := time.Millisecond; ; delay = min(delay*2, 100*time.Millisecond) {
		enq := w.e.NewEnqueuer()
		res, err := sg.SignalStep(w.dbctx, store.SignalStepParams{TaskID: parent, Step: step, Namespace: pt.Namespace,
			Enqueuer: enq, WakeOnly: true})
		if err != nil {
			w.e.log.V(1).Info("could not wake the parent of a child task that ended", "task", task.ID, "parent", parent, "step", step, "error", err.Error())
			return
		}
		ctx, cancel := context.WithTimeout(w.dbctx, w.e.cfg.Lease)
		enq.Flush(ctx)
		cancel()
		if res.State != statemachine.StepInProgress || time.Now().After(giveUp) {
			return
		}
		select {
		case <-w.dbctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

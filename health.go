package tasker

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-systems/tasker/internal/engine"
	"github.com/tasker-systems/tasker/statemachine"
)

// Health is what an engine reports about the work it sees but cannot do. It is a snapshot; later
// versions add fields, so compare fields, not whole values.
type Health struct {
	// WaitingForHandler lists, by namespace and handler, the steps this engine declined because it
	// cannot run them (see WaitReason) and that still wait, enqueued, for an engine that can. An
	// engine lists only what it declined itself: in a fleet where another engine has the handler,
	// a step appears here until that engine takes it.
	WaitingForHandler []WaitingSteps
}

// WaitReason says why an engine declined a step.
type WaitReason string

const (
	// WaitNoHandler: no handler is registered here for the step's callable (Engine.Handle).
	WaitNoHandler WaitReason = engine.WaitNoHandler
	// WaitNoTemplate: the handler is registered here, but not the task's template version, which
	// the step's type needs (a decision or batchable step creates steps its template describes; a
	// batch worker's failure strategy is applied with its template).
	WaitNoTemplate WaitReason = engine.WaitNoTemplate
)

// WaitingSteps is one group of Health.WaitingForHandler.
type WaitingSteps struct {
	Namespace string
	// Callable is the handler the steps need (the template step's handler.callable).
	Callable string
	Reason   WaitReason
	// Steps is how many steps wait.
	Steps int
	// Since is when the oldest of them was enqueued, as far as this engine knows: the time its
	// message was sent, or the first decline when the queue does not say.
	Since time.Time
}

// Health reports the engine's health. It confirms against the store that each step it lists
// still waits (one read per task involved), and forgets those that moved on or that this engine
// can run by now (a handler registered since).
func (e *Engine) Health(ctx context.Context) (*Health, error) {
	steps := e.core.Waiting().Snapshot()
	byTask := map[uuid.UUID][]engine.WaitingStep{}
	for _, s := range steps {
		byTask[s.TaskID] = append(byTask[s.TaskID], s)
	}
	type key struct {
		ns, callable string
		reason       WaitReason
	}
	groups := map[key]*WaitingSteps{}
	var gone []uuid.UUID
	for taskID, ws := range byTask {
		current, err := e.store.GetSteps(ctx, taskID)
		if err != nil {
			return nil, fmt.Errorf("tasker: health: read the steps of task %s: %w", taskID, err)
		}
		state := make(map[uuid.UUID]StepState, len(current))
		for _, st := range current {
			state[st.ID] = st.State
		}
		for _, w := range ws {
			st, ok := state[w.StepID]
			if !ok || (st != statemachine.StepEnqueued && st != statemachine.StepWaitingForRetry) || e.canRunNow(w) {
				gone = append(gone, w.StepID)
				continue
			}
			k := key{w.NS, w.Callable, WaitReason(w.Reason)}
			g := groups[k]
			if g == nil {
				g = &WaitingSteps{Namespace: w.NS, Callable: w.Callable, Reason: WaitReason(w.Reason), Since: w.Since}
				groups[k] = g
			}
			g.Steps++
			if w.Since.Before(g.Since) {
				g.Since = w.Since
			}
		}
	}
	e.core.Waiting().Forget(gone)
	h := &Health{}
	for _, g := range groups {
		h.WaitingForHandler = append(h.WaitingForHandler, *g)
	}
	slices.SortFunc(h.WaitingForHandler, func(a, b WaitingSteps) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Callable, b.Callable), cmp.Compare(a.Reason, b.Reason))
	})
	return h, nil
}

// canRunNow tells whether this engine has since gained what a step it declined needs.
func (e *Engine) canRunNow(w engine.WaitingStep) bool {
	return e.core.HasHandler(w.Callable) && WaitReason(w.Reason) == WaitNoHandler
}

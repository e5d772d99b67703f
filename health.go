package tasker

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

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
	WaitNoHandler WaitReason = "no_handler"
	// WaitNoTemplate: the handler is registered here, but not the task's template version, which
	// the step's type needs (a decision or batchable step creates steps its template describes; a
	// batch worker's failure strategy is applied with its template).
	WaitNoTemplate WaitReason = "no_template"
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

// maxWaitingTracked bounds the steps one engine remembers as waiting; a decline beyond it is
// still made, but not listed by Health.
const maxWaitingTracked = 1000

// waitingForget is how long a step not declined again is remembered when the registry is full.
const waitingForget = time.Minute

// Health reports the engine's health. It confirms against the store that each step it lists
// still waits (one read per task involved), and forgets those that moved on or that this engine
// can run by now (a handler registered since).
func (e *Engine) Health(ctx context.Context) (*Health, error) {
	steps := e.waiting.snapshot()
	byTask := map[uuid.UUID][]waitingStep{}
	for _, s := range steps {
		byTask[s.taskID] = append(byTask[s.taskID], s)
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
			st, ok := state[w.stepID]
			if !ok || (st != statemachine.StepEnqueued && st != statemachine.StepWaitingForRetry) || e.canRunNow(w) {
				gone = append(gone, w.stepID)
				continue
			}
			k := key{w.ns, w.callable, w.reason}
			g := groups[k]
			if g == nil {
				g = &WaitingSteps{Namespace: w.ns, Callable: w.callable, Reason: w.reason, Since: w.since}
				groups[k] = g
			}
			g.Steps++
			if w.since.Before(g.Since) {
				g.Since = w.since
			}
		}
	}
	e.waiting.forget(gone)
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
func (e *Engine) canRunNow(w waitingStep) bool {
	_, ok := e.handler(w.callable)
	return ok && w.reason == WaitNoHandler
}

// waitingRegistry remembers the steps this engine declined, for Health. Its zero value is ready.
type waitingRegistry struct {
	mu    sync.Mutex
	steps map[uuid.UUID]waitingStep
	last  map[string]time.Time // the latest decline, by namespace
}

// declined notes a decline in namespace ns now.
func (r *waitingRegistry) declined(ns string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		r.last = map[string]time.Time{}
	}
	r.last[ns] = time.Now()
}

// lastDecline is when this engine last declined a message of namespace ns.
func (r *waitingRegistry) lastDecline(ns string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.last[ns]
	return t, ok
}

type waitingStep struct {
	taskID, stepID uuid.UUID
	ns, callable   string
	reason         WaitReason
	since, last    time.Time
}

// note records a decline; it reports whether it is the first of its namespace, handler and reason
// that the registry holds (worth a log line at Info).
func (r *waitingRegistry) note(ns string, taskID, stepID uuid.UUID, j judgement, enqueuedAt time.Time) bool {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.steps == nil {
		r.steps = map[uuid.UUID]waitingStep{}
	}
	if w, ok := r.steps[stepID]; ok && w.callable == j.callable && w.reason == j.reason {
		w.last = now
		if w.taskID == uuid.Nil {
			w.taskID = taskID
		}
		r.steps[stepID] = w
		return false
	}
	first := true
	for _, w := range r.steps {
		if w.ns == ns && w.callable == j.callable && w.reason == j.reason {
			first = false
			break
		}
	}
	if len(r.steps) >= maxWaitingTracked {
		for id, w := range r.steps {
			if now.Sub(w.last) > waitingForget {
				delete(r.steps, id)
			}
		}
		if len(r.steps) >= maxWaitingTracked {
			return first
		}
	}
	since := now
	if !enqueuedAt.IsZero() && enqueuedAt.Before(now) {
		since = enqueuedAt
	}
	if taskID == uuid.Nil {
		return first // a message without its task cannot be confirmed by Health
	}
	r.steps[stepID] = waitingStep{taskID: taskID, stepID: stepID, ns: ns, callable: j.callable, reason: j.reason, since: since, last: now}
	return first
}

func (r *waitingRegistry) snapshot() []waitingStep {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]waitingStep, 0, len(r.steps))
	for _, w := range r.steps {
		out = append(out, w)
	}
	return out
}

func (r *waitingRegistry) forget(ids []uuid.UUID) {
	if len(ids) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range ids {
		delete(r.steps, id)
	}
}

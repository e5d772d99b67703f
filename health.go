package tasker

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-systems/tasker/internal/engine"
	"github.com/tasker-systems/tasker/statemachine"
)

// Health is a snapshot of an engine's health: the database, the queue, the maintenance leader,
// the workers' slots, the connection pool, the maintenance services, and the work it sees but
// cannot do. Each part reports its own failure (an Error string) rather than failing the whole;
// Status sums them up. Later versions add fields, so compare fields, not whole values.
type Health struct {
	// Status is HealthOK, HealthDegraded or HealthDown (see HealthStatus for the rules), and
	// Reasons says in words why it is not HealthOK (empty when it is).
	Status  HealthStatus
	Reasons []string
	// CheckedAt is when the report was made; WorkerID names the engine (Config.WorkerID).
	CheckedAt time.Time
	WorkerID  string
	// Database is the store's answer to a ping (bounded by HealthCheckTimeout).
	Database DatabaseHealth
	// Queue is the backlog of each namespace the engine serves, when the queue can tell
	// (queue.Inspector).
	Queue QueueHealth
	// Leader is who holds the maintenance leadership, and whether this engine does.
	Leader LeaderHealth
	// Workers is the use of this engine's handler slots.
	Workers WorkersHealth
	// Pool is the store's connection pool (store.PoolReporter, store/postgres); nil for a store
	// without one (store/memory).
	Pool *PoolStats
	// Services lists, by name, what each maintenance service's passes on this engine last did;
	// a service this engine never ran (it never led) is absent.
	Services []ServiceHealth
	// WaitingForHandler lists, by namespace and handler, the steps this engine declined because it
	// cannot run them (see WaitReason) and that still wait, enqueued, for an engine that can. An
	// engine lists only what it declined itself: in a fleet where another engine has the handler,
	// a step appears here until that engine takes it. While the database does not answer, the
	// steps are listed as last known, unconfirmed.
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

// waitingForHandler lists the steps this engine declined, grouped. With confirm it checks, within
// HealthCheckTimeout, against the store that each still waits (one read per task involved) and
// forgets those that moved on; a task whose read fails, or is not reached in time, keeps its
// steps, unconfirmed. Steps this engine can run by now (a handler registered since) are forgotten
// either way.
func (e *Engine) waitingForHandler(ctx context.Context, confirm bool) []WaitingSteps {
	ctx, cancel := context.WithTimeout(ctx, HealthCheckTimeout)
	defer cancel()
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
		var state map[uuid.UUID]StepState
		if confirm && ctx.Err() == nil {
			current, err := e.store.GetSteps(ctx, taskID)
			if err == nil {
				state = make(map[uuid.UUID]StepState, len(current))
				for _, st := range current {
					state[st.ID] = st.State
				}
			}
		}
		for _, w := range ws {
			if e.canRunNow(w) {
				gone = append(gone, w.StepID)
				continue
			}
			if state != nil {
				st, ok := state[w.StepID]
				if !ok || (st != statemachine.StepEnqueued && st != statemachine.StepWaitingForRetry) {
					gone = append(gone, w.StepID)
					continue
				}
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
	var out []WaitingSteps
	for _, g := range groups {
		out = append(out, *g)
	}
	slices.SortFunc(out, func(a, b WaitingSteps) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Callable, b.Callable), cmp.Compare(a.Reason, b.Reason))
	})
	return out
}

// canRunNow tells whether this engine has since gained what a step it declined needs.
func (e *Engine) canRunNow(w engine.WaitingStep) bool {
	return e.core.HasHandler(w.Callable) && WaitReason(w.Reason) == WaitNoHandler
}

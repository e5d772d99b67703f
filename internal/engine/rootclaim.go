package engine

import (
	"errors"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-systems/tasker/store"
)

// RootClaim is a handler slot the running workers set aside for the first step of a task being
// created (ReserveRoot): the store claims that step in the creation's transaction
// (store.CreateTaskParams.ClaimRoot) and the slot runs it at once, without the trip through the
// queue that a claim from the fetch loop costs (the wake-up, a claim statement and a commit: about
// a fifth of a linear-4 task's latency). The caller ends every RootClaim with Start, claimed or
// not.
type RootClaim struct {
	w      *workers
	ns     string
	params store.ClaimRootParams
	t0     time.Time
	done   bool
}

// ReserveRoot reserves a slot for one of roots (a task's enqueued root steps, in creation order):
// the first this engine can run, when its workers run and serve ns, claim from the store's own
// queue (store/postgres with its queue), found ns's queue empty at their last claim with no
// wake-up since (lane.drained), and have a slot free now; nil otherwise. So a new task never starts
// ahead of steps already waiting (older, or of a higher priority): with a backlog, or with every
// slot busy, its root goes through the queue behind them. A namespace with limits (Config.Limits)
// gets none either, so that every start goes through the limits' lock.
func (e *Engine) ReserveRoot(ns string, roots []store.StepRef) *RootClaim {
	e.mu.RLock()
	w := e.active
	e.mu.RUnlock()
	if w == nil || !w.started.Load() || w.claimer == nil || len(e.globalLimit(ns).rules) > 0 {
		return nil
	}
	if l := w.lane(ns); l == nil || !l.drained.Load() {
		return nil // not served, or messages may wait in the queue: the root goes behind them
	}
	for _, ref := range roots {
		if !e.canRun(ns, ref) {
			continue
		}
		if !w.reserve(ns) {
			return nil
		}
		return &RootClaim{w: w, ns: ns, t0: time.Now(),
			params: store.ClaimRootParams{StepID: ref.StepID, WorkerID: e.cfg.WorkerID, Lease: e.cfg.Lease}}
	}
	return nil
}

// Params is what the creation passes the store (store.CreateTaskParams.ClaimRoot); nil for a nil
// RootClaim.
func (r *RootClaim) Params() *store.ClaimRootParams {
	if r == nil {
		return nil
	}
	p := r.params
	return &p
}

// Start runs the step the creation claimed in the reserved slot, or gives the slot back when c is
// nil (nothing claimed, a duplicate). A step claimed while RunWorkers is stopping is given back
// to the queue (giveBack) rather than started: the drain may already have given up on it. Only
// the first call of Start or Abandon counts; a nil RootClaim does nothing.
func (r *RootClaim) Start(c *store.ClaimedMessage) {
	if r == nil || r.done {
		return
	}
	r.done = true
	switch {
	case c == nil || c.Step.ID != r.params.StepID:
		r.w.release(r.ns, 1)
		r.w.inflight.Done()
	case r.w.stopping.Load():
		r.w.release(r.ns, 1)
		go r.giveBack(c.Task.ID, "claimed by a task creation while the workers were stopping")
	default:
		go r.w.executeClaimed(r.ns, *c, claimTimes{start: r.t0, end: time.Now()})
	}
}

// Abandon ends a RootClaim whose creation failed: the commit may have happened all the same (a
// reply lost with its connection), leaving the root claimed by this worker and run by nobody, so
// the step is given back in the background; that finds nothing to do when the task was not
// created. A nil or ended RootClaim does nothing.
func (r *RootClaim) Abandon(taskID uuid.UUID) {
	if r == nil || r.done {
		return
	}
	r.done = true
	r.w.release(r.ns, 1)
	go r.giveBack(taskID, "claimed by a task creation whose commit this worker could not confirm")
}

// giveBackAfter are the waits before each try of giveBack to find the step: a commit that the
// creation could not confirm may become visible only later (a synchronous replica's wait).
var giveBackAfter = []time.Duration{0, 500 * time.Millisecond, 2 * time.Second}

// giveBack releases the claimed root (store.ReleaseStep: enqueued again with a message, its
// attempt not spent), then ends the executor reserve counted. A step it does not find (the task
// not visible, or not created) it looks for again, a few times, before it gives up: the lease
// rescuer is the last resort.
func (r *RootClaim) giveBack(taskID uuid.UUID, reason string) {
	defer r.w.inflight.Done()
	e := r.w.e
	for _, wait := range giveBackAfter {
		if wait > 0 {
			time.Sleep(wait)
		}
		if _, err := e.store.GetTask(r.w.dbctx, taskID); errors.Is(err, store.ErrNotFound) {
			continue // not created, or not visible yet
		}
		enq := e.NewEnqueuer()
		err := e.store.ReleaseStep(r.w.dbctx, store.ReleaseStepParams{StepID: r.params.StepID, WorkerID: r.params.WorkerID, Attempt: 1,
			Reason: reason, Namespace: r.ns, Enqueuer: enq})
		switch {
		case err == nil:
			enq.Flush(r.w.dbctx)
			return
		case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrNotFound):
			return // the step is not this worker's claim: nothing to give back
		default:
			e.log.Error(err, "give back the first step of a task creation; the lease rescuer will take it over", "task", taskID, "step", r.params.StepID)
			return
		}
	}
}

// reserve takes a handler slot of ns without waiting, and counts the executor to come in inflight,
// unless the workers are stopping (under reserveMu, so that no executor is added once the drain
// waits for them).
func (w *workers) reserve(ns string) bool {
	w.reserveMu.RLock()
	defer w.reserveMu.RUnlock()
	if w.stopping.Load() || !w.trySlot(ns) {
		return false
	}
	if l := w.lane(ns); l != nil {
		l.held.Add(1)
	}
	w.inflight.Add(1)
	return true
}

// trySlot takes one slot of ns and one of the engine, both or neither, without waiting.
func (w *workers) trySlot(ns string) bool {
	nsCh := w.laneSlots(ns)
	if nsCh != nil {
		select {
		case nsCh <- struct{}{}:
		default:
			return false
		}
	}
	select {
	case w.slots <- struct{}{}:
		return true
	default:
		if nsCh != nil {
			<-nsCh
		}
		return false
	}
}

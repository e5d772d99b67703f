package engine

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/google/uuid"
)

// ErrTaskCancelled is the cause of a handler context cancelled because its task was cancelled;
// the root package exports it as tasker.ErrTaskCancelled.
var ErrTaskCancelled = errors.New("tasker: task cancelled")

// RunRegistry tracks the handlers running in this process by task, so that CancelTask can cancel
// their contexts at once. Its zero value is ready.
type RunRegistry struct {
	mu sync.Mutex
	m  map[uuid.UUID]map[runKey]context.CancelCauseFunc
}

// runKey is one attempt of a step: a stale attempt (its lease lost) may still run beside the next
// one in the same process until its heartbeat tells it.
type runKey struct {
	step    uuid.UUID
	attempt int
}

// Add registers the cancel function of a step's attempt running for task.
func (r *RunRegistry) Add(task, step uuid.UUID, attempt int, cancel context.CancelCauseFunc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[uuid.UUID]map[runKey]context.CancelCauseFunc{}
	}
	if r.m[task] == nil {
		r.m[task] = map[runKey]context.CancelCauseFunc{}
	}
	r.m[task][runKey{step, attempt}] = cancel
}

// Remove forgets an attempt that Add registered.
func (r *RunRegistry) Remove(task, step uuid.UUID, attempt int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m[task], runKey{step, attempt})
	if len(r.m[task]) == 0 {
		delete(r.m, task)
	}
}

// CancelTask cancels, with ErrTaskCancelled, every handler running here for task.
func (r *RunRegistry) CancelTask(task uuid.UUID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, cancel := range r.m[task] {
		cancel(ErrTaskCancelled)
	}
}

// WaiterRegistry wakes WaitTask callers in this process when a task comes to rest here (an
// outcome's Settled: terminal, or blocked with nothing left in flight); waiters also poll, so a
// task settled by another process is seen too. Its zero value is ready.
type WaiterRegistry struct {
	mu sync.Mutex
	m  map[uuid.UUID][]chan struct{}
}

// Subscribe returns a channel that Notify(id) signals; Unsubscribe it when done.
func (w *WaiterRegistry) Subscribe(id uuid.UUID) chan struct{} {
	ch := make(chan struct{}, 1)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = map[uuid.UUID][]chan struct{}{}
	}
	w.m[id] = append(w.m[id], ch)
	return ch
}

// Unsubscribe forgets a channel Subscribe returned.
func (w *WaiterRegistry) Unsubscribe(id uuid.UUID, ch chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	chs := w.m[id]
	for i, c := range chs {
		if c == ch {
			chs = append(chs[:i], chs[i+1:]...)
			break
		}
	}
	if len(chs) == 0 {
		delete(w.m, id)
	} else {
		w.m[id] = chs
	}
}

// Notify wakes the waiters of task id without blocking.
func (w *WaiterRegistry) Notify(id uuid.UUID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, ch := range w.m[id] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// maxWaitingTracked bounds the steps one engine remembers as waiting; a decline beyond it is
// still made, but not listed by Health.
const maxWaitingTracked = 1000

// waitingForget is how long a step not declined again is remembered when the registry is full.
const waitingForget = time.Minute

// WaitingRegistry remembers the steps this engine declined, for Health. Its zero value is ready.
type WaitingRegistry struct {
	mu    sync.Mutex
	steps map[uuid.UUID]WaitingStep
	last  map[string]time.Time // the latest decline, by namespace
}

// Declined notes a decline in namespace ns now.
func (r *WaitingRegistry) Declined(ns string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		r.last = map[string]time.Time{}
	}
	r.last[ns] = time.Now()
}

// LastDecline is when this engine last declined a message of namespace ns.
func (r *WaitingRegistry) LastDecline(ns string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.last[ns]
	return t, ok
}

// WaitingStep is a step this engine declined, waiting for an engine that can run it.
type WaitingStep struct {
	TaskID, StepID uuid.UUID
	NS, Callable   string
	// Reason is why it was declined (tasker.WaitReason's values).
	Reason      string
	Since, Last time.Time
}

// Note records a decline of a step needing callable, for reason; it reports whether it is the
// first of its namespace, handler and reason that the registry holds (worth a log line at Info).
func (r *WaitingRegistry) Note(ns string, taskID, stepID uuid.UUID, callable, reason string, enqueuedAt time.Time) bool {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.steps == nil {
		r.steps = map[uuid.UUID]WaitingStep{}
	}
	if w, ok := r.steps[stepID]; ok && w.Callable == callable && w.Reason == reason {
		w.Last = now
		if w.TaskID == uuid.Nil {
			w.TaskID = taskID
		}
		r.steps[stepID] = w
		return false
	}
	first := true
	for _, w := range r.steps {
		if w.NS == ns && w.Callable == callable && w.Reason == reason {
			first = false
			break
		}
	}
	if len(r.steps) >= maxWaitingTracked {
		for id, w := range r.steps {
			if now.Sub(w.Last) > waitingForget {
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
	r.steps[stepID] = WaitingStep{TaskID: taskID, StepID: stepID, NS: ns, Callable: callable, Reason: reason, Since: since, Last: now}
	return first
}

// Snapshot lists the steps the registry holds.
func (r *WaitingRegistry) Snapshot() []WaitingStep {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]WaitingStep, 0, len(r.steps))
	for _, w := range r.steps {
		out = append(out, w)
	}
	return out
}

// Forget drops the steps ids.
func (r *WaitingRegistry) Forget(ids []uuid.UUID) {
	if len(ids) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range ids {
		delete(r.steps, id)
	}
}

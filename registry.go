package tasker

import (
	"context"
	"sync"

	"github.com/google/uuid"
)

// runRegistry tracks the handlers running in this process by task, so that CancelTask can cancel
// their contexts at once.
type runRegistry struct {
	mu sync.Mutex
	m  map[uuid.UUID]map[runKey]context.CancelCauseFunc
}

// runKey is one attempt of a step: a stale attempt (its lease lost) may still run beside the next
// one in the same process until its heartbeat tells it.
type runKey struct {
	step    uuid.UUID
	attempt int
}

func (r *runRegistry) add(task, step uuid.UUID, attempt int, cancel context.CancelCauseFunc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m[task] == nil {
		r.m[task] = map[runKey]context.CancelCauseFunc{}
	}
	r.m[task][runKey{step, attempt}] = cancel
}

func (r *runRegistry) remove(task, step uuid.UUID, attempt int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m[task], runKey{step, attempt})
	if len(r.m[task]) == 0 {
		delete(r.m, task)
	}
}

func (r *runRegistry) cancelTask(task uuid.UUID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, cancel := range r.m[task] {
		cancel(ErrTaskCancelled)
	}
}

// waiterRegistry wakes WaitTask callers in this process when a task comes to rest here (an
// outcome's Settled: terminal, or blocked with nothing left in flight); waiters also poll, so a
// task settled by another process is seen too.
type waiterRegistry struct {
	mu sync.Mutex
	m  map[uuid.UUID][]chan struct{}
}

func (w *waiterRegistry) subscribe(id uuid.UUID) chan struct{} {
	ch := make(chan struct{}, 1)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.m[id] = append(w.m[id], ch)
	return ch
}

func (w *waiterRegistry) unsubscribe(id uuid.UUID, ch chan struct{}) {
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

func (w *waiterRegistry) notify(id uuid.UUID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, ch := range w.m[id] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

package engine

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

// A child task (the root's Step.Child) carries a tag naming its parent step. Once the child comes
// to rest, the engine that ended it wakes the parked parent at once (store.Signaler with
// WakeOnly), and the parent's handler reads the child. Every ending the engine commits itself
// wakes the parent, through Engine.wakeParent, after the commit:
//
//   - an outcome of the child's last step (executor, batched or not; a remote worker's report);
//   - a step completed in its handler's transaction (Step.CompleteTx), once the executor finds
//     the transaction committed;
//   - the lease rescuer failing a step whose worker vanished;
//   - a cancellation (CancelTask), from any engine, workers running or not;
//   - a task moved to error: the staleness detector's action, an operator's DeadLetterTask with
//     MoveToError;
//   - an operator's step action (RetryStep, ResolveStep, CompleteStep) that brings the child to
//     rest or ends it.
//
// A cancellation committed in a caller's transaction (CancelTaskTx), which no engine sees commit,
// is announced by the store (store.EventTaskCancelled, PostgreSQL, which announces the moves to
// error too); the elected engine wakes the parent when it hears it. One wake-up per child runs
// at a time in an engine (parentWakes), so that an ending woken both directly and from the
// announcement costs one. What is left to the parent's poll (the root's ChildPollInterval): a
// wake-up lost to a crash right after the child's commit or to a lost announcement, an
// operator's step action in a caller's transaction (RetryStepTx and the like), and a parent whose
// handler still runs for longer than a lease after the child ended.
//
// The wake-up runs in the background, so that no caller waits for it: a parent whose handler
// still runs (it read the child before the child ended) is woken once it has parked, which can
// take up to a lease. Run, when it stops, ends the wake-ups still in flight (parentWakes.drain).

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

// maxParentWakes is how many wake-ups of parents an engine runs at once; the others wait their
// turn in its queue, so that a burst of endings (a bulk cancellation heard from the store) takes
// a handful of goroutines and pool connections, not one of each per task.
const maxParentWakes = 8

// parentWakes runs the wake-ups of parents in the background, at most maxParentWakes at a time,
// each tracked by its generation, so that Run's shutdown ends them (drain) rather than leaking
// them.
type parentWakes struct {
	mu      sync.Mutex
	gen     *wakeGen
	running map[uuid.UUID]struct{} // the children whose parent's wake-up is queued or in flight
	queue   []wakeJob
	workers int // goroutines taking jobs from queue
}

// wakeJob is one queued wake-up.
type wakeJob struct {
	base  context.Context
	child uuid.UUID
	gen   *wakeGen
	f     func(ctx context.Context, stop <-chan struct{})
}

// wakeGen is the set of wake-ups started since the last drain.
type wakeGen struct {
	wg sync.WaitGroup
	// stop, closed by drain, ends the waits for a parent that is still in progress to park.
	stop chan struct{}
	// ctx, cancelled by drain after its grace, ends the store calls in flight.
	ctx    context.Context
	cancel context.CancelFunc
}

// start queues f in the current generation, unless a wake-up of child's parent is queued or in
// flight already; f gets a context that ends with the generation and a channel closed when it
// should stop waiting.
func (p *parentWakes) start(base context.Context, child uuid.UUID, f func(ctx context.Context, stop <-chan struct{})) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.running[child]; ok {
		return false
	}
	if p.running == nil {
		p.running = map[uuid.UUID]struct{}{}
	}
	p.running[child] = struct{}{}
	g := p.gen
	if g == nil {
		g = &wakeGen{stop: make(chan struct{})}
		g.ctx, g.cancel = context.WithCancel(context.Background())
		p.gen = g
	}
	g.wg.Add(1)
	p.queue = append(p.queue, wakeJob{base: base, child: child, gen: g, f: f})
	if p.workers < maxParentWakes {
		p.workers++
		go p.work()
	}
	return true
}

// work runs queued wake-ups until the queue is empty.
func (p *parentWakes) work() {
	for {
		p.mu.Lock()
		if len(p.queue) == 0 {
			p.workers--
			p.mu.Unlock()
			return
		}
		j := p.queue[0]
		p.queue[0] = wakeJob{}
		p.queue = p.queue[1:]
		p.mu.Unlock()
		p.run(j)
	}
}

// run runs one wake-up. The caller's values (a trace) are kept, not its cancellation: the caller
// returned long ago.
func (p *parentWakes) run(j wakeJob) {
	defer j.gen.wg.Done()
	ctx, cancel := context.WithCancel(context.WithoutCancel(j.base))
	unlink := context.AfterFunc(j.gen.ctx, cancel)
	defer func() {
		unlink()
		cancel()
		p.mu.Lock()
		delete(p.running, j.child)
		p.mu.Unlock()
	}()
	j.f(ctx, j.gen.stop)
}

// drain stops the wake-ups in flight: their waits for a parent to park end at once, and their
// store calls are given grace to finish before they are cancelled. It returns when every one has
// ended. Wake-ups started later make a new generation.
func (p *parentWakes) drain(grace time.Duration) {
	p.mu.Lock()
	g := p.gen
	p.gen = nil
	p.mu.Unlock()
	if g == nil {
		return
	}
	close(g.stop)
	done := make(chan struct{})
	go func() {
		g.wg.Wait()
		close(done)
	}()
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		g.cancel()
		<-done
	}
	g.cancel()
}

// WakeParent wakes, in the background, the parked parent step of a task that came to rest or
// ended, when the task is a child (its tags name a parent, ParentTag): for the root package's
// endings (a cancellation, an operator's action), after their commit. It reads the task; it
// never blocks, and a wake-up that fails leaves the parent to its poll.
func (e *Engine) WakeParent(ctx context.Context, taskID uuid.UUID) { e.wakeParent(ctx, taskID, nil) }

// wakeParent wakes, in the background, the parked parent step of task taskID if it is a child
// task; task, when not nil, is the task as read (its tags), which spares a read; without it,
// the task is read first. ctx's values are kept, not its cancellation.
func (e *Engine) wakeParent(ctx context.Context, taskID uuid.UUID, task *store.Task) {
	if task != nil {
		if _, _, ok := parentOf(task.Tags); !ok {
			return
		}
	}
	sg, ok := e.store.(store.Signaler)
	if !ok {
		return
	}
	e.wakes.start(ctx, taskID, func(ctx context.Context, stop <-chan struct{}) {
		e.wakeParentNow(ctx, stop, sg, taskID, task)
	})
}

// wakeParentNow is wakeParent's goroutine: it wakes the parent step and, while the parent's
// handler still runs (it read the child before the child ended, and its park has not committed),
// tries again until the parent has left in_progress, for a lease at most or until stop.
func (e *Engine) wakeParentNow(ctx context.Context, stop <-chan struct{}, sg store.Signaler, taskID uuid.UUID, task *store.Task) {
	read := func(id uuid.UUID) (*store.Task, error) {
		rctx, cancel := context.WithTimeout(ctx, e.cfg.Lease)
		defer cancel()
		return e.store.GetTask(rctx, id)
	}
	if task == nil {
		var err error
		if task, err = read(taskID); err != nil {
			if ctx.Err() == nil {
				e.log.V(1).Info("could not read a task that ended, to wake its parent; a parent finds it at its next poll", "task", taskID, "error", err.Error())
			}
			return
		}
	}
	parent, step, ok := parentOf(task.Tags)
	if !ok {
		return
	}
	pt, err := read(parent)
	if err != nil {
		if ctx.Err() == nil {
			e.log.Error(err, "read the parent of a child task that ended; the parent finds it at its next poll", "task", task.ID, "parent", parent)
		}
		return
	}
	giveUp := time.Now().Add(e.cfg.Lease)
	for delay := time.Millisecond; ; delay = min(delay*2, 100*time.Millisecond) {
		enq := e.NewEnqueuer()
		sctx, cancel := context.WithTimeout(ctx, e.cfg.Lease)
		res, err := sg.SignalStep(sctx, store.SignalStepParams{TaskID: parent, Step: step, Namespace: pt.Namespace,
			Enqueuer: enq, WakeOnly: true})
		if err == nil {
			enq.Flush(sctx)
		}
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				e.log.V(1).Info("could not wake the parent of a child task that ended", "task", task.ID, "parent", parent, "step", step, "error", err.Error())
			}
			return
		}
		if res.Woken {
			e.log.V(1).Info("woke the parent of a child task that ended", "task", task.ID, "parent", parent, "step", step)
		}
		if res.State != statemachine.StepInProgress || time.Now().After(giveUp) {
			return
		}
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

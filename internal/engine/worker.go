package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tasker-systems/tasker/queue"
	"github.com/tasker-systems/tasker/store"
)

// abandonGrace is how long a handler that ignores its cancelled context is waited for before its
// attempt is settled without it.
const abandonGrace = 2 * time.Second

// Run takes steps from the queue and runs their handlers until ctx ends, then drains:
// in-flight handlers get Config.ShutdownTimeout to finish, after which their contexts are
// cancelled and their steps go back to the queue without losing the attempt. A handler's outcome
// that the database cannot take yet (an outage) is tried until its lease ends, so the drain lasts
// at most ShutdownTimeout, a few seconds' grace and one Config.Lease. It returns nil after a clean
// stop, or an error when it cannot start (for example a database that is not migrated, or a
// *TemplateConflictError when the database's registry holds another definition of a registered
// template version). Only one RunWorkers per engine may run at a time. Templates registered while
// it runs are served too (see Register).
func (e *Engine) Run(ctx context.Context) error {
	if !e.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	defer e.running.Store(false)
	if err := e.CheckSchema(ctx); err != nil {
		if ctx.Err() != nil {
			return nil // stopped before it started
		}
		return err
	}
	// From here on Register tells w of each new template; those registered before are listed below.
	w := newWorkers(e)
	e.mu.Lock()
	e.active = w
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		e.active = nil
		e.mu.Unlock()
	}()
	// Bring the database's template registry up to date with this engine's definitions.
	for _, r := range e.registeredTemplates() {
		if err := e.persist(ctx, r); err != nil {
			if ctx.Err() != nil {
				return nil // stopped before it started
			}
			return fmt.Errorf("tasker: RunWorkers: %w", err)
		}
	}
	nss := e.namespaces()
	if len(nss) == 0 {
		return errors.New("tasker: RunWorkers: no namespace to serve: register a template or set Config.Namespaces")
	}
	return w.run(ctx, nss)
}

type workers struct {
	e     *Engine
	slots chan struct{}

	// lanes holds, by namespace served, its wake-up channel and its concurrency cap; it is
	// replaced, never changed, when a namespace is added (under lanesMu), so readers need no lock.
	lanes       atomic.Pointer[map[string]*lane]
	lanesMu     sync.Mutex
	nss         []string // the namespaces served, sorted; guarded by lanesMu
	fetchCtx    context.Context
	fetchers    sync.WaitGroup // the fetch loops; added to under lanesMu while !fetchClosed
	fetchClosed bool           // RunWorkers is stopping: no fetch loop starts any more
	relisten    chan struct{}  // the namespaces changed: the queue listener starts again

	regMu   sync.Mutex
	pending []*Template // templates registered while running, not yet handled
	regWake chan struct{}

	handlerBase context.Context
	hardStop    context.CancelCauseFunc
	dbctx       context.Context // for bookkeeping that must finish even while stopping
	inflight    sync.WaitGroup

	leading   atomic.Bool  // this engine holds the maintenance leadership
	stopping  atomic.Bool  // RunWorkers' context has ended: no new work is taken on
	reserveMu sync.RWMutex // stopping is set under it, so that reserve adds no executor once the drain waits
	started   atomic.Bool  // the fetch loops run: health reports the workers running (Slots)
	recording atomic.Int32 // finished outcomes that record is trying again to commit
	completer *completer   // records outcomes in batches (completer.go); nil: one by one
	// claimer reads and claims in one statement, when the store owns the queue; nil: the queue
	// is read and each step claimed by its executor.
	claimer store.QueueClaimer
	// peeker lists the messages the claimer leaves to engines with other handlers (Health).
	peeker   store.QueuePeeker
	peekMu   sync.Mutex
	lastPeek map[string]time.Time // by namespace

	heldMu sync.Mutex
	holds  map[string]hold // namespaces whose re-publishing the sweeper holds back

	timersMu sync.Mutex
	timers   map[*wakeTimer]struct{}
	stopped  bool
}

// lane is one served namespace's wake-up channel and optional concurrency cap.
type lane struct {
	wake  chan struct{}
	slots chan struct{} // nil: no cap beyond Config.Concurrency
	held  atomic.Int64  // handler slots this namespace holds (Slots, for health)
	// drained is set when the last claim from the queue read fewer messages than it had slots
	// for, and cleared by each wake-up (signal): no backlog of this namespace waits in the queue,
	// as far as this engine knows, so a new task's root may start at once (RootClaim) without
	// passing steps that wait (older, or of a higher priority). A message sent while that claim
	// ran may be passed, by the moment the next claim takes to read it; a backlog never is, since
	// a claim that fills every free slot leaves it cleared.
	drained atomic.Bool
}

func newWorkers(e *Engine) *workers {
	w := &workers{
		e:        e,
		slots:    make(chan struct{}, e.cfg.Concurrency),
		timers:   map[*wakeTimer]struct{}{},
		relisten: make(chan struct{}, 1),
		regWake:  make(chan struct{}, 1),

		holds: map[string]hold{},
	}
	w.lanes.Store(&map[string]*lane{})
	return w
}

// lane returns the lane of a served namespace, or nil.
func (w *workers) lane(ns string) *lane { return (*w.lanes.Load())[ns] }

// addLane makes a namespace served; false when it was already.
func (w *workers) addLane(ns string) bool {
	w.lanesMu.Lock()
	defer w.lanesMu.Unlock()
	old := *w.lanes.Load()
	if _, ok := old[ns]; ok {
		return false
	}
	l := &lane{wake: make(chan struct{}, 1)}
	if n := w.e.cfg.NamespaceConcurrency[ns]; n > 0 {
		l.slots = make(chan struct{}, n)
	}
	m := make(map[string]*lane, len(old)+1)
	maps.Copy(m, old)
	m[ns] = l
	w.lanes.Store(&m)
	w.nss = append(w.nss, ns)
	slices.Sort(w.nss)
	return true
}

// namespaces lists the namespaces served.
func (w *workers) namespaces() []string {
	w.lanesMu.Lock()
	defer w.lanesMu.Unlock()
	return slices.Clone(w.nss)
}

// startFetch starts the fetch loop of a served namespace, unless RunWorkers is stopping.
func (w *workers) startFetch(ns string) {
	w.lanesMu.Lock()
	defer w.lanesMu.Unlock()
	if w.fetchClosed {
		return
	}
	w.signal(ns) // look once at start-up
	w.fetchers.Add(1)
	go func() {
		defer w.fetchers.Done()
		w.fetchLoop(w.fetchCtx, ns)
	}()
}

// closeFetch stops new fetch loops from starting and waits for the running ones to return (their
// context has ended).
func (w *workers) closeFetch() {
	w.lanesMu.Lock()
	w.fetchClosed = true
	w.lanesMu.Unlock()
	w.fetchers.Wait()
}

func (w *workers) signal(ns string) {
	if l := w.lane(ns); l != nil {
		l.drained.Store(false)
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
}

// registered tells the running workers of a template registered after they started.
func (w *workers) registered(r *Template) {
	w.regMu.Lock()
	w.pending = append(w.pending, r)
	w.regMu.Unlock()
	select {
	case w.regWake <- struct{}{}:
	default:
	}
}

// takeRegistrations handles the templates registered while the workers run until ctx ends: a new
// namespace gets its fetch loop and joins the queue listener (unless Config.Namespaces fixes the
// set), and the template is written to the database's registry. A write that fails is logged:
// the first CreateTask of the template writes it again, and fails with the same error if it
// persists (a *TemplateConflictError, say).
func (w *workers) takeRegistrations(ctx context.Context) {
	e := w.e
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.regWake:
		}
		w.regMu.Lock()
		regs := w.pending
		w.pending = nil
		w.regMu.Unlock()
		for _, r := range regs {
			ns := r.Namespace
			if len(e.cfg.Namespaces) == 0 && w.addLane(ns) {
				w.startFetch(ns)
				select {
				case w.relisten <- struct{}{}:
				default:
				}
				e.log.Info("serving a namespace registered while the workers run", "namespace", ns, "template", r.Key())
			}
			if err := e.persist(ctx, r); err != nil && ctx.Err() == nil {
				e.log.Error(err, "write a template registered while the workers run to the database's registry; its first CreateTask tries again", "template", r.Key())
			}
		}
	}
}

// listen runs the queue's Listen over the namespaces served until ctx ends, and starts it again,
// over the new set, when a namespace is added. The new listener is in place (it has woken its
// namespaces once) before the old one stops, so that no wake-up is missed in between, and a
// backend that shares consumers between listeners (queue/rabbitmq) keeps them.
func (w *workers) listen(ctx context.Context) {
	e := w.e
	var (
		cancel context.CancelFunc
		done   chan struct{}
	)
	defer func() {
		if cancel != nil {
			cancel()
			<-done
		}
	}()
	start := func() {
		nss := w.namespaces()
		lctx, c := context.WithCancel(ctx)
		d := make(chan struct{})
		woke := make(chan struct{})
		var once sync.Once
		go func() {
			defer close(d)
			err := e.queue.Listen(lctx, nss, func(ns string) {
				once.Do(func() { close(woke) })
				w.signal(ns)
			})
			if err != nil {
				e.log.Error(err, "queue listener stopped", "namespaces", nss)
			}
		}()
		if cancel != nil {
			select {
			case <-woke:
			case <-d:
			case <-ctx.Done():
			case <-time.After(listenStartWait):
			}
			cancel()
			<-done
		}
		cancel, done = c, d
	}
	start()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.relisten:
			start()
		}
	}
}

func (w *workers) run(ctx context.Context, nss []string) error {
	e := w.e
	w.dbctx = context.WithoutCancel(ctx)
	w.handlerBase, w.hardStop = context.WithCancelCause(context.WithoutCancel(ctx))
	defer w.hardStop(nil)
	w.fetchCtx = ctx
	for _, ns := range nss {
		w.addLane(ns)
	}
	if w.completer = newCompleter(w); w.completer != nil {
		go w.completer.run()
	}
	if qc, ok := e.store.(store.QueueClaimer); ok && w.completer != nil && w.completer.owned {
		w.claimer = qc
		w.peeker, _ = e.store.(store.QueuePeeker)
	}

	listenCtx, stopListen := context.WithCancel(w.dbctx)
	var bg sync.WaitGroup
	bg.Add(1)
	go func() {
		defer bg.Done()
		w.listen(listenCtx)
	}()
	if !e.cfg.DisableMaintenance {
		bg.Add(1)
		go func() {
			defer bg.Done()
			w.maintain(ctx)
		}()
	}
	if el, ok := e.store.(store.EventListener); ok {
		listening := make(chan struct{})
		bg.Add(1)
		go func() {
			defer bg.Done()
			w.listenEvents(listenCtx, el, listening)
		}()
		// Handlers start once the store's announcements reach this engine, so that a cancellation
		// made from the first moment stops them at once; a listener slow to connect does not hold
		// the start-up for long (heartbeats cover the gap).
		select {
		case <-listening:
		case <-ctx.Done():
		case <-time.After(listenStartWait):
			e.log.Info("the store's announcements are not listened to yet; starting anyway", "waited", listenStartWait)
		}
	}
	for _, ns := range nss {
		w.startFetch(ns)
	}
	var registrar sync.WaitGroup
	registrar.Add(1)
	go func() {
		defer registrar.Done()
		w.takeRegistrations(ctx)
	}()
	w.started.Store(true)
	e.log.Info("workers started", "worker_id", e.cfg.WorkerID, "namespaces", nss, "concurrency", e.cfg.Concurrency)

	<-ctx.Done()
	w.reserveMu.Lock()
	w.stopping.Store(true)
	w.reserveMu.Unlock()
	registrar.Wait()
	// No handler starts once the fetch loops are gone; only then may the drain wait for the
	// in-flight ones.
	w.closeFetch()
	drained := make(chan struct{})
	go func() { w.inflight.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(e.cfg.ShutdownTimeout):
		e.log.Info("shutdown timeout: cancelling in-flight handlers; their steps go back to the queue")
		w.hardStop(ErrShutdown)
		select {
		case <-drained:
		case <-time.After(2 * abandonGrace):
			if n := w.recording.Load(); n > 0 {
				// A finished outcome is not dropped: record tries it until its lease ends, and
				// renews no lease while stopping, so this wait is bounded by one lease.
				e.log.Info("waiting for finished outcomes the database has not taken yet, until their leases end", "outcomes", n)
				select {
				case <-drained:
				case <-time.After(e.cfg.Lease):
				}
			}
			select {
			case <-drained:
			default:
				e.log.Info("some handlers ignore their cancelled context; abandoning them")
			}
		}
	}
	if w.completer != nil {
		w.completer.close()
	}
	stopListen()
	bg.Wait()
	// The wake-ups of parents started by this run's outcomes, rescues and announcements end here.
	e.wakes.drain(e.cfg.ShutdownTimeout)
	w.timersMu.Lock()
	w.stopped = true
	for t := range w.timers {
		t.stop()
	}
	w.timersMu.Unlock()
	e.log.Info("workers stopped", "worker_id", e.cfg.WorkerID)
	return nil
}

// wakeTimer is a pending wakeAfter.
type wakeTimer struct{ stop func() bool }

// wakeAfter wakes a namespace's fetch loop after d (a retry's backoff) on the engine's clock,
// since delayed messages come with no notification.
func (w *workers) wakeAfter(ns string, d time.Duration) {
	w.timersMu.Lock()
	defer w.timersMu.Unlock()
	if w.stopped {
		return
	}
	t := &wakeTimer{}
	t.stop = w.e.cfg.Clock.At(w.e.cfg.Clock.Now().Add(d+5*time.Millisecond), func() {
		w.timersMu.Lock()
		delete(w.timers, t)
		w.timersMu.Unlock()
		w.signal(ns)
	})
	w.timers[t] = struct{}{}
}

// acquire blocks until at least one handler slot is free for ns and takes up to ReadBatchDefault.
func (w *workers) acquire(ctx context.Context, ns string) int {
	n := w.takeSlots(ctx, ns)
	if l := w.lane(ns); l != nil {
		l.held.Add(int64(n))
	}
	return n
}

// laneSlots is the slot channel of ns's own cap, or nil when it has none (or is not served).
func (w *workers) laneSlots(ns string) chan struct{} {
	if l := w.lane(ns); l != nil {
		return l.slots
	}
	return nil
}

// takeSlots is acquire without the accounting.
func (w *workers) takeSlots(ctx context.Context, ns string) int {
	nsCh := w.laneSlots(ns)
	if nsCh != nil {
		select {
		case nsCh <- struct{}{}:
		case <-ctx.Done():
			return 0
		}
	}
	select {
	case w.slots <- struct{}{}:
	case <-ctx.Done():
		if nsCh != nil {
			<-nsCh
		}
		return 0
	}
	n := 1
	for n < ReadBatchDefault && w.trySlot(ns) { // rootclaim.go
		n++
	}
	return n
}

func (w *workers) release(ns string, n int) {
	var nsCh chan struct{}
	if l := w.lane(ns); l != nil {
		nsCh = l.slots
		l.held.Add(-int64(n))
	}
	for i := 0; i < n; i++ {
		<-w.slots
		if nsCh != nil {
			<-nsCh
		}
	}
}

// claimFromQueue reads and claims up to n steps of ns in one statement, holding n slots: it acks
// the stale messages in one call, starts an executor per claimed step and per retry timer, and
// gives back the slots it does not use. The claim runs with lock's context (a global limit's
// lock, limitGate), and lock is let go as soon as the claim has returned: what follows (the ack
// of stale messages, the peek) takes other connections of the pool, which claims waiting for
// the same lock may hold. It returns how many messages it read.
func (w *workers) claimFromQueue(ctx context.Context, ns string, n int, lock *store.LimitHold) (int, error) {
	e := w.e
	// The claim writes (attempts, leases): it runs on dbctx, so that a shutdown arriving while it
	// runs cannot leave claimed steps with no executor until their leases run out.
	if ctx.Err() != nil {
		lock.Unlock()
		return 0, ctx.Err()
	}
	cl := claimTimes{start: time.Now()}
	res, err := w.claimer.ClaimFromQueue(lock.Within(w.dbctx), store.ClaimFromQueueParams{Namespace: ns, WorkerID: e.cfg.WorkerID, Limit: n,
		Lease: e.cfg.Lease, Callables: e.callables()})
	cl.end = time.Now()
	lock.Unlock()
	if err != nil {
		return 0, err
	}
	if len(res.Stale) > 0 {
		ids := make([]int64, len(res.Stale))
		for i, r := range res.Stale {
			ids[i] = r.MessageID
		}
		if err := e.queue.Ack(w.dbctx, ns, ids...); err != nil && !errors.Is(err, queue.ErrNotFound) {
			e.log.Error(err, "ack stale messages", "namespace", ns, "messages", len(ids))
		}
	}
	used := len(res.Claimed) + len(res.Retries)
	w.release(ns, n-used)
	for _, c := range res.Claimed {
		w.inflight.Add(1)
		go w.executeClaimed(ns, c, cl)
	}
	for _, r := range res.Retries {
		// A retry timer whose step waits for its backoff: the executor promotes it, then claims it.
		payload, err := json.Marshal(stepMessage{StepID: r.StepID, Retry: true})
		if err != nil {
			w.release(ns, 1)
			continue
		}
		w.inflight.Add(1)
		go w.execute(ns, queue.Message{ID: r.MessageID, Queue: ns, ReadCount: 1, Payload: payload})
	}
	if read := used + len(res.Stale); read < n {
		w.peekForeign(ns)
		return read, nil
	}
	return n, nil
}

// peekEvery is how often, at most, an engine whose queue has nothing left for it looks at the
// messages it leaves to engines with other handlers.
const peekEvery = time.Second

// peekForeign notes, as declined (Health), the steps of ns whose messages name a handler this
// engine lacks: its claims never read them. It looks at most every peekEvery per namespace.
func (w *workers) peekForeign(ns string) {
	if w.peeker == nil {
		return
	}
	w.peekMu.Lock()
	if w.lastPeek == nil {
		w.lastPeek = map[string]time.Time{}
	}
	if time.Since(w.lastPeek[ns]) < peekEvery {
		w.peekMu.Unlock()
		return
	}
	w.lastPeek[ns] = time.Now()
	w.peekMu.Unlock()
	e := w.e
	msgs, err := w.peeker.PeekForeign(w.dbctx, ns, e.callables(), 100)
	if err != nil {
		e.log.Error(err, "look at the steps waiting for other engines' handlers", "namespace", ns)
		return
	}
	for _, m := range msgs {
		if e.waiting.Note(ns, m.TaskID, m.StepID, m.Handler, WaitNoHandler, m.EnqueuedAt) {
			e.log.Info("a step waits for an engine with its handler (see Engine.Health)", "namespace", ns, "task", m.TaskID,
				"step", m.StepID, "handler", m.Handler)
		}
	}
}

func (w *workers) fetchLoop(ctx context.Context, ns string) {
	wake := w.lane(ns).wake
	for {
		select {
		case <-ctx.Done():
			return
		case <-wake:
		}
		for ctx.Err() == nil {
			n := w.acquire(ctx, ns)
			if n == 0 {
				return
			}
			w.yieldAfterDecline(ctx, ns) // decline.go
			// Limits per template or per context key claim one step at a time (limit.go).
			if w.claimer != nil && !w.e.globalLimit(ns).fine {
				allowed, lock := w.limitGate(ctx, ns, n) // limit.go
				if allowed == 0 {
					break
				}
				n = allowed
				read, err := w.claimFromQueue(ctx, ns, n, lock) // lets the lock go
				if err != nil {
					w.release(ns, n)
					if ctx.Err() != nil {
						return
					}
					w.e.log.Error(err, "claim from the queue", "namespace", ns)
					select {
					case <-ctx.Done():
						return
					case <-time.After(time.Second):
					}
					w.signal(ns)
					break
				}
				if read < n {
					w.lane(ns).drained.Store(true) // the queue held less than the free slots
					break
				}
				continue
			}
			msgs, err := w.e.queue.Read(ctx, ns, n, w.e.cfg.Lease)
			if err != nil {
				w.release(ns, n)
				if ctx.Err() != nil {
					return
				}
				w.e.log.Error(err, "read queue", "namespace", ns)
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Second):
				}
				w.signal(ns) // try again even if no wake-up comes
				break
			}
			w.release(ns, n-len(msgs))
			for _, m := range msgs {
				w.inflight.Add(1)
				go w.execute(ns, m)
			}
			if len(msgs) < n {
				break
			}
		}
	}
}

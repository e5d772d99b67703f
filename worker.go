package tasker

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tasker-systems/tasker/internal/maintenance"
	"github.com/tasker-systems/tasker/queue"
	"github.com/tasker-systems/tasker/store"
)

// errStepTimeout is the cause of a handler context that reached the step's timeout.
var errStepTimeout = errors.New("step timed out")

// abandonGrace is how long a handler that ignores its cancelled context is waited for before its
// attempt is settled without it.
const abandonGrace = 2 * time.Second

// RunWorkers takes steps from the queue and runs their handlers until ctx ends, then drains:
// in-flight handlers get Config.ShutdownTimeout to finish, after which their contexts are
// cancelled and their steps go back to the queue without losing the attempt. It returns nil after
// a clean stop, or an error when it cannot start (for example a database that is not migrated).
// Only one RunWorkers per engine may run at a time.
func (e *Engine) RunWorkers(ctx context.Context) error {
	if !e.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	defer e.running.Store(false)
	if err := e.checkSchema(ctx); err != nil {
		if ctx.Err() != nil {
			return nil // stopped before it started
		}
		return err
	}
	// Bring the database's template registry up to date with this engine's definitions.
	for _, r := range e.registeredTemplates() {
		if err := e.store.RegisterTemplate(ctx, *r.registryParams()); err != nil {
			if ctx.Err() != nil {
				return nil // stopped before it started
			}
			return err
		}
		r.persisted.Store(true)
	}
	nss := e.namespaces()
	if len(nss) == 0 {
		return errors.New("tasker: RunWorkers: no namespace to serve: register a template or set Config.Namespaces")
	}
	w := newWorkers(e, nss)
	return w.run(ctx)
}

type workers struct {
	e       *Engine
	nss     []string
	slots   chan struct{}
	nsSlots map[string]chan struct{}
	wake    map[string]chan struct{}

	handlerBase context.Context
	hardStop    context.CancelCauseFunc
	dbctx       context.Context // for bookkeeping that must finish even while stopping
	inflight    sync.WaitGroup

	leading  atomic.Bool // this engine holds the maintenance leadership
	stopping atomic.Bool // RunWorkers' context has ended: no new work is taken on

	heldMu sync.Mutex
	holds  map[string]hold // namespaces whose re-publishing the sweeper holds back

	timersMu sync.Mutex
	timers   map[*time.Timer]struct{}
	stopped  bool
}

func newWorkers(e *Engine, nss []string) *workers {
	w := &workers{
		e: e, nss: nss,
		slots:   make(chan struct{}, e.cfg.Concurrency),
		nsSlots: map[string]chan struct{}{},
		wake:    map[string]chan struct{}{},
		timers:  map[*time.Timer]struct{}{},

		holds: map[string]hold{},
	}
	for _, ns := range nss {
		w.wake[ns] = make(chan struct{}, 1)
		if n := e.cfg.NamespaceConcurrency[ns]; n > 0 {
			w.nsSlots[ns] = make(chan struct{}, n)
		}
	}
	return w
}

func (w *workers) signal(ns string) {
	if ch, ok := w.wake[ns]; ok {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (w *workers) run(ctx context.Context) error {
	e := w.e
	w.dbctx = context.WithoutCancel(ctx)
	w.handlerBase, w.hardStop = context.WithCancelCause(context.WithoutCancel(ctx))
	defer w.hardStop(nil)

	listenCtx, stopListen := context.WithCancel(w.dbctx)
	var bg sync.WaitGroup
	bg.Add(1)
	go func() {
		defer bg.Done()
		if err := e.queue.Listen(listenCtx, w.nss, w.signal); err != nil {
			e.log.Error(err, "queue listener stopped")
		}
	}()
	if !e.cfg.DisableMaintenance {
		bg.Add(1)
		go func() {
			defer bg.Done()
			el := maintenance.Elector{Store: e.store, Name: "maintenance", ID: e.cfg.WorkerID, TTL: e.cfg.LeaderTTL, Log: e.log}
			el.Run(ctx, func(lctx context.Context) {
				w.leading.Store(true)
				defer w.leading.Store(false)
				if _, ok := e.queue.(queue.Publisher); !ok {
					maintenance.Every(lctx, e.cfg.RescueInterval, w.rescue)
					return
				}
				var wg sync.WaitGroup
				wg.Add(1)
				go func() {
					defer wg.Done()
					maintenance.Every(lctx, e.cfg.RepublishAfter/3, w.sweep)
				}()

				maintenance.Every(lctx, e.cfg.RescueInterval, w.rescue)
				wg.Wait()
			})
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
	var fetchers sync.WaitGroup
	for _, ns := range w.nss {
		w.signal(ns) // look once at start-up
		fetchers.Add(1)
		go func() {
			defer fetchers.Done()
			w.fetchLoop(ctx, ns)
		}()
	}
	e.log.Info("workers started", "worker_id", e.cfg.WorkerID, "namespaces", w.nss, "concurrency", e.cfg.Concurrency)

	<-ctx.Done()
	w.stopping.Store(true)
	// No handler starts once the fetch loops are gone; only then may the drain wait for the
	// in-flight ones.
	fetchers.Wait()
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
			e.log.Info("some handlers ignore their cancelled context; abandoning them")
		}
	}
	stopListen()
	bg.Wait()
	w.timersMu.Lock()
	w.stopped = true
	for t := range w.timers {
		t.Stop()
	}
	w.timersMu.Unlock()
	e.log.Info("workers stopped", "worker_id", e.cfg.WorkerID)
	return nil
}

// wakeAfter wakes a namespace's fetch loop after d (a retry's backoff), since delayed messages
// come with no notification.
func (w *workers) wakeAfter(ns string, d time.Duration) {
	w.timersMu.Lock()
	defer w.timersMu.Unlock()
	if w.stopped {
		return
	}
	var t *time.Timer
	t = time.AfterFunc(d+5*time.Millisecond, func() {
		w.timersMu.Lock()
		delete(w.timers, t)
		w.timersMu.Unlock()
		w.signal(ns)
	})
	w.timers[t] = struct{}{}
}

// acquire blocks until at least one handler slot is free for ns and takes up to ReadBatchDefault.
func (w *workers) acquire(ctx context.Context, ns string) int {
	nsCh := w.nsSlots[ns]
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
	for n < ReadBatchDefault {
		if nsCh != nil {
			select {
			case nsCh <- struct{}{}:
			default:
				return n
			}
		}
		select {
		case w.slots <- struct{}{}:
			n++
		default:
			if nsCh != nil {
				<-nsCh
			}
			return n
		}
	}
	return n
}

func (w *workers) release(ns string, n int) {
	for i := 0; i < n; i++ {
		<-w.slots
		if ch := w.nsSlots[ns]; ch != nil {
			<-ch
		}
	}
}

func (w *workers) fetchLoop(ctx context.Context, ns string) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.wake[ns]:
		}
		for ctx.Err() == nil {
			n := w.acquire(ctx, ns)
			if n == 0 {
				return
			}
			w.yieldAfterDecline(ctx, ns) // decline.go
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

package tasker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/tasker/internal/maintenance"
	"github.com/tasker-systems/tasker/queue"
	"github.com/tasker-systems/tasker/store"
)

// stepMessage is the payload of a queue message: which step to run.
type stepMessage struct {
	TaskID uuid.UUID `json:"task_id"`
	StepID uuid.UUID `json:"step_id"`
	// Retry marks the timer message of a step waiting for its backoff.
	Retry bool `json:"retry,omitempty"`
	// TaskName, Version and Step name the step in its template, so that the worker knows its
	// ancestors before it claims it; empty when the sender did not know them.
	TaskName string `json:"task,omitempty"`
	Version  string `json:"version,omitempty"`
	Step     string `json:"step,omitempty"`
}

// enqueuer sends step messages on the engine's queue, one queue per namespace. With a queue that
// lives outside the database (queue.Publisher) it collects the messages of one store call, which
// the caller publishes with flush once the call has committed.
type enqueuer struct {
	e       *Engine
	pending *[]pendingSend
}

type pendingSend struct {
	ns    string
	step  store.StepRef
	delay time.Duration
}

// enqueuerFor returns the enqueuer for one store call.
func (e *Engine) enqueuerFor() enqueuer {
	if _, ok := e.queue.(queue.Publisher); ok {
		return enqueuer{e: e, pending: new([]pendingSend)}
	}
	return enqueuer{e: e}
}

// flush publishes what a committed store call enqueued (once per step: a store call that ran its
// transaction again enqueued it again). A failure is logged: the sweeper re-publishes from
// database state.
func (q enqueuer) flush(ctx context.Context) {
	if q.pending == nil || len(*q.pending) == 0 {
		return
	}
	pub := q.e.queue.(queue.Publisher)
	seen := map[uuid.UUID]bool{}
	for _, p := range *q.pending {
		if seen[p.step.StepID] {
			continue
		}
		seen[p.step.StepID] = true
		payloads, err := stepPayloads([]store.StepRef{p.step})
		if err == nil {
			err = pub.Publish(ctx, p.ns, payloads, p.delay)
		}
		if err != nil {
			q.e.log.Error(err, "publish step message; the sweeper will publish it again", "step", p.step.StepID)
		}
	}
	*q.pending = (*q.pending)[:0]
}

func (q enqueuer) EnqueueTx(ctx context.Context, tx pgx.Tx, ns string, steps []store.StepRef, delay time.Duration) error {
	if q.pending != nil {
		for _, st := range steps {
			*q.pending = append(*q.pending, pendingSend{ns: ns, step: st, delay: delay})
		}
		return nil
	}
	payloads, err := stepPayloads(steps)
	if err != nil {
		return err
	}
	return q.e.queue.SendTx(ctx, tx, ns, payloads, delay)
}

// EnqueueBatch implements store.BatchEnqueuer when the queue can join a batch.
func (q enqueuer) EnqueueBatch(b *pgx.Batch, ns string, steps []store.StepRef, delay time.Duration) (bool, error) {
	bs, ok := q.e.queue.(queue.BatchSender)
	if !ok {
		return false, nil
	}
	payloads, err := stepPayloads(steps)
	if err != nil {
		return true, err
	}
	return true, bs.QueueSend(b, ns, payloads, delay)
}

func stepPayloads(steps []store.StepRef) ([][]byte, error) {
	payloads := make([][]byte, len(steps))
	for i, s := range steps {
		b, err := json.Marshal(stepMessage{TaskID: s.TaskID, StepID: s.StepID, Retry: s.Retry, TaskName: s.TaskName, Version: s.Version, Step: s.Name})
		if err != nil {
			return nil, err
		}
		payloads[i] = b
	}
	return payloads, nil
}

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
		return err
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
	for _, ns := range w.nss {
		w.signal(ns) // look once at start-up
		bg.Add(1)
		go func() {
			defer bg.Done()
			w.fetchLoop(ctx, ns)
		}()
	}
	e.log.Info("workers started", "worker_id", e.cfg.WorkerID, "namespaces", w.nss, "concurrency", e.cfg.Concurrency)

	<-ctx.Done()
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

// execute runs one delivered message: claim the step, run the handler, record the outcome.
func (w *workers) execute(ns string, m queue.Message) {
	defer w.inflight.Done()
	defer w.release(ns, 1)
	e := w.e
	ack := func() {
		if err := e.queue.Ack(w.dbctx, ns, m.ID); err != nil {
			e.log.Error(err, "ack message", "namespace", ns, "message", m.ID)
		}
	}
	var msg stepMessage
	if err := json.Unmarshal(m.Payload, &msg); err != nil || msg.StepID == uuid.Nil {
		e.log.Error(err, "dropping malformed queue message", "namespace", ns, "message", m.ID)
		ack()
		return
	}
	if msg.Retry {
		err := e.store.PromoteRetry(w.dbctx, store.PromoteRetryParams{StepID: msg.StepID})
		switch {
		case errors.Is(err, store.ErrNotDue):
			if err := e.queue.RetryLater(w.dbctx, ns, m.ID, 100*time.Millisecond); err != nil && !errors.Is(err, queue.ErrNotFound) {
				e.log.Error(err, "postpone early retry message", "step", msg.StepID)
			}
			return
		case errors.Is(err, store.ErrNotFound):
			ack()
			return
		case err != nil && !errors.Is(err, store.ErrConflict):
			e.log.Error(err, "promote retry", "step", msg.StepID)
			return // the message comes back after its visibility timeout
		}
		// Promoted now, or already promoted by an earlier delivery whose worker died before its
		// claim: either way the claim below decides (and drops the message if the step moved on).
	}
	params := store.ClaimStepParams{StepID: msg.StepID, WorkerID: e.cfg.WorkerID, Lease: e.cfg.Lease}
	if msg.TaskName != "" && msg.Step != "" {
		if r, err := e.template(ns, msg.TaskName, msg.Version); err == nil {
			if anc, ok := r.ancestors[msg.Step]; ok && !r.dynamic[msg.Step] {
				params.Ancestors = append([]string{}, anc...) // non-nil, even when empty
			}
		}
	}
	claim, err := e.store.ClaimStep(w.dbctx, params)
	if err != nil {
		if errors.Is(err, store.ErrConflict) {
			ack() // a duplicate delivery, or the step was cancelled
			return
		}
		e.log.Error(err, "claim step", "step", msg.StepID)
		return
	}
	w.attempt(ns, m, claim)
}

// handlerOutcome is what a handler call came to.
type handlerOutcome struct {
	result    any
	err       error
	panicked  bool
	stack     string
	abandoned bool
}

func (w *workers) attempt(ns string, m queue.Message, c *store.ClaimedStep) {
	e := w.e
	st, task := &c.Step, &c.Task
	start := time.Now()
	hctx, cancel := context.WithCancelCause(w.handlerBase)
	defer cancel(nil)
	e.runs.add(task.ID, st.ID, cancel)
	defer e.runs.remove(task.ID, st.ID)
	tctx, tcancel := context.WithTimeoutCause(hctx, st.Timeout, errStepTimeout)
	defer tcancel()

	stopBeat := w.heartbeat(ns, m, st, cancel)
	out := w.call(tctx, st, task, c.Results)
	stopBeat()

	cause := context.Cause(tctx)
	switch {
	case (out.err != nil || out.abandoned) && errors.Is(cause, ErrShutdown):
		w.giveBack(ns, m, st)
		return
	case errors.Is(cause, ErrTaskCancelled) && (out.err != nil || out.abandoned):
		e.log.V(1).Info("step cancelled", "task", task.ID, "step", st.Name, "attempt", st.Attempts)
		if err := e.queue.Ack(w.dbctx, ns, m.ID); err != nil {
			e.log.Error(err, "ack message", "message", m.ID)
		}
		return
	}
	p := w.classify(st, out, cause)
	w.applyStepType(st, task, &p)
	p.TaskID, p.StepID, p.WorkerID, p.Attempt, p.Namespace = task.ID, st.ID, e.cfg.WorkerID, st.Attempts, task.Namespace
	enq := e.enqueuerFor()
	p.Enqueuer = enq
	res, err := w.record(p)
	if err == nil {
		enq.flush(w.dbctx)
	}
	// The ack follows the commit, off the next step's critical path: if this process dies in
	// between, the message comes back and its claim finds the step already moved on.
	if err == nil {
		if aerr := e.queue.Ack(w.dbctx, ns, m.ID); aerr != nil {
			e.log.Error(aerr, "ack message", "message", m.ID)
		}
	}
	outcome := map[store.OutcomeKind]string{store.OutcomeSuccess: "complete", store.OutcomeRetry: "retry", store.OutcomePermanent: "error"}[p.Kind]
	if err != nil {
		if errors.Is(err, store.ErrConflict) {
			e.log.Info("step moved on while its handler ran; outcome dropped", "task", task.ID, "step", st.Name, "attempt", st.Attempts, "outcome", outcome)
			if err := e.queue.Ack(w.dbctx, ns, m.ID); err != nil {
				e.log.Error(err, "ack message", "message", m.ID)
			}
			return
		}
		e.log.Error(err, "record step outcome; the lease rescuer will retry the step", "task", task.ID, "step", st.Name)
		return
	}
	kv := []any{"task", task.ID, "step", st.Name, "attempt", st.Attempts, "outcome", outcome, "duration", time.Since(start), "task_state", res.TaskState}
	switch p.Kind {
	case store.OutcomeSuccess:
		e.log.V(1).Info("step attempt", kv...)
	case store.OutcomeRetry:
		e.log.Info("step attempt failed; will retry", append(kv, "retry_in", p.RetryDelay, "error", errorMessage(p.Error))...)
		w.wakeAfter(ns, p.RetryDelay)
	case store.OutcomePermanent:
		e.log.Error(errors.New(errorMessage(p.Error)), "step failed for good", kv...)
	}
	if res.Settled {
		e.waiters.notify(task.ID)
	}
}

func errorMessage(raw json.RawMessage) string {
	var se StepFailure
	_ = json.Unmarshal(raw, &se)
	return se.Message
}

// record commits an outcome, trying again on transient database errors.
func (w *workers) record(p store.OutcomeParams) (*store.OutcomeResult, error) {
	delay := 100 * time.Millisecond
	for i := 0; ; i++ {
		res, err := w.e.store.RecordOutcome(w.dbctx, p)
		if err == nil || errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) || i == 5 {
			return res, err
		}
		w.e.log.Error(err, "record outcome; trying again", "step", p.StepID, "in", delay)
		time.Sleep(delay)
		delay = min(delay*2, 3*time.Second)
	}
}

// call runs the handler, recovering a panic; a handler that ignores its cancelled context is
// abandoned after abandonGrace.
func (w *workers) call(ctx context.Context, st *store.Step, task *store.Task, results map[string]json.RawMessage) handlerOutcome {
	if isNoOp(st.Inputs) {
		return handlerOutcome{result: map[string]any{"no_op": true}}
	}
	h, ok := w.e.handler(st.Handler)
	if !ok {
		return handlerOutcome{err: &noHandlerError{name: st.Handler}}
	}
	tmpl, _ := w.e.template(task.Namespace, task.Name, task.Version)
	var config map[string]any
	var method string
	if tmpl != nil {
		if ts, ok := tmpl.t.Step(st.TemplateStep); ok {
			config = cloneMap(ts.Handler.Initialization)
			method = ts.Handler.Method
		}
	}
	// As in Tasker Core, a batch worker finds its cursor in its initialization too.
	if st.BatchGroup != nil && len(st.Inputs) > 0 {
		var extra map[string]any
		if json.Unmarshal(st.Inputs, &extra) == nil {
			if config == nil {
				config = map[string]any{}
			}
			for k, v := range extra {
				config[k] = v
			}
		}
	}
	s := &Step{TaskID: task.ID, ID: st.ID, Name: st.Name, Namespace: task.Namespace, TaskName: task.Name,
		Version: task.Version, Attempt: st.Attempts, MaxAttempts: st.MaxAttempts, CorrelationID: task.CorrelationID,
		context: task.Context, method: method, config: config, results: results, inputs: st.Inputs,
		checkpoint: st.Checkpoint, save: func(ctx context.Context, raw json.RawMessage) error {
			return w.e.store.SaveCheckpoint(ctx, store.CheckpointParams{StepID: st.ID, WorkerID: w.e.cfg.WorkerID, Attempt: st.Attempts, Checkpoint: raw})
		}}
	done := make(chan handlerOutcome, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- handlerOutcome{err: fmt.Errorf("panic: %v", r), panicked: true, stack: string(debug.Stack())}
			}
		}()
		res, err := h.Handle(ctx, s)
		done <- handlerOutcome{result: res, err: err}
	}()
	select {
	case o := <-done:
		return o
	case <-ctx.Done():
		select {
		case o := <-done:
			return o
		case <-time.After(abandonGrace):
			w.e.log.Info("handler ignores its cancelled context; abandoning it", "step", st.Name, "handler", st.Handler)
			return handlerOutcome{abandoned: true, err: context.Cause(ctx)}
		}
	}
}

type noHandlerError struct{ name string }

func (e *noHandlerError) Error() string {
	return fmt.Sprintf("no handler registered for %q: call Engine.Handle(%q, ...)", e.name, e.name)
}

// classify turns a handler outcome into the outcome to record.
func (w *workers) classify(st *store.Step, out handlerOutcome, cause error) store.OutcomeParams {
	fail := func(kind store.OutcomeKind, se StepFailure) store.OutcomeParams {
		se.Attempt = st.Attempts
		raw, _ := json.Marshal(se)
		return store.OutcomeParams{Kind: kind, Error: raw}
	}
	var nh *noHandlerError
	switch {
	case out.panicked:
		return fail(store.OutcomePermanent, StepFailure{Message: out.err.Error(), Kind: "panic", Stack: out.stack})
	case errors.As(out.err, &nh):
		return fail(store.OutcomePermanent, StepFailure{Message: nh.Error(), Kind: "no_handler"})
	case out.err == nil && !out.abandoned:
		raw, err := json.Marshal(out.result)
		if err != nil {
			return fail(store.OutcomePermanent, StepFailure{Message: "result is not JSON-encodable: " + err.Error(), Kind: "invalid_result"})
		}
		if len(raw) > w.e.cfg.MaxPayloadBytes {
			return fail(store.OutcomePermanent, StepFailure{Message: fmt.Sprintf("result of %d bytes is over the %d-byte limit", len(raw), w.e.cfg.MaxPayloadBytes), Kind: "invalid_result"})
		}
		return store.OutcomeParams{Kind: store.OutcomeSuccess, Result: raw}
	}
	var perm *PermanentError
	if errors.As(out.err, &perm) {
		return fail(store.OutcomePermanent, StepFailure{Message: perm.Err.Error(), Kind: "permanent"})
	}
	se := StepFailure{Message: out.err.Error(), Kind: "retryable"}
	if errors.Is(cause, errStepTimeout) {
		se = StepFailure{Message: fmt.Sprintf("timed out after %s: %v", st.Timeout, out.err), Kind: "timeout"}
	}
	if !st.Retryable || st.Attempts >= st.MaxAttempts {
		se.Message = fmt.Sprintf("%s (attempt %d of %d, no retry left)", se.Message, st.Attempts, st.MaxAttempts)
		if se.Kind == "retryable" {
			se.Kind = "exhausted"
		}
		return fail(store.OutcomePermanent, se)
	}
	p := fail(store.OutcomeRetry, se)
	var ra *RetryAfterError
	if errors.As(out.err, &ra) {
		p.RetryDelay = ra.Delay
	} else {
		p.RetryDelay = backoffDelay(st.Backoff, st.BackoffBase, st.MaxBackoff, st.Attempts)
	}
	return p
}

// heartbeat renews the step's lease and its message's visibility every third of the lease, and
// cancels the handler when the step is no longer this worker's (cancelled elsewhere, rescued).
func (w *workers) heartbeat(ns string, m queue.Message, st *store.Step, cancel context.CancelCauseFunc) (stop func()) {
	e := w.e
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(e.cfg.Lease / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			state, err := e.store.Heartbeat(w.dbctx, store.HeartbeatParams{StepID: st.ID, WorkerID: e.cfg.WorkerID, Lease: e.cfg.Lease})
			if errors.Is(err, store.ErrConflict) {
				e.log.Info("step is no longer ours; cancelling its handler", "step", st.Name, "state", state)
				cancel(ErrTaskCancelled)
				return
			}
			if err != nil {
				e.log.Error(err, "heartbeat", "step", st.Name)
				continue
			}
			if err := e.queue.Extend(w.dbctx, ns, m.ID, e.cfg.Lease); err != nil {
				e.log.Error(err, "extend message visibility", "step", st.Name)
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// giveBack returns a step cut off by shutdown to the queue without spending its attempt.
func (w *workers) giveBack(ns string, m queue.Message, st *store.Step) {
	e := w.e
	err := e.store.ReleaseStep(w.dbctx, store.ReleaseStepParams{StepID: st.ID, WorkerID: e.cfg.WorkerID, Attempt: st.Attempts, Reason: "shutdown"})
	if err != nil {
		e.log.Error(err, "give step back on shutdown", "step", st.Name)
		return
	}
	if err := e.queue.RetryLater(w.dbctx, ns, m.ID, 0); err != nil && !errors.Is(err, queue.ErrNotFound) {
		e.log.Error(err, "make message visible again", "step", st.Name)
	}
	e.log.Info("step given back on shutdown", "step", st.Name, "attempt", st.Attempts)
}

// rescue settles the attempts of steps whose worker stopped renewing the lease (it crashed, was
// killed, or lost the database): each counts as a failed attempt, recorded with the vanished
// worker's ID, and is retried under the step's policy or fails for good when none is left.
func (w *workers) rescue(ctx context.Context) {
	e := w.e
	expired, err := e.store.ExpiredSteps(ctx, store.ExpiredStepsParams{Limit: 100})
	if err != nil {
		if ctx.Err() == nil {
			e.log.Error(err, "look for expired leases")
		}
		return
	}
	for i := range expired {
		ex := &expired[i]
		st := &ex.Step
		msg := fmt.Sprintf("worker %s stopped renewing its lease (crashed, killed or cut off)", st.LeaseOwner)
		p := w.classify(st, handlerOutcome{err: errors.New(msg)}, nil)
		if p.Kind == store.OutcomePermanent || p.Kind == store.OutcomeRetry {
			var se StepFailure
			_ = json.Unmarshal(p.Error, &se)
			se.Kind = "lease_expired"
			p.Error, _ = json.Marshal(se)
		}
		p.TaskID, p.StepID, p.WorkerID, p.Attempt, p.Namespace = st.TaskID, st.ID, st.LeaseOwner, st.Attempts, ex.Namespace
		enq := e.enqueuerFor()
		p.Enqueuer, p.LeaseExpired = enq, true
		res, err := e.store.RecordOutcome(ctx, p)
		if err == nil {
			enq.flush(ctx)
		}
		if err != nil {
			if !errors.Is(err, store.ErrConflict) && ctx.Err() == nil {
				e.log.Error(err, "rescue step", "step", st.Name, "task", st.TaskID)
			}
			continue
		}
		e.log.Info("rescued step whose lease expired", "task", st.TaskID, "step", st.Name, "attempt", st.Attempts,
			"worker", st.LeaseOwner, "outcome", map[store.OutcomeKind]string{store.OutcomeRetry: "retry", store.OutcomePermanent: "error"}[p.Kind])
		if p.Kind == store.OutcomeRetry {
			w.wakeAfter(ex.Namespace, p.RetryDelay)
		}
		if res.Settled {
			e.waiters.notify(st.TaskID)
		}
	}
}

func isNoOp(inputs json.RawMessage) bool {
	if len(inputs) == 0 {
		return false
	}
	var in struct {
		IsNoOp bool `json:"is_no_op"`
	}
	return json.Unmarshal(inputs, &in) == nil && in.IsNoOp
}

// applyStepType adds what a step's type asks of its outcome: the steps a decision or a batchable
// step creates, and a batch worker's failure strategy.
func (w *workers) applyStepType(st *store.Step, task *store.Task, p *store.OutcomeParams) {
	r, err := w.e.template(task.Namespace, task.Name, task.Version)
	if err != nil {
		return
	}
	if p.Kind == store.OutcomeSuccess {
		plan, err := w.e.spawnPlan(w.dbctx, r, st, p.Result)
		var inv *invalidOutcomeError
		switch {
		case errors.As(err, &inv):
			raw, _ := json.Marshal(StepFailure{Message: inv.msg, Kind: "invalid_outcome", Attempt: st.Attempts})
			*p = store.OutcomeParams{Kind: store.OutcomePermanent, Error: raw}
		case err != nil:
			raw, _ := json.Marshal(StepFailure{Message: "plan the steps to create: " + err.Error(), Kind: "retryable", Attempt: st.Attempts})
			*p = store.OutcomeParams{Kind: store.OutcomeRetry, Error: raw, RetryDelay: time.Second}
		default:
			p.Spawn = plan
		}
		return
	}
	if p.Kind != store.OutcomePermanent || st.BatchGroup == nil {
		return
	}
	switch BatchFailureStrategy(st.FailureStrategy) {
	case BatchContinueOnFailure, "":
		// The worker completes with its failure as its result, so the convergence step still runs
		// and sees it; the error stays in the audit trail.
		var se StepFailure
		_ = json.Unmarshal(p.Error, &se)
		raw, _ := json.Marshal(map[string]any{"failed": true, "error": se})
		p.Kind, p.Result = store.OutcomeSuccess, raw
	case BatchIsolate:
		p.Isolated = true
	}
}

// sweep publishes again the messages of steps that waited enqueued for longer than
// Config.RepublishAfter: with a queue outside the database, a message can be lost between a
// commit and its publish (a crash, a broker outage). A duplicate is dropped at its claim.
func (w *workers) sweep(ctx context.Context) {
	e := w.e
	pub, ok := e.queue.(queue.Publisher)
	if !ok {
		return
	}
	stale, err := e.store.StaleSteps(ctx, store.StaleStepsParams{OlderThan: e.cfg.RepublishAfter, Limit: 500})
	if err != nil {
		if ctx.Err() == nil {
			e.log.Error(err, "look for stale steps")
		}
		return
	}
	for _, st := range stale {
		payloads, err := stepPayloads([]store.StepRef{st.Ref})
		if err == nil {
			err = pub.Publish(ctx, st.Namespace, payloads, 0)
		}
		if err != nil {
			if ctx.Err() == nil {
				e.log.Error(err, "re-publish step message", "step", st.Ref.StepID)
			}
			continue
		}
		e.log.Info("re-published the message of a step that waited too long", "step", st.Ref.StepID, "task", st.Ref.TaskID)
	}
}

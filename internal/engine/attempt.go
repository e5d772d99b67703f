package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/tasker/internal/clock"
	"github.com/tasker-systems/tasker/internal/jsonsafe"
	"github.com/tasker-systems/tasker/queue"
	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

// execute runs one delivered message: claim the step, run the handler, record the outcome.
func (w *workers) execute(ns string, m queue.Message) {
	defer w.inflight.Done()
	// The slot is given back once the handler has returned and its outcome is submitted (the
	// completer), or at the end.
	slot := sync.OnceFunc(func() { w.release(ns, 1) })
	defer slot()
	e := w.e
	ack := func() { w.ack(ns, m.ID) }
	var msg stepMessage
	if err := json.Unmarshal(m.Payload, &msg); err != nil || msg.StepID == uuid.Nil {
		e.log.Error(err, "dropping malformed queue message", "namespace", ns, "message", m.ID)
		ack()
		return
	}
	// A step this engine cannot run is left, unclaimed, to an engine that can (decline.go);
	// a retry's timer message too, before its step is promoted.
	j := e.claimVerdict(ns, msg)
	if j.verdict == verdictDecline {
		w.decline(ns, m, msg, j)
		return
	}
	if msg.Retry {
		err := e.store.PromoteRetry(w.dbctx, store.PromoteRetryParams{StepID: msg.StepID})
		switch {
		case errors.Is(err, store.ErrNotDue):
			if err := e.queue.RetryLater(w.dbctx, ns, m.ID, 100*time.Millisecond); err != nil && !errors.Is(err, queue.ErrNotFound) {
				e.log.Error(err, "postpone early retry message", "task", msg.TaskID, "step_id", msg.StepID, "step", msg.Step)
			}
			return
		case errors.Is(err, store.ErrNotFound):
			ack()
			return
		case err != nil && !errors.Is(err, store.ErrConflict):
			e.log.Error(err, "promote retry", "task", msg.TaskID, "step_id", msg.StepID, "step", msg.Step)
			return // the message comes back after its visibility timeout
		}
		// Promoted now, or already promoted by an earlier delivery whose worker died before its
		// claim: either way the claim below decides (and drops the message if the step moved on).
	}
	params := store.ClaimStepParams{StepID: msg.StepID, WorkerID: e.cfg.WorkerID, Lease: e.cfg.Lease,
		Ancestors: e.templateAncestors(ns, store.StepRef{TaskName: msg.TaskName, Version: msg.Version, Name: msg.Step})}
	lock, ok := w.limitOne(ns, m, msg.TaskName, msg.TaskID) // limit.go
	if !ok {
		return
	}
	cl := claimTimes{start: time.Now()}
	if !msg.Retry {
		cl.sent = m.EnqueuedAt // a retry's message was sent at the failure, its delay ahead
	}
	claim, err := e.store.ClaimStep(lock.Within(w.dbctx), params)
	cl.end = time.Now()
	lock.Unlock()
	if err != nil {
		if errors.Is(err, store.ErrConflict) {
			ack() // a duplicate delivery, or the step was cancelled
			return
		}
		e.log.Error(err, "claim step", "task", msg.TaskID, "step_id", msg.StepID, "step", msg.Step)
		return
	}
	w.runClaimed(ns, m, claim, cl, slot)
}

// executeClaimed runs a step that the fetch loop claimed together with its message
// (store.QueueClaimer); cl is when that claim ran.
func (w *workers) executeClaimed(ns string, c store.ClaimedMessage, cl claimTimes) {
	defer w.inflight.Done()
	slot := sync.OnceFunc(func() { w.release(ns, 1) })
	defer slot()
	m := queue.Message{ID: c.MessageID, Queue: ns, ReadCount: c.ReadCount, EnqueuedAt: c.EnqueuedAt}
	cl.sent = c.EnqueuedAt
	w.runClaimed(ns, m, &c.ClaimedStep, cl, slot)
}

// runClaimed runs a claimed step, and then each step its outcome hands over to this worker. Each
// claimed step is judged again from what the claim returned, which is complete where the message
// was not (and covers a hand-over as well).
func (w *workers) runClaimed(ns string, m queue.Message, claim *store.ClaimedStep, cl claimTimes, slot func()) {
	for claim != nil {
		if j := w.e.claimedVerdict(claim); j.verdict == verdictDecline {
			w.releaseClaimed(ns, m, claim, j)
			return
		}
		m, claim, cl = w.attempt(ns, m, claim, cl, slot)
	}
}

// ack acknowledges a message. A message the queue no longer has (queue.ErrNotFound: RabbitMQ voids
// the deliveries of a channel lost in an outage, and delivers them again) is no error: its next
// delivery is dropped at the claim.
func (w *workers) ack(ns string, id int64) {
	err := w.e.queue.Ack(w.dbctx, ns, id)
	switch {
	case err == nil:
	case errors.Is(err, queue.ErrNotFound):
		w.e.log.V(1).Info("ack of a message the queue no longer holds; a redelivery will be dropped", "namespace", ns, "message", id)
	default:
		w.e.log.Error(err, "ack message", "namespace", ns, "message", id)
	}
}

// releaseHandoff gives back to the queue, without spending its attempt, a step that the outcome of
// step `from` handed to this worker (ClaimNext) when this worker cannot tell whether that outcome
// committed. The release sends the step a message of its own: the held one may be gone, since an
// outcome call that outlived its lease let it surface while the step was in progress, and a worker
// that read it then dropped it at the claim; if it is not gone, it is a duplicate, dropped at its
// claim. If the step cannot be found or released now, the lease rescuer takes it over as after a
// crash.
func (w *workers) releaseHandoff(ns string, taskID, from uuid.UUID) {
	e := w.e
	steps, err := e.store.GetSteps(w.dbctx, taskID)
	var trs []store.Transition
	if err == nil {
		trs, err = e.store.Transitions(w.dbctx, taskID)
	}
	if err != nil {
		e.log.Error(err, "look for a step handed over by an outcome whose commit is uncertain; the lease rescuer will take it over", "task", taskID)
		return
	}
	last := map[uuid.UUID]store.Transition{}
	for _, tr := range trs {
		if tr.StepID != uuid.Nil && tr.SortKey >= last[tr.StepID].SortKey {
			last[tr.StepID] = tr
		}
	}
	for _, s := range steps {
		tr, ok := last[s.ID]
		if s.State != statemachine.StepInProgress || s.LeaseOwner != e.cfg.WorkerID || !ok || tr.Event != string(statemachine.StepEventStart) {
			continue
		}
		var meta struct {
			After string `json:"after"`
		}
		if json.Unmarshal(tr.Metadata, &meta) != nil || meta.After != from.String() {
			continue
		}
		enq := e.NewEnqueuer()
		err := e.store.ReleaseStep(w.dbctx, store.ReleaseStepParams{StepID: s.ID, WorkerID: e.cfg.WorkerID, Attempt: s.Attempts,
			Reason: "handed over by an outcome whose commit this worker could not confirm", Namespace: ns, Enqueuer: enq})
		if err != nil {
			e.log.Error(err, "give back a step handed over by an outcome whose commit is uncertain; the lease rescuer will take it over", "step", s.ID)
			continue
		}
		enq.Flush(w.dbctx)
		e.log.Info("gave back a step handed over by an outcome whose commit is uncertain", "task", taskID, "step", s.Name)
	}
}

// templateAncestors names, from the registered template, the steps whose results a step's handler
// sees; nil when the template is unknown here or the step is created at run time (the store then
// walks the task's edges).
func (e *Engine) templateAncestors(ns string, ref store.StepRef) []string {
	if ref.TaskName == "" || ref.Name == "" {
		return nil
	}
	r, err := e.Template(ns, ref.TaskName, ref.Version)
	if err != nil {
		return nil
	}
	if r.Dynamic[ref.Name] {
		return nil
	}
	anc, ok := r.Ancestors(ref.Name)
	if !ok {
		return nil
	}
	return append([]string{}, anc...) // non-nil, even when empty
}

// mayRelease tells whether a step's success may release a dependent, to hand over: false only
// when the task's template, registered here, gives the step no dependents (a leaf, such as the
// only step of a one-step task), whose outcome then takes the batched path.
func (e *Engine) mayRelease(task *store.Task, st *store.Step) bool {
	t, err := e.Template(task.Namespace, task.Name, task.Version)
	if err != nil {
		return true
	}
	i, ok := t.Graph.Index(st.TemplateStep)
	return !ok || len(t.Graph.Children(i)) > 0
}

// canRun tells whether this engine has the handler of a released step, by its template: a step
// whose handler is registered only in other engines is left to the queue.
func (e *Engine) canRun(ns string, ref store.StepRef) bool {
	if ref.TaskName == "" || ref.Name == "" {
		return false
	}
	r, err := e.Template(ns, ref.TaskName, ref.Version)
	if err != nil {
		return false
	}
	st, ok := r.Step(ref.Name)
	if !ok {
		return false
	}
	_, ok = e.handler(st.Callable)
	return ok
}

// attempt runs one claimed step and records its outcome. It returns the next step this worker
// claimed in the same transaction (a step the outcome made ready) and its held message, or nil,
// with when that claim ran (the outcome's commit). cl is when this step's claim ran.
//
// free gives the handler slot back; it is called once the outcome is handed to the completer, so
// that the slot does not sit idle for the commit, and never when the outcome may hand a step over.
func (w *workers) attempt(ns string, m queue.Message, c *store.ClaimedStep, cl claimTimes, free func()) (queue.Message, *store.ClaimedStep, claimTimes) {
	e := w.e
	st, task := &c.Step, &c.Task
	start := time.Now()
	tel := e.tel
	tel.recordHandoff(ns, cl.sent, cl.end)
	span := tel.startAttempt(task, st, cl)
	spanOutcome, spanErr := "", error(nil) // the attempt span's outcome attribute and status
	defer func() { span.end(spanOutcome, spanErr) }()
	hctx, cancel := context.WithCancelCause(w.handlerBase)
	defer cancel(nil)
	e.runs.Add(task.ID, st.ID, st.Attempts, cancel)
	defer e.runs.Remove(task.ID, st.ID, st.Attempts)
	tctx, tcancel := w.stepTimeout(hctx, st.Timeout)
	defer tcancel()

	hold := &leaseClock{renewed: start}
	stopBeat := w.heartbeat(ns, m, task, st, cancel, hold)
	var inTx completedInTx // the handler completed the step in its own transaction (CompleteTx)
	run := span.child(SpanRun)
	out := w.call(handlerContext(tctx, run), st, task, c.Results, &inTx)
	ran := time.Since(start)
	EndSpan(run, out.Err)
	stopBeat()

	cause := context.Cause(tctx)
	switch {
	case out.Failed() && errors.Is(cause, ErrShutdown):
		spanOutcome = "given_back"
		w.giveBack(ns, m, task, st)
		return queue.Message{}, nil, claimTimes{}
	case (errors.Is(cause, ErrTaskCancelled) || errors.Is(cause, ErrLeaseLost)) && out.Failed():
		spanOutcome = "cancelled"
		e.log.V(1).Info("step cancelled", stepKV(task, st, "attempt", st.Attempts)...)
		w.ack(ns, m.ID)
		return queue.Message{}, nil, claimTimes{}
	}
	p := Classify(st, out, cause, e.cfg.MaxPayloadBytes)
	w.applyStepType(st, task, &p)
	p.TaskID, p.StepID, p.WorkerID, p.Attempt, p.Namespace = task.ID, st.ID, e.cfg.WorkerID, st.Attempts, task.Namespace
	p.PriorityCredit = e.PriorityCredit(task.Priority)
	enq := e.NewEnqueuer()
	p.Enqueuer = enq
	if ba, ok := e.queue.(queue.BatchAcker); ok {
		p.AckBatch = func(b *pgx.Batch) error { return ba.QueueAck(b, ns, m.ID) }
	}
	handoff := p.Kind == store.OutcomeSuccess && p.Spawn == nil && !w.stopping.Load() && e.mayRelease(task, st) &&
		e.globalLimit(ns).lim == nil // a hand-over would bypass the limit's lock (limit.go)
	if handoff {
		if _, ok := e.queue.(queue.BatchHolder); ok {
			p.ClaimNext = &store.ClaimNextParams{Lease: e.cfg.Lease, Hold: enq.HoldBatch,
				Accept: e.canRun, Ancestors: e.templateAncestors}
		}
	}
	gone := func() error {
		if c := context.Cause(hctx); errors.Is(c, ErrLeaseLost) || errors.Is(c, ErrTaskCancelled) {
			return c
		}
		return nil
	}
	mayHandOver := false // the outcome went the single-step path with ClaimNext
	var committed claimTimes
	recordOnce := func(p store.OutcomeParams) (*store.OutcomeResult, error) {
		// A lone outcome, with nothing else committing, takes the single-step path: two
		// pipelined round trips that cost a third of a batch's fixed cost, and it may hand a
		// released step over (ClaimNext). One outcome at a time may; under load the others batch
		// in the completer meanwhile, without hand-over: a batch that also claims the steps it
		// releases, for executors that keep their slots through the commit, ran diamond-4 tasks
		// at about half the rate of one that leaves them to the next claim (BENCHMARKS.md).
		if c := w.completer; c != nil {
			if !c.takeSolo() {
				return c.record(ns, m, st, p, hold, gone, free)
			}
			defer c.endSolo()
		}
		mayHandOver = p.ClaimNext != nil
		return w.record(ns, m, task, st, p, hold, gone)
	}
	record := func(p store.OutcomeParams) (*store.OutcomeResult, error) {
		commit := span.child(SpanCommit)
		committed.start = time.Now()
		res, err := recordOnce(p)
		committed.end = time.Now()
		EndSpan(commit, err)
		return res, err
	}
	res, err := record(p)
	if errors.Is(err, store.ErrUnstorable) {
		// The database refuses what the outcome holds for good (what the checks before the
		// transaction missed): the step fails now, with the database's reason, rather than waiting
		// out its lease to be run again.
		e.log.Error(err, "the database cannot store the step's outcome; failing the step", stepKV(task, st)...)
		kind := "invalid_result"
		if p.Spawn != nil {
			kind = "invalid_outcome"
		}
		f := store.OutcomeParams{Kind: store.OutcomePermanent,
			Error: FailureJSON(Failure{Message: "the database cannot store this outcome: " + ErrorText(err), Kind: kind, Attempt: st.Attempts})}
		w.applyStepType(st, task, &f) // a batch worker's failure strategy applies to this failure too
		f.TaskID, f.StepID, f.WorkerID, f.Attempt, f.Namespace = p.TaskID, p.StepID, p.WorkerID, p.Attempt, p.Namespace
		f.Enqueuer, f.AckBatch = p.Enqueuer, p.AckBatch
		p = f
		res, err = record(p)
	}
	if err == nil {
		enq.Flush(w.dbctx)
	}
	// The ack joins the outcome's transaction when the store and the queue allow it; otherwise it
	// follows the commit: if this process dies in between, the message comes back and its claim
	// finds the step already moved on.
	if err == nil && !res.Acked {
		w.ack(ns, m.ID)
	}
	outcome := map[store.OutcomeKind]string{store.OutcomeSuccess: "complete", store.OutcomeRetry: "retry", store.OutcomePermanent: "error"}[p.Kind]
	if err != nil && mayHandOver {
		// The outcome may have committed although this call failed (a reply lost with the
		// connection; a retry then finds the step moved on), handing this worker a step nobody
		// will run: give it back rather than let its lease run out and spend its attempt.
		w.releaseHandoff(task.Namespace, task.ID, st.ID)
	}
	if err != nil {
		if errors.Is(err, store.ErrConflict) && inTx.done.Load() {
			spanOutcome = "complete"
			tel.recordAttempt(ns, "complete", ran)
			e.log.V(1).Info("step completed in its handler's transaction", stepKV(task, st, "attempt", st.Attempts)...)
			w.ack(ns, m.ID)
			e.waiters.Notify(task.ID)
			if inTx.settled.Load() {
				// The handler's transaction committed the completion, which brought the task to rest.
				e.wakeParent(w.dbctx, task.ID, task) // child.go
			}
			return queue.Message{}, nil, claimTimes{}
		}
		if errors.Is(err, store.ErrConflict) {
			spanOutcome = "dropped"
			e.log.Info("step moved on while its handler ran; outcome dropped", stepKV(task, st, "attempt", st.Attempts, "outcome", outcome)...)
			w.ack(ns, m.ID)
			return queue.Message{}, nil, claimTimes{}
		}
		spanOutcome, spanErr = "unrecorded", err
		e.log.Error(err, "record step outcome; the lease rescuer will retry the step", stepKV(task, st)...)
		return queue.Message{}, nil, claimTimes{}
	}
	spanOutcome = outcome
	tel.recordAttempt(ns, outcome, ran)
	if p.Kind != store.OutcomeSuccess {
		spanErr = errors.New(errorMessage(p.Error))
	}
	// The success line is built only when it is logged: the hot path allocates nothing for it.
	if p.Kind != store.OutcomeSuccess || e.log.V(1).Enabled() {
		kv := stepKV(task, st, "attempt", st.Attempts, "outcome", outcome, "duration", time.Since(start), "task_state", res.TaskState)
		switch p.Kind {
		case store.OutcomeSuccess:
			e.log.V(1).Info("step attempt", kv...)
		case store.OutcomeRetry:
			e.log.Info("step attempt failed; will retry", append(kv, "retry_in", p.RetryDelay, "error", errorMessage(p.Error))...)
		case store.OutcomePermanent:
			e.log.Error(spanErr, "step failed for good", kv...)
		}
	}
	if p.Kind == store.OutcomeRetry {
		span.retry(p.RetryDelay)
		w.wakeAfter(ns, p.RetryDelay)
	}
	if res.Settled {
		tel.taskSettled(ns, res.TaskState)
		e.waiters.Notify(task.ID)
		e.wakeParent(w.dbctx, task.ID, task) // child.go
	}
	if res.Next == nil {
		return queue.Message{}, nil, claimTimes{}
	}
	next := queue.Message{ID: res.Next.MessageID, Queue: ns, ReadCount: 1, EnqueuedAt: e.cfg.Clock.Now()}
	// The next step was made ready and claimed in the outcome's commit.
	return next, &res.Next.ClaimedStep, claimTimes{start: committed.start, end: committed.end, sent: committed.end}
}

// stepKV returns the key-value pairs that name a step in a log line: its task, name and id, and
// the task's trace id when it has one, followed by kv.
// A nil task stands for the step's own (st.TaskID), with no trace id.
func stepKV(task *store.Task, st *store.Step, kv ...any) []any {
	out := make([]any, 0, 8+len(kv))
	if task == nil {
		return append(append(out, "task", st.TaskID, "step", st.Name, "step_id", st.ID), kv...)
	}
	out = append(out, "task", task.ID, "step", st.Name, "step_id", st.ID)
	if id := TraceID(task.TraceParent); id != "" {
		out = append(out, "trace_id", id)
	}
	return append(out, kv...)
}

// maxLoggedErrorBytes bounds the error text of a log line.
const maxLoggedErrorBytes = 2 << 10

// errorMessage is the message of an encoded StepFailure, cut for a log line.
func errorMessage(raw json.RawMessage) string {
	var se Failure
	_ = json.Unmarshal(raw, &se)
	return jsonsafe.Truncate(se.Message, maxLoggedErrorBytes)
}

// Pacing of record's retries while the database is away.
const (
	recordRetryMax = time.Second     // the longest wait between two tries
	recordLogEvery = 5 * time.Second // how often a long wait is reported
)

// leaseClock tells how long this worker's lease on a step lasts: Config.Lease from the last
// renewal that the store confirmed (or from the claim).
type leaseClock struct {
	mu      sync.Mutex
	renewed time.Time // when that renewal was sent: the lease ends no earlier than renewed + Lease
}

func (l *leaseClock) last() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.renewed
}

func (l *leaseClock) renewedAt(t time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t.After(l.renewed) {
		l.renewed = t
	}
}

// record commits an outcome. A finished outcome is not given up while its lease lives: on a
// transient error (the database away) record keeps trying, with a capped backoff, and renews the
// step's lease and its message's visibility every third of the lease, so that the outcome is
// recorded once the database answers and the rescuer never sees the lease expire. It stops at
// once when the step is no longer this worker's (store.ErrConflict, store.ErrNotFound, a lost
// lease or a cancelled task: gone). It gives up when the lease, as last renewed, has run out (the
// rescuer then takes the step over, as after a crash), or when the database renews the lease yet
// refuses the outcome for a whole lease: no outage, then, but a fault that waiting does not cure.
// Once the engine is stopping it renews no more and tries until the lease it holds runs out, which
// bounds RunWorkers' drain.
func (w *workers) record(ns string, m queue.Message, task *store.Task, st *store.Step, p store.OutcomeParams, hold *leaseClock, gone func() error) (*store.OutcomeResult, error) {
	e := w.e
	delay := 50 * time.Millisecond
	var first, logged, refusedSince time.Time
	for tries := 1; ; tries++ {
		// No call outlives the lease: a database that hangs (a lock held elsewhere, a connection
		// that stopped answering) cannot keep the outcome pending past the moment the rescuer may
		// take the step over, nor past RunWorkers' return.
		cctx, cancel := context.WithDeadline(w.dbctx, hold.last().Add(e.cfg.Lease))
		res, err := e.store.RecordOutcome(cctx, p)
		cancel()
		if err == nil {
			if tries > 1 {
				e.log.Info("step outcome recorded after the database came back", stepKV(task, st,
					"attempt", p.Attempt, "tries", tries, "waited", time.Since(first).Round(time.Millisecond))...)
			}
			return res, nil
		}
		if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrUnstorable) {
			return res, err
		}
		now := time.Now()
		if tries == 1 {
			first = now
			w.recording.Add(1)
			defer w.recording.Add(-1)
		}
		if cause := gone(); cause != nil {
			return nil, fmt.Errorf("%w (and the step is no longer this worker's: %v)", err, cause)
		}
		end := hold.last().Add(e.cfg.Lease)
		if !refusedSince.IsZero() && now.Sub(refusedSince) > e.cfg.Lease {
			e.log.Error(err, "record step outcome: the database answers but refuses it; giving up", stepKV(task, st,
				"tries", tries, "waited", now.Sub(first).Round(time.Millisecond))...)
			return nil, err
		}
		if !w.stopping.Load() && now.Sub(hold.last()) >= e.cfg.Lease/3 {
			_, herr := w.renew(ns, m, task, st, hold)
			switch {
			case errors.Is(herr, store.ErrConflict) || errors.Is(herr, store.ErrNotFound):
				return nil, fmt.Errorf("record outcome: %w", herr)
			case herr == nil:
				end = hold.last().Add(e.cfg.Lease)
				if refusedSince.IsZero() {
					refusedSince = now
				}
			}
		}
		left := time.Until(end)
		if left <= 0 {
			e.log.Error(err, "record step outcome: its lease ran out while the database was away; the lease rescuer will take the step over",
				stepKV(task, st, "tries", tries, "waited", now.Sub(first).Round(time.Millisecond))...)
			return nil, err
		}
		if now.Sub(logged) >= recordLogEvery {
			logged = now
			e.log.Error(err, "record step outcome; trying again while its lease lasts", stepKV(task, st,
				"tries", tries, "lease_left", left.Round(time.Millisecond))...)
		}
		time.Sleep(min(delay, left))
		delay = min(delay*2, recordRetryMax)
	}
}

// completeTx records a handler's success inside the handler's own transaction (Step.CompleteTx),
// as the executor would record it: classified (the result checked), with what its step type asks
// (a decision's branches), released dependents enqueued in tx. The executor still records the
// handler's outcome afterwards: a committed tx makes that a conflict, dropped; a rolled-back one
// leaves it to record the outcome as usual. settled says that the success brings the task to
// rest if tx commits.
func (w *workers) completeTx(ctx context.Context, tx store.Tx, st *store.Step, task *store.Task, result any) (settled bool, err error) {
	e := w.e
	ts, ok := e.store.(store.Transactional)
	if !ok || tx == nil {
		return false, fmt.Errorf("complete step %q in the caller's transaction: %w", st.Name, store.ErrNotTransactional)
	}
	p := Classify(st, Called{Return: Return{Result: result}}, nil, e.cfg.MaxPayloadBytes)
	if p.Kind != store.OutcomeSuccess {
		return false, fmt.Errorf("complete step %q in the caller's transaction: %s", st.Name, errorMessage(p.Error))
	}
	w.applyStepType(st, task, &p)
	p.TaskID, p.StepID, p.WorkerID, p.Attempt, p.Namespace = task.ID, st.ID, e.cfg.WorkerID, st.Attempts, task.Namespace
	p.PriorityCredit = e.PriorityCredit(task.Priority)
	p.Enqueuer = e.NewEnqueuer() // a queue outside the database publishes when the commit is announced
	res, err := ts.RecordOutcomeTx(ctx, tx, p)
	if err != nil {
		if errors.Is(err, store.ErrConflict) {
			return false, fmt.Errorf("complete step %q in the caller's transaction: this attempt no longer holds the step: %w", st.Name, err)
		}
		return false, fmt.Errorf("complete step %q in the caller's transaction: %w", st.Name, err)
	}
	return res.Settled, nil
}

// completedInTx is what a handler's Step.CompleteTx did: done once it recorded the success in
// the handler's transaction, settled when that success brings the task to rest (if the
// transaction commits).
type completedInTx struct {
	done, settled atomic.Bool
}

// call runs the handler, recovering a panic; a handler that ignores its cancelled context is
// abandoned after abandonGrace.
func (w *workers) call(ctx context.Context, st *store.Step, task *store.Task, results map[string]json.RawMessage, inTx *completedInTx) Called {
	if isNoOp(st.Inputs) {
		return Called{Return: Return{Result: map[string]any{"no_op": true}}}
	}
	h, ok := w.e.handler(st.Handler)
	if !ok {
		return Called{Return: Return{Err: &NoHandlerError{Name: st.Handler}}}
	}
	tmpl, _ := w.e.Template(task.Namespace, task.Name, task.Version)
	var config map[string]any
	var method string
	if tmpl != nil {
		if ts, ok := tmpl.Step(st.TemplateStep); ok {
			config = jsonsafe.CloneMap(ts.Init)
			method = ts.Method
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
	a := &Attempt{TaskID: task.ID, StepID: st.ID, Name: st.Name, Namespace: task.Namespace, TaskName: task.Name,
		Version: task.Version, Number: st.Attempts, MaxAttempts: st.MaxAttempts, CorrelationID: task.CorrelationID,
		Context: task.Context, Method: method, Config: config, Results: results, Inputs: st.Inputs,
		Checkpoint: st.Checkpoint, LastError: st.LastError, MaxCheckpoint: w.e.cfg.MaxPayloadBytes, SaveCheckpoint: func(ctx context.Context, raw json.RawMessage) error {
			return w.e.store.SaveCheckpoint(ctx, store.CheckpointParams{StepID: st.ID, WorkerID: w.e.cfg.WorkerID, Attempt: st.Attempts, Checkpoint: raw})
		},
		CompleteTx: func(ctx context.Context, tx store.Tx, result any) error {
			settled, err := w.completeTx(ctx, tx, st, task, result)
			if err != nil {
				return err
			}
			inTx.settled.Store(settled)
			inTx.done.Store(true)
			return nil
		}}
	done := make(chan Called, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- Called{Return: Return{Err: fmt.Errorf("panic: %v", r)}, Panicked: true, Stack: string(debug.Stack())}
			}
		}()
		done <- Called{Return: h.Handle(ctx, a)}
	}()
	select {
	case o := <-done:
		return o
	case <-ctx.Done():
		select {
		case o := <-done:
			return o
		case <-time.After(abandonGrace):
			w.e.log.Info("handler ignores its cancelled context; abandoning it", stepKV(task, st, "handler", st.Handler)...)
			return Called{Abandoned: true, Return: Return{Err: context.Cause(ctx)}}
		}
	}
}

// heartbeat renews the step's lease and its message's visibility every third of the lease, and
// cancels the handler when the step is no longer this worker's (cancelled elsewhere, rescued).
func (w *workers) heartbeat(ns string, m queue.Message, task *store.Task, st *store.Step, cancel context.CancelCauseFunc, hold *leaseClock) (stop func()) {
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
			state, err := w.renew(ns, m, task, st, hold)
			if errors.Is(err, store.ErrConflict) {
				e.log.Info("step is no longer ours; cancelling its handler", stepKV(task, st, "state", state)...)
				if state == statemachine.StepCancelled {
					cancel(ErrTaskCancelled)
				} else {
					cancel(ErrLeaseLost)
				}
				return
			}
			if err != nil {
				e.log.Error(err, "heartbeat", stepKV(task, st)...)
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// renew extends the lease of the step this worker holds, then its message's visibility. It
// returns the store's answer: store.ErrConflict (with the step's state) when the step is no longer
// this worker's.
func (w *workers) renew(ns string, m queue.Message, task *store.Task, st *store.Step, hold *leaseClock) (statemachine.StepState, error) {
	// No deadline here: a heartbeat that comes back late still tells a stalled worker, through
	// store.ErrConflict, that its step was rescued, which cancels its handler.
	return w.renewIn(w.dbctx, ns, m, task, st, hold)
}

// renewIn is renew under ctx: the completer bounds each renewal of a batch waiting for the
// database, so that one hanging call cannot keep the others past their leases. task may be nil
// (its log lines then have no trace id).
func (w *workers) renewIn(ctx context.Context, ns string, m queue.Message, task *store.Task, st *store.Step, hold *leaseClock) (statemachine.StepState, error) {
	e := w.e
	sent := time.Now()
	state, err := e.store.Heartbeat(ctx, store.HeartbeatParams{StepID: st.ID, WorkerID: e.cfg.WorkerID, Lease: e.cfg.Lease,
		Attempt: st.Attempts})
	if err != nil {
		return state, err
	}
	hold.renewedAt(sent)
	if err := e.queue.Extend(ctx, ns, m.ID, e.cfg.Lease); errors.Is(err, queue.ErrNotFound) {
		// The queue gave the message up (RabbitMQ after an outage): its redelivery is
		// dropped at the claim while this worker holds the step's lease.
		e.log.V(1).Info("extend: the queue no longer holds the message", stepKV(task, st)...)
	} else if err != nil {
		e.log.Error(err, "extend message visibility", stepKV(task, st)...)
	}
	return state, nil
}

// giveBack returns a step cut off by shutdown to the queue without spending its attempt. The
// release sends the step a message of its own, in its transaction, and the delivering message is
// acked: that message may be gone already (a sibling engine that read it once it surfaced during
// a stall, found the step in progress and acked it as a duplicate), and a step enqueued with no
// message would never run on a queue inside the database.
func (w *workers) giveBack(ns string, m queue.Message, task *store.Task, st *store.Step) {
	e := w.e
	enq := e.NewEnqueuer()
	err := e.store.ReleaseStep(w.dbctx, store.ReleaseStepParams{StepID: st.ID, WorkerID: e.cfg.WorkerID, Attempt: st.Attempts, Reason: "shutdown",
		Namespace: ns, Enqueuer: enq})
	if err != nil {
		e.log.Error(err, "give step back on shutdown", stepKV(task, st)...)
		return
	}
	enq.Flush(w.dbctx)
	w.ack(ns, m.ID)
	e.log.Info("step given back on shutdown", stepKV(task, st, "attempt", st.Attempts)...)
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

// applyStepType adds what a step's type asks of its outcome (ApplyStepType), with the
// task's template as registered here.
func (w *workers) applyStepType(st *store.Step, task *store.Task, p *store.OutcomeParams) {
	r, err := w.e.Template(task.Namespace, task.Name, task.Version)
	if err != nil {
		return
	}
	ApplyStepType(w.dbctx, w.e.store, r, st, p, w.e.cfg.MaxDecisionSteps)
}

// stepTimeout is the handler's context, cancelled with ErrStepTimeout after d: on the system
// clock's deadline, and with another clock (Config.Clock) also once that clock has moved d on, so
// that a test that advances its clock past the timeout times the handler out.
func (w *workers) stepTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	clk := w.e.cfg.Clock
	if clock.IsReal(clk) {
		return context.WithTimeoutCause(ctx, d, ErrStepTimeout)
	}
	cctx, ccancel := context.WithCancelCause(ctx)
	stop := clk.At(clk.Now().Add(d), func() { ccancel(ErrStepTimeout) })
	tctx, tcancel := context.WithTimeoutCause(cctx, d, ErrStepTimeout)
	return tctx, func() {
		stop()
		tcancel()
		ccancel(nil)
	}
}

package engine

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/tasker-systems/tasker/queue"
	"github.com/tasker-systems/tasker/store"
)

// A worker claims only the steps it can run. Engines of different releases may share a namespace
// (a rolling deploy: old engines know template 1.0.0, new ones also 1.1.0, which adds a step whose
// handler only they have), so a delivered message may name a step this engine has no handler for.
// Such a message is declined: not claimed, so no attempt is spent and nothing is recorded, and given
// back to the queue (queue.RetryLater) for another engine, hidden for declineDelay, which grows with
// the time the message has waited, so that engines without the handler do not spin on it. The step
// waits, enqueued, for an engine that has the handler, however long that takes, and Engine.Health
// lists it meanwhile: a worker never fails a step with no_handler, because it cannot know that no
// other engine has the handler.
//
// The rule: an engine runs a step when it has the step's handler. With the task's template version
// registered, the template step's callable decides (canRun); without it, the callable the message
// carries (stepMessage.Handler, from the step's row), and a step whose type needs its template
// (needsTemplate) is declined too. Such an engine runs a standard step without the template's
// handler initialization (Step config), as before.
//
// The decision is made before the claim from what the message names (claimVerdict), and again
// after every claim from the claimed row (claimedVerdict), which covers messages that name too
// little (payloads of earlier versions, an operator's re-enqueue) and steps handed over by an
// outcome (store.ClaimNextParams.Accept decides those first, with canRun): a step declined after
// its claim is given back with ReleaseStep, which returns its attempt.

// declineDelayMin, declineAgeShare and declineDelayMax set how long a declined message stays
// hidden: an eighth of how long it has waited since it was sent (queue.Message.EnqueuedAt, kept
// by RetryLater on every backend), at least declineDelayMin and at most declineDelayMax. The delay
// follows the age, not the read count, because reads pile up fastest exactly when they say least:
// several engines without the handler each read the message while the one engine with it is busy,
// and a backoff by reads would then hide the message for seconds just as that engine frees a
// slot. By age, a decline adds at most about an eighth to a step's wait, whoever reads it; a step
// that no engine can run costs each queue about 8·ln(age/declineDelayMin) reads, then one every
// declineDelayMax. A message that does not say when it was sent backs off by its read count.
//
// On RabbitMQ a declined message is published again through a delay queue carrying its read count
// (queue/rabbitmq's RetryLater: confirmed before the old delivery is acked, so nothing is lost or
// hot-looped), and it counts towards rabbitmq.WithMaxReads: a step that no engine can run has its
// message dead-lettered after about 7 minutes with the defaults, and the engine's sweeper
// publishes a new one from the database.
const (
	declineDelayMin = 20 * time.Millisecond
	declineAgeShare = 8
	declineDelayMax = 5 * time.Second
)

// declineYield and declineYieldWindow: while an engine has declined a message of a namespace
// within the last declineYieldWindow, it waits a random time up to declineYield before each read
// of that namespace, so that an engine that can run the declined steps reads first. Without it,
// engines that poll in step (they started together) race for each message that surfaces, and the
// one whose poll comes first in the cycle, without the handler, wins every time.
const (
	declineYield       = 200 * time.Millisecond
	declineYieldWindow = 2 * declineDelayMax
)

// yieldAfterDecline delays a read of ns as declineYield says; it returns early when ctx ends. A
// broker that pushes messages to its consumers (queue.Publisher: RabbitMQ) has already chosen who
// gets each message, so there it does not wait.
func (w *workers) yieldAfterDecline(ctx context.Context, ns string) {
	if _, pushes := w.e.queue.(queue.Publisher); pushes {
		return
	}
	last, ok := w.e.waiting.LastDecline(ns)
	if !ok || time.Since(last) > declineYieldWindow {
		return
	}
	t := time.NewTimer(rand.N(declineYield))
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// declineDelay is how long a message declined at now stays hidden, jittered to between half and
// one and a half times its nominal value. The jitter matters: engines that started together poll
// their queue in step (pgqueue's and memqueue's fallback polls), and with a fixed delay the
// message would surface at the same point of that cycle each time, just before the poll of the
// same engine without the handler, which would then decline it again and again while the engine
// with the handler, polling a little later in the cycle, never saw it.
func declineDelay(m queue.Message, now time.Time) time.Duration {
	d := declineDelayMin
	switch {
	case !m.EnqueuedAt.IsZero():
		d = max(d, now.Sub(m.EnqueuedAt)/declineAgeShare)
	case m.ReadCount > 1:
		d = declineDelayMin << min(m.ReadCount-1, 16)
	}
	d = min(d, declineDelayMax)
	return d/2 + rand.N(d)
}

// verdict is whether this engine takes a step.
type verdict int

const (
	verdictRun       verdict = iota // it has what the step needs
	verdictUndecided                // the message names too little: claim, then decide (claimedVerdict)
	verdictDecline                  // leave the step to another engine
)

// judgement is a verdict with, for a decline, why and the handler the step needs.
type judgement struct {
	verdict  verdict
	reason   string
	callable string
}

// needsTemplate tells whether a step of this type cannot run as its template says without the
// template: a decision or batchable step's outcome creates steps that the template describes, and a
// batch worker's failure strategy is applied with its template at hand.
func needsTemplate(stepType string) bool {
	switch StepType(stepType) {
	case StepDecision, StepBatchable, StepBatchWorker:
		return true
	}
	return false
}

// claimVerdict decides, from a delivered message alone, whether this engine claims its step. With
// the message's template version registered here, the template step's callable decides (canRun's
// rule); without it, the callable the message carries (stepMessage.Handler) decides whether the
// claim is worth trying. A message that names neither is undecided.
func (e *Engine) claimVerdict(ns string, msg stepMessage) judgement {
	if msg.TaskName != "" && msg.Version != "" && msg.Step != "" {
		if r, err := e.Template(ns, msg.TaskName, msg.Version); err == nil {
			st, ok := r.Step(msg.Step)
			if !ok {
				return judgement{verdict: verdictUndecided}
			}
			if _, ok := e.handler(st.Callable); !ok {
				return judgement{verdict: verdictDecline, reason: WaitNoHandler, callable: st.Callable}
			}
			return judgement{verdict: verdictRun}
		}
	}
	if msg.Handler != "" {
		if _, ok := e.handler(msg.Handler); !ok {
			return judgement{verdict: verdictDecline, reason: WaitNoHandler, callable: msg.Handler}
		}
	}
	// A handler here, but not the template version: the claimed step's type decides.
	return judgement{verdict: verdictUndecided}
}

// claimedVerdict decides, once a step is claimed, whether this engine runs it: it needs the
// step's handler (a no-op batch worker needs none), and, for a step whose type needs its template
// (needsTemplate), the task's template version.
func (e *Engine) claimedVerdict(c *store.ClaimedStep) judgement {
	st := &c.Step
	if isNoOp(st.Inputs) {
		return judgement{verdict: verdictRun}
	}
	if _, ok := e.handler(st.Handler); !ok {
		return judgement{verdict: verdictDecline, reason: WaitNoHandler, callable: st.Handler}
	}
	if needsTemplate(st.Type) {
		if _, err := e.Template(c.Task.Namespace, c.Task.Name, c.Task.Version); err != nil {
			return judgement{verdict: verdictDecline, reason: WaitNoTemplate, callable: st.Handler}
		}
	}
	return judgement{verdict: verdictRun}
}

// decline gives a message back to the queue for another engine, hidden for declineDelay, and
// notes its step as waiting (Engine.Health). A message the queue no longer holds comes again on
// its own (RabbitMQ after a lost channel); one that cannot be given back now surfaces after its
// visibility timeout, so nothing is lost either way.
func (w *workers) decline(ns string, m queue.Message, msg stepMessage, j judgement) {
	e := w.e
	d := declineDelay(m, e.cfg.Clock.Now())
	if err := e.queue.RetryLater(w.dbctx, ns, m.ID, d); err != nil && !errors.Is(err, queue.ErrNotFound) {
		e.log.Error(err, "give back a message this engine declined; it comes back after its visibility timeout", "namespace", ns, "task", msg.TaskID, "step_id", msg.StepID)
	}
	w.noteDeclined(ns, m, msg, j, d)
}

// noteDeclined notes a declined step as waiting (Engine.Health) and logs it, the first time at
// info level.
func (w *workers) noteDeclined(ns string, m queue.Message, msg stepMessage, j judgement, d time.Duration) {
	e := w.e
	e.waiting.Declined(ns)
	kv := []any{"namespace", ns, "task", msg.TaskID, "step", msg.StepID, "handler", j.callable, "reason", j.reason, "reads", m.ReadCount, "retry_in", d}
	if e.waiting.Note(ns, msg.TaskID, msg.StepID, j.callable, j.reason, m.EnqueuedAt) {
		e.log.Info("declined a step this engine cannot run; it waits for an engine that can (see Engine.Health)", kv...)
		return
	}
	e.log.V(1).Info("declined a step this engine cannot run", kv...)
}

// releaseClaimed gives back, without spending its attempt, a step claimed by this engine that
// claimedVerdict declines, with a message of its own sent in the release's transaction and hidden
// for declineDelay, and acks the delivering message: the claim may have deleted that one already
// (ClaimFromQueue on a store that owns its queue does), and a step enqueued with no message would
// never run there. A step that cannot be given back now keeps its lease until it runs out, and
// the lease rescuer takes it over.
func (w *workers) releaseClaimed(ns string, m queue.Message, c *store.ClaimedStep, j judgement) {
	e := w.e
	st := &c.Step
	reason := fmt.Sprintf("this engine has no handler for %q", j.callable)
	if j.reason == WaitNoTemplate {
		reason = fmt.Sprintf("this engine does not have template %s/%s version %s, which a %s step needs", c.Task.Namespace, c.Task.Name, c.Task.Version, st.Type)
	}
	d := declineDelay(m, e.cfg.Clock.Now())
	enq := e.NewEnqueuer()
	err := e.store.ReleaseStep(w.dbctx, store.ReleaseStepParams{StepID: st.ID, WorkerID: e.cfg.WorkerID, Attempt: st.Attempts, Reason: reason,
		Namespace: ns, Enqueuer: enq, Delay: d})
	switch {
	case errors.Is(err, store.ErrConflict):
		w.ack(ns, m.ID) // no longer ours (cancelled meanwhile): the message has nothing left to do
		return
	case err != nil:
		e.log.Error(err, "give back a claimed step this engine cannot run; the lease rescuer will take it over", stepKV(&c.Task, st, "handler", j.callable)...)
		return
	}
	enq.Flush(w.dbctx)
	w.ack(ns, m.ID)
	w.noteDeclined(ns, m, stepMessage{TaskID: c.Task.ID, StepID: st.ID}, j, d)
}

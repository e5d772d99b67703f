package engine

import (
	"context"
	"encoding/json"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/tasker/queue"
	"github.com/tasker-systems/tasker/store"
)

// stepMessage is the payload of a queue message: which step to run (store.StepMessage, which
// the store's own claims read too).
type stepMessage = store.StepMessage

// Enqueuer sends step messages on the engine's queue, one queue per namespace. With a queue that
// lives outside the database (queue.Publisher) it collects the messages of one store call, which
// the caller publishes with flush once the call has committed.
type Enqueuer struct {
	e       *Engine
	pending *[]pendingSend
}

type pendingSend struct {
	ns    string
	step  store.StepRef
	delay time.Duration
}

// NewEnqueuer returns the Enqueuer for one store call.
func (e *Engine) NewEnqueuer() Enqueuer {
	if _, ok := e.queue.(queue.Publisher); ok {
		return Enqueuer{e: e, pending: new([]pendingSend)}
	}
	return Enqueuer{e: e}
}

// add lists steps to publish at Flush (a queue outside the database only).
func (q Enqueuer) add(ns string, steps []store.StepRef, delay time.Duration) {
	for _, st := range steps {
		*q.pending = append(*q.pending, pendingSend{ns: ns, step: st, delay: delay})
	}
}

// Flush publishes what a committed store call enqueued, one Publish per namespace and delay, once
// per step (a store call that ran its transaction again enqueued it again). A failure is logged:
// the sweeper re-publishes from database state.
func (q Enqueuer) Flush(ctx context.Context) {
	if q.pending == nil || len(*q.pending) == 0 {
		return
	}
	pub := q.e.queue.(queue.Publisher)
	committed := time.Now() // Flush follows the commit: the publish lag is measured from here
	type group struct {
		ns    string
		delay time.Duration
	}
	var order []group
	steps := map[group][]store.StepRef{}
	seen := map[uuid.UUID]bool{}
	for _, p := range *q.pending {
		if seen[p.step.StepID] {
			continue
		}
		seen[p.step.StepID] = true
		g := group{p.ns, max(p.delay, 0)} // a priority credit (a negative delay) means nothing to a broker
		if _, ok := steps[g]; !ok {
			order = append(order, g)
		}
		steps[g] = append(steps[g], p.step)
	}
	*q.pending = (*q.pending)[:0]
	maxDelay := time.Duration(0)
	if dl, ok := q.e.queue.(queue.DelayLimiter); ok {
		maxDelay = dl.MaxDelay()
	}
	for _, g := range order {
		if maxDelay > 0 && g.delay > maxDelay {
			// Longer than the queue can delay a message: the steps wait in the database, and the
			// sweeper publishes their messages once they are due.
			q.e.log.V(1).Info("delay longer than the queue allows; the sweeper publishes these messages once due",
				"namespace", g.ns, "steps", len(steps[g]), "delay", g.delay, "max_delay", maxDelay)
			continue
		}
		payloads, err := q.e.stepPayloads(g.ns, steps[g])
		if err == nil {
			err = pub.Publish(ctx, g.ns, payloads, g.delay)
		}
		if err == nil {
			q.e.tel.recordPublish(g.ns, time.Since(committed))
		}
		if err != nil {
			q.e.log.Error(err, "publish step messages; the sweeper will publish them again", "namespace", g.ns, "steps", len(steps[g]))
		}
	}
}

func (q Enqueuer) EnqueueTx(ctx context.Context, tx pgx.Tx, ns string, steps []store.StepRef, delay time.Duration) error {
	if q.pending != nil {
		q.add(ns, steps, delay)
		return nil
	}
	payloads, err := q.e.stepPayloads(ns, steps)
	if err != nil {
		return err
	}
	return q.e.queue.SendTx(ctx, tx, ns, payloads, delay)
}

// HoldBatch queues into b the message of a step the worker claims in the same transaction, held
// by it (queue.BatchHolder), for store.ClaimNextParams.Hold.
func (q Enqueuer) HoldBatch(b *pgx.Batch, ns string, step store.StepRef, lease time.Duration, id *int64) (bool, error) {
	bh, ok := q.e.queue.(queue.BatchHolder)
	if !ok {
		return false, nil
	}
	payloads, err := q.e.stepPayloads(ns, []store.StepRef{step})
	if err != nil {
		return true, err
	}
	return true, bh.QueueSendHeld(b, ns, payloads[0], lease, id)
}

// EnqueueBatch implements store.BatchEnqueuer when the queue can join a batch.
func (q Enqueuer) EnqueueBatch(b *pgx.Batch, ns string, steps []store.StepRef, delay time.Duration) (bool, error) {
	if q.pending != nil {
		// A queue outside the database: nothing joins the batch; Flush publishes after the commit.
		q.add(ns, steps, delay)
		return true, nil
	}
	bs, ok := q.e.queue.(queue.BatchSender)
	if !ok {
		return false, nil
	}
	payloads, err := q.e.stepPayloads(ns, steps)
	if err != nil {
		return true, err
	}
	return true, bs.QueueSend(b, ns, payloads, delay)
}

// stepPayloads encodes the messages of steps of namespace ns, with each step's handler callable:
// the store's (StepRef.Handler), or else this engine's template version's.
func (e *Engine) stepPayloads(ns string, steps []store.StepRef) ([][]byte, error) {
	payloads := make([][]byte, len(steps))
	for i, s := range steps {
		m := stepMessage{TaskID: s.TaskID, StepID: s.StepID, Retry: s.Retry, TaskName: s.TaskName, Version: s.Version, Step: s.Name,
			Handler: s.Handler}
		if m.Handler == "" && s.TaskName != "" && s.Version != "" && s.Name != "" {
			if r, err := e.Template(ns, s.TaskName, s.Version); err == nil {
				if st, ok := r.Step(s.Name); ok {
					m.Handler = st.Callable
				}
			}
		}
		b, err := json.Marshal(m)
		if err != nil {
			return nil, err
		}
		payloads[i] = b
	}
	return payloads, nil
}

// OwnsQueue reports whether the store owns the engine's queue (store.QueueOwner): its messages
// are rows the store writes in its own transactions, so a creation or an outcome sends them in
// its commit, with no Enqueuer.
func (e *Engine) OwnsQueue() bool {
	owner, ok := e.store.(store.QueueOwner)
	return ok && owner.OwnsQueue(e.queue)
}

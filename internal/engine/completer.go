package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tasker-systems/tasker/queue"
	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

// The completer records the outcomes of many steps, of many tasks, in one store transaction
// (store.BatchStore.RecordOutcomes): group commit. It takes what is waiting when a committer is
// free and never waits to fill a batch, so a lone outcome commits at once, and under load the
// outcomes that arrive during one commit make the next batch: batch size follows load, with no
// timer. An executor gives its handler slot back as soon as it has submitted its outcome, so
// slots do not sit idle for a commit.
//
// It runs when the store batches (store.BatchStore) and the engine can send what a batch makes
// ready: through a queue outside the database (queue.Publisher: after the commit, with the
// sweeper as the net) or through a store that owns the queue (store.QueueOwner: in the commit).

// Tuning of the completer.
const (
	// completeBatchMax bounds the outcomes of one transaction; past about 50 a batch buys nothing
	// and holds its task locks longer (docs/design/engine-v2.md §4.3).
	completeBatchMax = 100
	// completeCommitters is how many batches commit at once.
	completeCommitters = 2
	// completeBacklogPerSlot sizes the backlog of submitted outcomes: a full backlog blocks
	// Submit, which keeps the executor's slot.
	completeBacklogPerSlot = 4
)

// errCompleterStopped answers an outcome submitted after the completer stopped (a handler that
// ignored its cancelled context past the drain): the lease rescuer takes its step over.
var errCompleterStopped = errors.New("tasker: the engine stopped before this outcome could be recorded")

// pendingOutcome is one submitted outcome with what its retries need.
type pendingOutcome struct {
	out  store.Outcome
	ns   string
	m    queue.Message
	st   *store.Step
	hold *leaseClock
	gone func() error
	done chan completion // buffered: the committer never blocks on it
}

// completion is the answer to one pendingOutcome.
type completion struct {
	rec store.OutcomeRecord
	err error // the batch failed for this outcome (its lease ran out, unstorable, stopped)
}

type completer struct {
	w          *workers
	bs         store.BatchStore
	in         chan *pendingOutcome
	committers chan struct{}
	stop       chan struct{}
	loopDone   chan struct{}  // the batching loop has returned
	finished   chan struct{}  // and every batch has been answered: nothing answers any more
	commits    sync.WaitGroup // batches in flight
	// owned: the store sends and acks the messages in its commits (store.QueueOwner).
	owned bool
	// batches and outcomes count the RecordOutcomes calls that committed and the outcomes they
	// held.
	batches, outcomes atomic.Int64
	// solo is held by the one outcome recorded on the single-step path (takeSolo); inflight
	// counts the batches committing.
	solo     atomic.Bool
	inflight atomic.Int32
	solos    atomic.Int64 // outcomes recorded on the single-step path
}

// takeSolo reports whether an outcome may skip the completer and take the single-step path: only
// when the completer is idle (nothing waiting, no batch committing) and no other outcome has; a
// true answer must be followed by endSolo. A lone outcome then pays no batch's fixed cost, and as
// soon as a second one arrives, batching starts.
func (c *completer) takeSolo() bool {
	if len(c.in) > 0 || c.inflight.Load() > 0 || !c.solo.CompareAndSwap(false, true) {
		return false
	}
	if len(c.in) > 0 || c.inflight.Load() > 0 {
		c.solo.Store(false)
		return false
	}
	c.solos.Add(1)
	return true
}

func (c *completer) endSolo() { c.solo.Store(false) }

// newCompleter returns the engine's completer, or nil when its store or queue cannot take one.
func newCompleter(w *workers) *completer {
	e := w.e
	bs, ok := e.store.(store.BatchStore)
	if !ok {
		return nil
	}
	_, publishes := e.queue.(queue.Publisher)
	c := &completer{w: w, bs: bs, in: make(chan *pendingOutcome, completeBacklogPerSlot*e.cfg.Concurrency),
		committers: make(chan struct{}, completeCommitters), stop: make(chan struct{}), loopDone: make(chan struct{}),
		finished: make(chan struct{})}
	if owner, ok := e.store.(queueOwner); ok {
		c.owned = owner.OwnsQueue(e.queue)
	}
	if !publishes && !c.owned {
		return nil
	}
	return c
}

// queueOwner is store.QueueOwner's method: a store whose transactions carry the queue's messages.
type queueOwner interface{ OwnsQueue(q queue.Queue) bool }

// submit hands an outcome to the completer; it blocks while the backlog is full, and fails once
// the completer has stopped.
func (c *completer) submit(p *pendingOutcome) error {
	select {
	case <-c.stop:
		return errCompleterStopped
	default:
	}
	select {
	case c.in <- p:
		return nil
	case <-c.stop:
		return errCompleterStopped
	}
}

// run commits batches until close; it is started by the workers' run and closed after their
// drain.
func (c *completer) run() {
	defer close(c.loopDone)
	for {
		var first *pendingOutcome
		select {
		case first = <-c.in:
		case <-c.stop:
			c.failBacklog()
			return
		}
		c.committers <- struct{}{} // wait only while completeCommitters batches are in flight
		batch := []*pendingOutcome{first}
	drain:
		for len(batch) < completeBatchMax {
			select {
			case p := <-c.in:
				batch = append(batch, p)
			default:
				break drain
			}
		}
		c.commits.Add(1)
		c.inflight.Add(1)
		go func() {
			defer c.commits.Done()
			defer func() { <-c.committers }()
			defer c.inflight.Add(-1)
			c.commit(batch)
		}()
	}
}

// close stops the completer once every batch in flight has committed; what is submitted after
// gets errCompleterStopped.
func (c *completer) close() {
	close(c.stop)
	<-c.loopDone
	c.commits.Wait()
	close(c.finished)
}

// failBacklog answers what is left in the backlog once the completer stops.
func (c *completer) failBacklog() {
	for {
		select {
		case p := <-c.in:
			p.done <- completion{err: errCompleterStopped}
		default:
			return
		}
	}
}

// commit records a batch, trying again while the database is away, as record does for one
// outcome: each outcome is given up when its step is no longer this worker's or its lease has
// run out (the rescuer takes its step over then), and the leases of the others are renewed every
// third of the lease. A batch the database refuses for what it holds (store.ErrUnstorable) is
// split in halves until the outcome it refuses stands alone; that one gets the error, and its
// executor fails the step with the database's reason.
func (c *completer) commit(batch []*pendingOutcome) {
	w := c.w
	e := w.e
	delay := 50 * time.Millisecond
	var first, logged, refusedSince time.Time
	counted := 0 // outcomes of this batch in w.recording: waiting for the database
	defer func() { w.recording.Add(-int32(counted)) }()
	for tries := 1; ; tries++ {
		end := batch[0].hold.last()
		for _, p := range batch[1:] {
			if l := p.hold.last(); l.Before(end) {
				end = l
			}
		}
		cctx, cancel := context.WithDeadline(w.dbctx, end.Add(e.cfg.Lease))
		res, err := c.bs.RecordOutcomes(cctx, c.params(batch))
		cancel()
		if err == nil {
			if tries > 1 {
				e.log.Info("step outcome recorded after the database came back", "outcomes", len(batch),
					"tries", tries, "waited", time.Since(first).Round(time.Millisecond))
			}
			c.batches.Add(1)
			c.outcomes.Add(int64(len(batch)))
			for i, p := range batch {
				p.done <- completion{rec: res.Records[i]}
			}
			c.publish(res.Publish)
			return
		}
		if errors.Is(err, store.ErrUnstorable) && len(batch) == 1 {
			batch[0].done <- completion{err: err}
			return
		}
		// The database answered and refused the batch: one outcome in it may be at fault (its data,
		// its spawn), so the halves go on their own and the others are not held up for a lease.
		if len(batch) > 1 && (errors.Is(err, store.ErrUnstorable) || refused(err)) {
			half := len(batch) / 2
			c.commit(batch[:half])
			c.commit(batch[half:])
			return
		}
		now := time.Now()
		if tries == 1 {
			first = now
			counted = len(batch)
			w.recording.Add(int32(counted))
		}
		renew := !w.stopping.Load() && now.Sub(end) >= e.cfg.Lease/3
		var renewed bool
		kept := batch[:0:0]
		for _, p := range batch {
			if cause := p.gone(); cause != nil {
				p.done <- completion{err: fmt.Errorf("%w (and the step is no longer this worker's: %v)", err, cause)}
				continue
			}
			if renew && now.Sub(p.hold.last()) >= e.cfg.Lease/3 {
				rctx, cancel := context.WithTimeout(w.dbctx, e.cfg.Lease/3)
				_, herr := w.renewIn(rctx, p.ns, p.m, nil, p.st, p.hold)
				cancel()
				switch {
				case errors.Is(herr, store.ErrConflict) || errors.Is(herr, store.ErrNotFound):
					p.done <- completion{err: fmt.Errorf("record outcome: %w", herr)}
					continue
				case herr == nil:
					renewed = true
				}
			}
			if time.Until(p.hold.last().Add(e.cfg.Lease)) <= 0 {
				e.log.Error(err, "record step outcome: its lease ran out while the database was away; the lease rescuer will take the step over",
					"task", p.out.TaskID, "step", p.st.Name, "tries", tries, "waited", now.Sub(first).Round(time.Millisecond))
				p.done <- completion{err: err}
				continue
			}
			kept = append(kept, p)
		}
		if renewed && refusedSince.IsZero() {
			refusedSince = now
		}
		if !refusedSince.IsZero() && now.Sub(refusedSince) > e.cfg.Lease {
			e.log.Error(err, "record step outcomes: the database answers but refuses them; giving up", "outcomes", len(kept),
				"tries", tries, "waited", now.Sub(first).Round(time.Millisecond))
			for _, p := range kept {
				p.done <- completion{err: err}
			}
			return
		}
		if len(kept) == 0 {
			return
		}
		w.recording.Add(int32(len(kept) - counted))
		counted = len(kept)
		batch = kept
		if now.Sub(logged) >= recordLogEvery {
			logged = now
			e.log.Error(err, "record step outcome; trying again while its lease lasts", "outcomes", len(batch), "tries", tries)
		}
		left := time.Until(end.Add(e.cfg.Lease))
		time.Sleep(max(min(delay, left), time.Millisecond))
		delay = min(delay*2, recordRetryMax)
	}
}

// refused reports a PostgreSQL error that is the server's verdict on the statements (a
// constraint, a raised exception), not on the connection or the server's state: classes 08
// (connection), 40 (rollback, retried by the store), 53 (resources), 57 (operator intervention,
// such as a shutdown) and 58 (system) mean the database is away or busy, and the batch waits.
func refused(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || len(pgErr.Code) < 2 {
		return false
	}
	switch pgErr.Code[:2] {
	case "08", "40", "53", "57", "58":
		return false
	}
	return true
}

func (c *completer) params(batch []*pendingOutcome) store.RecordOutcomesParams {
	p := store.RecordOutcomesParams{Outcomes: make([]store.Outcome, len(batch)), OwnedQueue: c.owned}
	for i, b := range batch {
		p.Outcomes[i] = b.out
	}
	return p
}

// publish sends, once the batch has committed and its outcomes are answered, the messages of the
// steps it made ready, one Publish per namespace and delay, for at most a lease; a failure is
// logged, and the sweeper publishes them again.
func (c *completer) publish(groups []store.Publish) {
	if len(groups) == 0 {
		return
	}
	q := c.w.e.NewEnqueuer()
	for _, g := range groups {
		q.add(g.Namespace, g.Steps, g.Delay)
	}
	ctx, cancel := context.WithTimeout(c.w.dbctx, c.w.e.cfg.Lease)
	defer cancel()
	q.Flush(ctx)
}

// outcomeOf is the batched form of a classified outcome: its plan decided here, above the seam.
func (c *completer) outcomeOf(p store.OutcomeParams, m queue.Message) (store.Outcome, error) {
	plan, err := statemachine.PlanOutcome(statemachine.Attempt{Outcome: statemachine.Outcome(p.Kind), WorkerID: p.WorkerID,
		Attempt: p.Attempt, Error: p.Error, RetryDelay: p.RetryDelay, Isolated: p.Isolated})
	if err != nil {
		return store.Outcome{}, err
	}
	o := store.Outcome{TaskID: p.TaskID, StepID: p.StepID, WorkerID: p.WorkerID, Attempt: p.Attempt, Plan: plan,
		Result: p.Result, Error: p.Error, RetryDelay: p.RetryDelay, LeaseExpired: p.LeaseExpired, Spawn: p.Spawn,
		Namespace: p.Namespace, PriorityCredit: p.PriorityCredit}
	if c.owned {
		o.MessageID = m.ID
	}
	return o, nil
}

// record is the completer's form of workers.record: submit the outcome and wait for its batch.
// A Conflict or NotFound comes back as store.ErrConflict or store.ErrNotFound, as from
// RecordOutcome; an outcome found AlreadyRecorded (a retried commit had landed) as recorded.
// released is called once the outcome is submitted: the executor's slot is free from then on.
func (c *completer) record(ns string, m queue.Message, st *store.Step, p store.OutcomeParams, hold *leaseClock, gone func() error, released func()) (*store.OutcomeResult, error) {
	out, err := c.outcomeOf(p, m)
	if err != nil {
		return nil, err
	}
	po := &pendingOutcome{out: out, ns: ns, m: m, st: st, hold: hold, gone: gone, done: make(chan completion, 1)}
	if err := c.submit(po); err != nil {
		return nil, err
	}
	released()
	var r completion
	select {
	case r = <-po.done:
	case <-c.finished:
		select {
		case r = <-po.done:
		default: // submitted as the completer stopped, after its backlog was answered
			return nil, errCompleterStopped
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	res := &store.OutcomeResult{TaskID: p.TaskID, TaskState: r.rec.TaskState, Settled: r.rec.Settled, Released: r.rec.Released,
		Acked: r.rec.Acked}
	switch r.rec.Status {
	case store.Recorded:
		return res, nil
	case store.AlreadyRecorded:
		res.Settled = true // unknown: waking the task's waiters costs one read
		return res, nil
	case store.NotFound:
		return nil, fmt.Errorf("record outcome of step %s: %w", st.ID, store.ErrNotFound)
	default:
		return nil, fmt.Errorf("record outcome of step %s: %w", st.ID, store.ErrConflict)
	}
}

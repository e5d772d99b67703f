// Package memory is tasker's in-memory store: the whole engine in one process with no database,
// for unit tests of workflows and for demos that need no set-up.
//
//	st := memory.New()
//	engine, _ := tasker.NewEngine(tasker.Config{Store: st}) // the queue is st.DefaultQueue()
//
// It has the semantics of store/postgres, which is its specification: the same states and
// transitions, each state move a compare-and-set checked against the statemachine tables and
// recorded as a transition (one current per task and per step); the same task counters and
// settling; joins released in O(1) per parent; decisions, batches (held workers, failure
// strategies) and checkpoints; identity uniqueness; leases, heartbeats and the rescue of expired
// ones; cancellation; operator actions; leader election. Each operation runs under one mutex and is
// atomic: when it fails, everything it changed is undone, as a rolled-back transaction would be.
// JSON documents (contexts, results, errors, checkpoints, transition metadata) are returned as
// PostgreSQL's jsonb returns them (keys sorted, ", " and ": " between items), and times have
// PostgreSQL's microsecond precision, so a test that passes on one store passes on the other.
//
// Differences that remain: there are no transactions, so CreateTask with a caller's pgx.Tx (that
// is, Engine.CreateTaskTx with a non-nil tx) returns ErrNoTransactions; nothing survives the
// process, and nothing is deleted but by PurgeTasks (retention); several engines share the store
// only when they share the *Store value, in one process.
//
// The store sends the queue messages of an operation through its store.Enqueuer while it holds its
// lock, after the state change and before anything can observe it, so that a step's message is
// never read before the step is enqueued. The Enqueuer (for the engine, its queue's SendTx) must
// therefore not call back into the store; queue/memqueue, the store's DefaultQueue, does not.
package memory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-systems/tasker/internal/clock"
	"github.com/tasker-systems/tasker/queue"
	"github.com/tasker-systems/tasker/queue/memqueue"
	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

// ErrNoTransactions is returned by CreateTask when given a caller's transaction: the memory store
// cannot join it. Create tasks with Engine.CreateTask (or CreateTaskTx with a nil tx).
var ErrNoTransactions = errors.New("store/memory: the memory store has no transactions; create the task without a pgx.Tx")

// Store implements store.Store in memory. It is safe for concurrent use. Create it with New; the
// zero value is not usable.
type Store struct {
	q    *memqueue.Queue
	clk  memqueue.Clock // the time the store reads (WithClock)
	fake bool           // clk is not the system clock: leases stay on the system's (Store.live)

	limits sync.Map // the locks of the limit keys (limit.go), outside mu

	mu         sync.Mutex
	last       time.Time // the clock's latest reading: it never goes back
	templates  map[templateKey]*templateRow
	tasks      map[uuid.UUID]*taskRow
	identities map[identityKey]*taskRow
	steps      map[uuid.UUID]*stepRow
	edges      map[[2]uuid.UUID]struct{} // (from, to)
	inProgress map[uuid.UUID]*stepRow    // steps in in_progress, for ExpiredSteps
	leaders    map[string]*leaderRow
	seq        int64            // transition ids
	dead       []*deadLetterRow // dead-letter entries in the order written (deadletter.go)
	archive    archive          // the tasks PurgeTasks archived (retention.go)

	ev events // ListenEvents' subscribers

	// joinReady is statemachine.JoinReady for a finished parent's release; a test swaps in a
	// broken one to show that store/storetest catches it.
	joinReady func(state statemachine.StepState, parentsUnfinished int, held bool) bool
}

var (
	_ store.Store      = (*Store)(nil)
	_ store.BatchStore = (*Store)(nil)
)

// Option configures New.
type Option func(*Store)

// WithClock makes the store and its queue read c rather than the system clock (nil keeps the
// system clock): the store's now() — step due times (next_retry_at, a scheduled start),
// the timestamps of rows and transitions — and the queue's message visibility are measured on c.
// Give the engine the same clock (tasker.Config.Clock); taskertest.NewClock returns one a test
// moves by hand. Step leases and the maintenance leadership's term stay on the system clock, as
// the heartbeats and renewals that extend them do, so that moving c does not take a running step
// from its worker.
func WithClock(c memqueue.Clock) Option {
	return func(s *Store) {
		if c != nil && !clock.IsReal(c) {
			s.clk, s.fake = c, true
		}
	}
}

// New returns an empty store with its own queue.
func New(opts ...Option) *Store {
	s := &Store{
		clk:        clock.Real{},
		templates:  map[templateKey]*templateRow{},
		tasks:      map[uuid.UUID]*taskRow{},
		identities: map[identityKey]*taskRow{},
		steps:      map[uuid.UUID]*stepRow{},
		edges:      map[[2]uuid.UUID]struct{}{},
		inProgress: map[uuid.UUID]*stepRow{},
		leaders:    map[string]*leaderRow{},
		joinReady:  statemachine.JoinReady,
	}
	for _, o := range opts {
		o(s)
	}
	s.q = memqueue.New(memqueue.WithClock(s.clk))
	return s
}

// DefaultQueue returns the store's in-memory queue (one per store, shared by every engine on
// it): the engine's default when no queue is configured.
func (s *Store) DefaultQueue() queue.Queue { return s.q }

type templateKey struct{ namespace, name, version string }

type templateRow struct {
	definition json.RawMessage
	checksum   string
	createdAt  time.Time
	updatedAt  time.Time
}

type identityKey struct{ namespace, name, hash string }

// taskRow is a task with its steps and its audit trail.
type taskRow struct {
	t        store.Task // State and the counters live here
	isolated int        // steps_isolated
	steps    []*stepRow // in creation order
	byName   map[string]*stepRow
	trail    []*transition // the task's and its steps' transitions, in the order written
	cur      *transition   // the task's current transition
}

// stepRow is a step with its edges.
type stepRow struct {
	s                 store.Step
	task              *taskRow
	parentsTotal      int
	parentsUnfinished int
	held              bool
	parents           []*stepRow
	children          []*stepRow
	cur               *transition // the step's current transition
}

// transition is one row of the audit trail.
type transition struct {
	id         int64
	step       *stepRow // nil for the task's own transitions
	from, to   string
	event      string
	meta       json.RawMessage
	sortKey    int
	mostRecent bool
	createdAt  time.Time
}

type leaderRow struct {
	leaderID  string
	electedAt time.Time
	expiresAt time.Time
}

// clock returns the time at PostgreSQL's precision, never earlier than its previous reading, so
// that the audit trail's order by time is the order of writing. Called with s.mu held.
func (s *Store) clock() time.Time {
	t := s.clk.Now().Truncate(time.Microsecond)
	if t.Before(s.last) {
		t = s.last
	}
	s.last = t
	return t
}

// live is the time leases and the leadership's term are measured on: the system clock, which
// heartbeats and renewals run on; now is s.clock()'s reading, the same when the store's clock is
// the system's.
func (s *Store) live(now time.Time) time.Time {
	if s.fake {
		return time.Now().Truncate(time.Microsecond)
	}
	return now
}

// txn is one operation's changes: each is undone, newest first, when the operation fails.
type txn struct {
	s     *Store
	now   time.Time // PostgreSQL's now(): the operation's start
	live  time.Time // the system clock's now, for leases (Store.live)
	undo  []func()
	sends []send
}

// send is an Enqueuer call deferred to the end of the operation.
type send struct {
	q     store.Enqueuer
	ns    string
	refs  []store.StepRef
	delay time.Duration
}

// set assigns v to *p, remembering the old value.
func set[T any](tx *txn, p *T, v T) {
	old := *p
	tx.undo = append(tx.undo, func() { *p = old })
	*p = v
}

func (tx *txn) onUndo(f func()) { tx.undo = append(tx.undo, f) }

// enqueue schedules an Enqueuer call for the end of the operation; nil q sends nothing.
func (tx *txn) enqueue(q store.Enqueuer, ns string, refs []store.StepRef, delay time.Duration) {
	if q == nil || len(refs) == 0 {
		return
	}
	tx.sends = append(tx.sends, send{q, ns, refs, delay})
}

// write runs fn as one atomic operation under the store's lock. Its queue messages are sent last,
// still under the lock; when fn or a send fails, every change is undone (messages already sent by
// an earlier send of the same operation stay: their claims find the steps not enqueued and drop
// them).
func (s *Store) write(ctx context.Context, fn func(tx *txn) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	tx := &txn{s: s, now: s.clock()}
	tx.live = s.live(tx.now)
	err := fn(tx)
	for i := 0; err == nil && i < len(tx.sends); i++ {
		sd := tx.sends[i]
		err = sd.q.EnqueueTx(ctx, nil, sd.ns, sd.refs, sd.delay)
	}
	if err != nil {
		for i := len(tx.undo) - 1; i >= 0; i-- {
			tx.undo[i]()
		}
		return err
	}
	return nil
}

// read runs fn under the store's lock.
func (s *Store) read(ctx context.Context, fn func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return fn()
}

// setStepState moves a step's row to state to (the transition is written separately), keeping
// the index of steps in progress.
func (tx *txn) setStepState(st *stepRow, to statemachine.StepState) {
	from := st.s.State
	if from == to {
		return
	}
	set(tx, &st.s.State, to)
	s := tx.s
	id := st.s.ID
	switch {
	case to == statemachine.StepInProgress:
		s.inProgress[id] = st
		tx.onUndo(func() { delete(s.inProgress, id) })
	case from == statemachine.StepInProgress:
		delete(s.inProgress, id)
		tx.onUndo(func() { s.inProgress[id] = st })
	}
}

// checkTask enforces the PostgreSQL schema's checks on the counters (the counter domain and
// tasks_isolated_check).
func checkTask(t *taskRow) error {
	c := &t.t
	if c.StepsTotal < 0 || c.StepsUnfinished < 0 || c.StepsActive < 0 || c.StepsFailed < 0 || t.isolated < 0 {
		return fmt.Errorf(`value for domain counter violates check constraint "counter_check" (task %s: total %d, unfinished %d, active %d, failed %d, isolated %d)`,
			c.ID, c.StepsTotal, c.StepsUnfinished, c.StepsActive, c.StepsFailed, t.isolated)
	}
	if t.isolated > c.StepsFailed {
		return fmt.Errorf(`new row for relation "tasks" violates check constraint "tasks_isolated_check" (task %s: isolated %d, failed %d)`,
			c.ID, t.isolated, c.StepsFailed)
	}
	return nil
}

// checkStep enforces the PostgreSQL schema's checks on a step's counts (the counter and
// attempt_limit domains and steps_parents_check).
func checkStep(st *stepRow) error {
	if st.parentsUnfinished < 0 || st.s.Attempts < 0 {
		return fmt.Errorf(`value for domain counter violates check constraint "counter_check" (step %s: unfinished parents %d, attempts %d)`,
			st.s.ID, st.parentsUnfinished, st.s.Attempts)
	}
	if st.parentsUnfinished > st.parentsTotal {
		return fmt.Errorf(`new row for relation "steps" violates check constraint "steps_parents_check" (step %s: unfinished %d of %d)`,
			st.s.ID, st.parentsUnfinished, st.parentsTotal)
	}
	if st.s.MaxAttempts < 1 {
		return fmt.Errorf(`value for domain attempt_limit violates check constraint "attempt_limit_check" (step %s: max %d)`,
			st.s.ID, st.s.MaxAttempts)
	}
	return nil
}

// millis keeps a duration's milliseconds, as the steps table stores them.
func millis(d time.Duration) time.Duration { return time.Duration(d.Milliseconds()) * time.Millisecond }

// ptr returns a pointer to a copy of t.
func ptr(t time.Time) *time.Time { return &t }

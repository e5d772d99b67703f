// Package memqueue implements queue.Queue in memory, with the semantics of queue/pgqueue: messages
// stay until acknowledged, Read hides them for a visibility timeout and counts the read, a message
// whose timeout passes is delivered again, sends may be delayed, RetryLater and Extend move a
// message's visibility, and Listen wakes consumers when messages may be waiting.
//
// It is the queue of store/memory (its DefaultQueue), for unit tests of workflows and for demos that
// need no database. Everything lives in one process and is lost when it exits.
//
// There are no transactions: SendTx and AckTx ignore their pgx.Tx and act at once. With
// store/memory that keeps PGMQ's guarantee, because the store sends while it holds the lock under
// which it changes state, so no reader can see a message before the change it announces. Do not
// pair this queue with a store that commits later (such as store/postgres inside a caller's
// transaction): a message could then be read before the state change it announces is committed.
//
// Wake-ups come sooner than with pgqueue: Listen wakes a queue as soon as a message is sent to it
// or given back, and again when a delayed message or an expired visibility timeout makes one
// visible; the poll interval remains as a fallback.
package memqueue

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/tasker/internal/clock"
	"github.com/tasker-systems/tasker/queue"
)

// PollIntervalDefault is how often Listen wakes every listened queue when nothing else woke it.
const PollIntervalDefault = time.Second

// Queue is a queue.Queue in memory. It is safe for concurrent use. Create it with New; the zero
// value is not usable.
type Queue struct {
	pollInterval time.Duration
	clock        Clock

	mu        sync.Mutex
	nextID    int64
	queues    map[string]*msgList
	listeners map[*listener]struct{}
}

var _ queue.Queue = (*Queue)(nil)

// Option configures New.
type Option func(*Queue)

// WithPollInterval sets Listen's fallback poll (default PollIntervalDefault). Values <= 0 keep the
// default.
func WithPollInterval(d time.Duration) Option {
	return func(q *Queue) {
		if d > 0 {
			q.pollInterval = d
		}
	}
}

// Clock is the time the queue reads, the same interface as tasker.Clock: Now dates messages and
// decides which are visible, and At wakes Listen when a delayed message becomes visible. A test
// controls it with taskertest.NewClock.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// At runs f once the clock reaches t (at once when t is not after Now), and returns a
	// function that cancels it, reporting whether it did so before f ran. f must not block.
	At(t time.Time, f func()) (stop func() bool)
}

// WithClock makes the queue read c rather than the system clock (nil keeps the system clock):
// message times, visibility timeouts and delays are then measured on c, and Listen wakes a queue
// when c reaches the time a delayed message becomes visible. The fallback poll stays on the
// system clock.
func WithClock(c Clock) Option {
	return func(q *Queue) {
		if c != nil {
			q.clock = c
		}
	}
}

// New returns an empty queue.
func New(opts ...Option) *Queue {
	q := &Queue{
		pollInterval: PollIntervalDefault,
		clock:        clock.Real{},
		queues:       map[string]*msgList{},
		listeners:    map[*listener]struct{}{},
	}
	for _, o := range opts {
		o(q)
	}
	return q
}

// message is one queued payload.
type message struct {
	id         int64
	payload    []byte
	enqueuedAt time.Time
	vt         time.Time // visible when vt <= now
	readCt     int
	acked      bool
}

// msgList holds one queue's messages in id order; acked messages are dropped lazily.
type msgList struct {
	msgs  []*message
	byID  map[int64]*message
	acked int
}

func (q *Queue) list(name string) *msgList {
	l := q.queues[name]
	if l == nil {
		l = &msgList{byID: map[int64]*message{}}
		q.queues[name] = l
	}
	return l
}

func (l *msgList) remove(id int64) {
	m, ok := l.byID[id]
	if !ok {
		return
	}
	delete(l.byID, id)
	m.acked = true
	l.acked++
	if l.acked > 64 && l.acked*2 > len(l.msgs) {
		l.msgs = slices.DeleteFunc(l.msgs, func(m *message) bool { return m.acked })
		l.acked = 0
	}
}

// now is the queue's clock, at PostgreSQL's precision.
func (q *Queue) now() time.Time { return q.clock.Now().Truncate(time.Microsecond) }

// SendTx implements queue.Queue. tx is ignored: the messages are queued at once (see the package
// documentation). Every payload is checked before anything is queued: it must be valid JSON that
// PostgreSQL's jsonb would accept too (no \u0000 in strings), so that code tested here does not
// fail on pgqueue. Payloads are kept as given; compare them as JSON.
func (q *Queue) SendTx(ctx context.Context, _ pgx.Tx, queueName string, payloads [][]byte, delay time.Duration) error {
	if queueName == "" {
		return errors.New("memqueue: send: empty queue name")
	}
	if len(payloads) == 0 {
		return nil
	}
	for i, p := range payloads {
		if !json.Valid(p) {
			return fmt.Errorf("memqueue: send to queue %q: payload %d is not valid JSON", queueName, i)
		}
		if err := jsonbAccepts(p); err != nil {
			return fmt.Errorf("memqueue: send to queue %q: payload rejected as jsonb: payload %d: %w", queueName, i, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memqueue: send to queue %q: %w", queueName, err)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	t := q.now()
	vt := t.Add(delay) // a negative delay dates the messages back (a priority credit)
	l := q.list(queueName)
	for _, p := range payloads {
		q.nextID++
		m := &message{id: q.nextID, payload: slices.Clone(p), enqueuedAt: t, vt: vt}
		l.msgs = append(l.msgs, m)
		l.byID[m.id] = m
	}
	q.notifyLocked(queueName, delay <= 0)
	return nil
}

// Read implements queue.Queue: up to n visible messages, earliest visible first, each hidden for
// vt.
func (q *Queue) Read(ctx context.Context, queueName string, n int, vt time.Duration) ([]queue.Message, error) {
	if n <= 0 {
		return nil, fmt.Errorf("memqueue: read from queue %q: n must be positive, got %d", queueName, n)
	}
	if vt <= 0 {
		return nil, fmt.Errorf("memqueue: read from queue %q: visibility timeout must be positive, got %v", queueName, vt)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memqueue: read from queue %q: %w", queueName, err)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]queue.Message, 0, n)
	l := q.queues[queueName]
	if l == nil {
		return out, nil
	}
	t := q.now()
	// Earliest visible first, then in send order, as pgqueue reads (queue_messages_ready_idx).
	var visible []*message
	for _, m := range l.msgs {
		if !m.acked && !m.vt.After(t) {
			visible = append(visible, m)
		}
	}
	byVT := func(a, b *message) int {
		if c := a.vt.Compare(b.vt); c != 0 {
			return c
		}
		return cmp.Compare(a.id, b.id)
	}
	if !slices.IsSortedFunc(visible, byVT) {
		slices.SortFunc(visible, byVT)
	}
	for _, m := range visible {
		if len(out) == n {
			break
		}
		m.vt = t.Add(vt)
		m.readCt++
		out = append(out, queue.Message{ID: m.id, Queue: queueName, Payload: slices.Clone(m.payload),
			ReadCount: m.readCt, EnqueuedAt: m.enqueuedAt})
	}
	if len(out) > 0 {
		q.notifyLocked(queueName, false) // the listeners' next expiry may have changed
	}
	return out, nil
}

// Ack implements queue.Queue.
func (q *Queue) Ack(ctx context.Context, queueName string, ids ...int64) error {
	if len(ids) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memqueue: ack on queue %q: %w", queueName, err)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if l := q.queues[queueName]; l != nil {
		for _, id := range ids {
			l.remove(id)
		}
	}
	return nil
}

// AckTx implements queue.Queue. tx is ignored: the messages are removed at once.
func (q *Queue) AckTx(ctx context.Context, _ pgx.Tx, queueName string, ids ...int64) error {
	return q.Ack(ctx, queueName, ids...)
}

// RetryLater implements queue.Queue. A negative delay counts as 0.
func (q *Queue) RetryLater(ctx context.Context, queueName string, id int64, delay time.Duration) error {
	delay = max(delay, 0)
	if err := q.setVT(ctx, queueName, id, delay); err != nil {
		return fmt.Errorf("memqueue: retry message %d on queue %q later: %w", id, queueName, err)
	}
	return nil
}

// Extend implements queue.Queue. vt must be positive.
func (q *Queue) Extend(ctx context.Context, queueName string, id int64, vt time.Duration) error {
	if vt <= 0 {
		return fmt.Errorf("memqueue: extend message %d on queue %q: visibility timeout must be positive, got %v", id, queueName, vt)
	}
	if err := q.setVT(ctx, queueName, id, vt); err != nil {
		return fmt.Errorf("memqueue: extend message %d on queue %q: %w", id, queueName, err)
	}
	return nil
}

func (q *Queue) setVT(ctx context.Context, queueName string, id int64, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	l := q.queues[queueName]
	if l == nil {
		return queue.ErrNotFound
	}
	m, ok := l.byID[id]
	if !ok {
		return queue.ErrNotFound
	}
	m.vt = q.now().Add(d)
	q.notifyLocked(queueName, d == 0)
	return nil
}

// count returns how many messages the queue holds, visible or not.
func (q *Queue) count(queueName string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if l := q.queues[queueName]; l != nil {
		return len(l.byID)
	}
	return 0
}

// nextVisibleLocked returns the earliest time after t at which a message of the named queues
// becomes visible, and whether there is one, with the queues of messages that became visible
// after since and by t.
func (q *Queue) nextVisibleLocked(queues []string, since, t time.Time) (time.Time, bool, []string) {
	var next time.Time
	var became []string
	found := false
	for _, name := range queues {
		l := q.queues[name]
		if l == nil {
			continue
		}
		woke := false
		for _, m := range l.msgs {
			if m.acked {
				continue
			}
			if !m.vt.After(t) {
				if !woke && m.vt.After(since) {
					became, woke = append(became, name), true
				}
				continue
			}
			if !found || m.vt.Before(next) {
				next, found = m.vt, true
			}
		}
	}
	return next, found, became
}

// Package queue is tasker's delivery seam: how step messages travel from the process that makes a
// step ready to the worker that runs it.
//
// The semantics are PGMQ's, whatever the backend:
//
//   - Delivery is at least once. A message stays in its queue until it is acknowledged (Ack); a
//     worker that crashes, or that is too slow, lets the message be delivered again. Consumers must
//     therefore be idempotent; tasker's are, because every step claim is a compare-and-set in the
//     store.
//   - Read claims messages under a visibility timeout: a claimed message is hidden from every other
//     reader until the timeout passes, then it becomes visible again and its read count grows.
//     Extend pushes the timeout forward for long handlers; RetryLater gives a message back early.
//   - Sends are transactional: SendTx writes inside the caller's pgx.Tx, so a message exists only if
//     the state change that caused it commits, and a rolled-back transaction leaves no message.
//   - Wake-ups are hints, not deliveries: Listen tells a consumer that messages may be waiting, and
//     the consumer reads to find out. Wake-ups can be lost, duplicated or spurious; a poll interval
//     bounds how long a lost one delays work.
//
// queue/pgqueue implements Queue on a plain PostgreSQL table, with no extension needed.
package queue

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// Message is one delivery of a queued payload.
type Message struct {
	// ID identifies the message within its backend; pass it to Ack, Extend and RetryLater.
	ID int64
	// Queue is the name of the queue the message was read from.
	Queue string
	// Payload is the JSON document given to SendTx. A backend may normalise it (PostgreSQL's jsonb
	// reorders object keys and drops insignificant whitespace), so compare it as JSON, not as bytes.
	Payload []byte
	// ReadCount is how many times the message has been read, this delivery included: 1 on the first
	// delivery, more when an earlier reader let its visibility timeout pass without acking.
	ReadCount int
	// EnqueuedAt is when the message was sent.
	EnqueuedAt time.Time
}

// Queue is the delivery seam. Delivery is at least once.
//
// Queue names are free-form non-empty strings chosen by the engine; a queue needs no creating.
type Queue interface {
	// SendTx enqueues payloads (JSON documents) on the named queue inside the caller's transaction:
	// they become visible only if it commits (and wake-ups fire on commit). delay > 0 makes them
	// invisible until then. delay < 0 dates them back (a priority credit): they are visible at
	// once and, on a queue that reads in order of visibility time (pgqueue, memqueue), read before
	// the messages made visible in the last -delay; a broker without that order treats it as 0. An
	// invalid JSON payload is an error, reported before anything is written so that the caller's
	// transaction stays usable. No payloads is a no-op.
	SendTx(ctx context.Context, tx pgx.Tx, queue string, payloads [][]byte, delay time.Duration) error

	// Read claims up to n visible messages, hiding each for vt (the visibility timeout). Oldest
	// first: by the time they became visible (sent, delayed or dated back, or put back by a
	// timeout), then in send order, where the queue can tell; concurrent readers never get the same message (FOR UPDATE SKIP LOCKED). It returns an
	// empty slice, not an error, when nothing is visible. n and vt must be positive.
	Read(ctx context.Context, queue string, n int, vt time.Duration) ([]Message, error)

	// Ack removes messages for good. Ids that are already gone are ignored, so acking twice is
	// harmless.
	Ack(ctx context.Context, queue string, ids ...int64) error

	// AckTx is Ack inside the caller's transaction: the messages are removed only if it commits.
	AckTx(ctx context.Context, tx pgx.Tx, queue string, ids ...int64) error

	// RetryLater makes a message visible again after delay (0 = now), e.g. when a worker gives a
	// message back on shutdown. Its read count is kept. Returns ErrNotFound if the message is gone.
	RetryLater(ctx context.Context, queue string, id int64, delay time.Duration) error

	// Extend pushes a message's visibility timeout to now+vt (heartbeat for long handlers). Returns
	// ErrNotFound if the message is gone.
	Extend(ctx context.Context, queue string, id int64, vt time.Duration) error

	// Listen blocks until ctx ends, calling wake(queue) when messages may be available on one of
	// the named queues: after a notification, after (re)connecting (notifications may have been
	// missed), and on its own poll interval as a fallback. wake must not block for long, and may be
	// called from more than one goroutine at a time. Returns nil when ctx ends, after everything
	// Listen started has stopped.
	Listen(ctx context.Context, queues []string, wake func(queue string)) error
}

// ErrNotFound reports that a message no longer exists: it was acked, or it never existed.
var ErrNotFound = errors.New("queue: message not found")

// BatchSender is implemented by queues whose sends can join a pipelined pgx.Batch that the
// caller runs inside its own transaction, saving a round trip on the hot path. The send has the
// same effect as SendTx; its errors surface when the batch is closed.
type BatchSender interface {
	QueueSend(b *pgx.Batch, queue string, payloads [][]byte, delay time.Duration) error
}

// BatchAcker is implemented by queues whose acks can join a pipelined pgx.Batch that the caller
// runs inside its own transaction: the messages are removed only if it commits. The engine uses it
// to acknowledge a step's message in the transaction that records the step's outcome, saving a
// round trip.
type BatchAcker interface {
	QueueAck(b *pgx.Batch, queue string, ids ...int64) error
}

// BatchHolder is implemented by queues that can send, inside a pipelined pgx.Batch run in the
// caller's transaction, a message its sender holds already: hidden for vt and counted as read once,
// as if the sender had read it. *id receives the message's ID when the batch runs. The engine uses
// it when a worker takes on, in the transaction that completes a step, a step that this completion
// makes ready: the message exists (for heartbeats, acks, and redelivery should the worker die) but
// no other worker reads it.
type BatchHolder interface {
	QueueSendHeld(b *pgx.Batch, queue string, payload []byte, vt time.Duration, id *int64) error
}

// Publisher is implemented by queues that live outside the database, such as RabbitMQ, whose
// sends cannot join a PostgreSQL transaction. With such a queue the engine records a step as
// enqueued inside its transaction and publishes the step's message after the commit; a sweeper
// run by the elected engine re-publishes, from database state, any message lost between the two
// (a crash, a broker outage). Duplicates are harmless: a step's claim is a compare-and-set, so a
// second delivery is recognised and dropped. Such a queue's SendTx should return
// ErrNotTransactional.
type Publisher interface {
	Publish(ctx context.Context, queue string, payloads [][]byte, delay time.Duration) error
}

// ErrNotTransactional is returned by SendTx of a queue that can only publish after a commit.
var ErrNotTransactional = errors.New("queue: this queue cannot send inside a transaction; use Publish after commit")

// ReadyCounter is implemented by Publisher queues that can tell how many messages wait ready (not
// yet delivered to any consumer) in a queue. The engine's sweeper asks before it re-publishes the
// messages of steps that waited enqueued too long: while a queue has a backlog, such a step's
// message is most likely in it, and re-publishing would only add duplicates to the backlog, over
// and over. A message really lost is re-published once the backlog has drained (or, in a queue
// saturated for good, after a bounded wait).
type ReadyCounter interface {
	ReadyCount(ctx context.Context, queue string) (int, error)
}

// NameValidator is implemented by queues whose backend limits the names of queues, such as
// RabbitMQ (255 bytes for a broker queue's name, prefix and suffixes included). The engine asks it
// when a template is registered, so that a namespace the queue cannot serve is refused then rather
// than failing at every delivery. ValidateQueueName returns nil when name can be used as a queue
// name, and an error that says why not otherwise.
type NameValidator interface {
	ValidateQueueName(name string) error
}

// DelayLimiter is implemented by Publisher queues that cannot delay a message beyond some length,
// such as RabbitMQ (its per-queue TTL timers stop at about 24.8 days). The engine does not publish
// a message whose delay is longer (a step's retry after a backoff of a month, say): the step waits
// in the database, and the sweeper publishes its message once it is due.
type DelayLimiter interface {
	MaxDelay() time.Duration
}

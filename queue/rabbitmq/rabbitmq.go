// Package rabbitmq implements queue.Queue and queue.Publisher on RabbitMQ with
// github.com/rabbitmq/amqp091-go.
//
// # Topology
//
// Every queue name given to the methods (tasker uses one per namespace) maps to a durable broker
// queue named Prefix+name ("tasker.shop"), declared lazily on first use, of the type chosen with
// WithQueueType (quorum by default). Beside it live:
//
//   - a dead-letter queue, Prefix+name+"@dead", bound to the direct exchange Prefix+"dead-letter",
//     which is the main queue's dead-letter exchange. Messages land there when Reject is called (a
//     payload that can never be handled) and when a message is delivered once more after
//     WithMaxReads reads (it is rejected on arrival, never returned by Read). Nothing consumes
//     the dead-letter queue: it is for operators (DeadLetterQueueName).
//   - delay queues, Prefix+name+"@delay."+milliseconds, for Publish and RetryLater with a delay;
//     see below.
//
// Names must not contain "@", which tasker's namespaces never do, so that these cannot collide.
//
// # Delivery
//
// Publish sends persistent messages and returns nil only once the broker has confirmed every one
// of them (publisher confirms): then they are stored, on disk, in their queue. An error means that
// some of them may not have been. When the connection or channel closes under a Publish, it waits
// for the new connection and sends again what was not confirmed, within the publish timeout (so a
// message may be stored twice). Messages are published mandatory: one that no queue accepted (a
// queue deleted behind this process's back) is published once more after declaring the queue
// again. SendTx returns queue.ErrNotTransactional: RabbitMQ cannot join a PostgreSQL transaction,
// so the engine publishes after its commit and re-publishes from database state what a crash or an
// outage lost.
//
// Read does not poll the broker: each queue that is read or listened to has a consumer (its own
// channel, with a prefetch of WithPrefetch messages) whose deliveries are buffered in the process,
// and Read hands out up to n of them at once, returning an empty slice when none is buffered.
// Message.ID is a number unique within this Queue that stands for the delivery (its channel and
// delivery tag). ReadCount is 1 on the first delivery; redeliveries count from the broker's
// x-delivery-count header on quorum queues, and from the redelivered flag on classic ones (which
// can only tell 1 from "more than 1": 2). RetryLater with a delay republishes the message and
// carries its read count in a header.
//
// # Visibility timeout
//
// AMQP has none: an unacknowledged delivery stays with its consumer until it is acked, rejected or
// the channel closes. The Queue keeps PGMQ's contract in the process instead: Read starts a
// visibility timeout of vt for each message it returns, Extend pushes it forward, and a message
// neither acked nor extended in time is given back to the broker (basic.nack with requeue), which
// delivers it again, to this process or another, with a higher read count. The id of a message
// given back is void: Ack, Extend and RetryLater report queue.ErrNotFound for it (Ack ignores ids
// already acked, as the interface asks). A process that dies loses its connection, and the broker
// redelivers everything it held at once, without waiting for any timeout.
//
// RabbitMQ's own consumer_timeout (30 minutes by default) still closes a channel whose delivery
// stays unacknowledged for longer than that, even one extended all along; its deliveries are then
// voided and redelivered. Raise it on the broker for longer handlers.
//
// # Delays
//
// RabbitMQ without plugins has no delayed delivery, and it expires messages only at the head of a
// queue, so messages with different delays must not share one: a long delay at the head would hold
// up a short one behind it. Publish with delay > 0 therefore sends to a delay queue in which every
// message has the same TTL (x-message-ttl), and whose dead-letter exchange, the default one,
// routes expired messages to the main queue. The delay is rounded up to the next step of a fixed
// series whose steps grow by a tenth (1, 2, ..., 10, 11, 13, 15, ... milliseconds), so that no
// message comes early, none more than about 10% late, and a queue needs about 24 delay queues per
// factor of ten of delays it uses. A delay queue expires (x-expires) once unused for its TTL plus
// DelayQueueGrace; every Publish into it renews it. With quorum queues (the default) delay queues
// are quorum queues too, dead-lettering at least once (x-dead-letter-strategy), so a delayed
// message survives a broker restart; classic delay queues dead-letter at most once, and a message
// lost there is published again by tasker's sweeper.
//
// # Connections
//
// The Queue holds two connections, one for publishing and one for consuming, as RabbitMQ
// recommends (flow control blocks a publishing connection, and acks must still get through).
// When either drops (a broker restart, a network fault, a connection closed by an operator), it is
// re-established with exponential backoff and jitter (WithReconnectBackoff) until Close; consumers
// start again on the new connection and wake their listeners. Deliveries of a lost channel are
// void (the broker redelivers them). While the publishing connection is down, Publish waits for it
// up to the publish timeout and then fails with ErrNotConnected; while the consuming one is down,
// Read finds nothing (a retrying reader would only add noise to the Queue's own log) and Listen
// wakes once the consumer is back.
//
// # Use with tasker
//
// Give the Queue to the engine as its queue. Because it implements queue.Publisher, the engine
// records each step as enqueued inside its transaction, publishes the step's message after the
// commit, and its sweeper publishes again, from database state, the messages of steps that stay
// enqueued too long (lost between a commit and its publish, or in an outage). A message delivered
// twice is dropped at the step's claim, a compare-and-set in the database. Keep WithPrefetch near
// the engine's concurrency: what one process has buffered waits for it even when others are idle.
package rabbitmq

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/tasker-systems/tasker/queue"
)

// PrefixDefault starts the name of every broker queue and exchange this package declares.
const PrefixDefault = "tasker."

// PrefetchDefault is how many unacknowledged deliveries the broker sends each consumer (AMQP
// basic.qos): messages delivered and not yet read, plus messages read and not yet acked.
const PrefetchDefault = 32

// PollIntervalDefault is how often Listen wakes consumers when no delivery arrives.
const PollIntervalDefault = time.Second

// PublishTimeoutDefault bounds a Publish: waiting for the connection, declaring queues and waiting
// for the broker's confirms.
const PublishTimeoutDefault = 5 * time.Second

// MaxReadsDefault is how many times a message may be read before its next delivery is
// dead-lettered.
const MaxReadsDefault = 100

// ReconnectDelayDefault and ReconnectDelayMaxDefault bound the exponential backoff between
// connection attempts after a connection drops.
const (
	ReconnectDelayDefault    = 100 * time.Millisecond
	ReconnectDelayMaxDefault = 15 * time.Second
)

// ConnectionNameDefault names this package's connections in the broker's management tools; the
// publishing and consuming connections add " publish" and " consume".
const ConnectionNameDefault = "tasker"

// DelayQueueGrace is how long a delay queue outlives its last message before the broker deletes it.
const DelayQueueGrace = 5 * time.Minute

// QueueType is the x-queue-type of the main and dead-letter queues.
type QueueType string

// The queue types this package supports.
const (
	// QueueTypeQuorum is RabbitMQ's replicated queue, the recommended durable type. It counts
	// redeliveries (x-delivery-count), so ReadCount is exact.
	QueueTypeQuorum QueueType = "quorum"
	// QueueTypeClassic is the single-node queue. It only flags redeliveries, so ReadCount is 1 or 2.
	QueueTypeClassic QueueType = "classic"
)

// ErrNotConnected reports a Publish that found no connection to the broker within its timeout; the
// connection is being re-established.
var ErrNotConnected = errors.New("rabbitmq: not connected to the broker")

// ErrClosed reports a call on a Queue after Close.
var ErrClosed = errors.New("rabbitmq: queue closed")

// Queue is a queue.Queue and queue.Publisher on RabbitMQ. It is safe for concurrent use. Create it
// with New and stop it with Close.
type Queue struct {
	url      string
	opt      options
	instance string // tells this Queue's message ids and consumer tags from other processes' ones
	log      logr.Logger

	pub, sub *link
	pubState publisher

	nextID atomic.Int64

	mu         sync.Mutex
	closed     bool
	deliveries map[int64]*delivery
	consumers  map[string]*consumer // the running consumer of each queue name
	listeners  map[string][]*listener
	declared   map[string]declaration // broker queue name -> last declaration

	// declareMu serialises this process's declarations: RabbitMQ 3.10 acknowledges a quorum queue's
	// declaration to a second declarer before the queue has started, and a consume then crashes the
	// channel with INTERNAL_ERROR; the first declarer's answer comes only once the queue runs.
	declareMu sync.Mutex

	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the Queue starts
}

var (
	_ queue.Queue         = (*Queue)(nil)
	_ queue.Publisher     = (*Queue)(nil)
	_ queue.NameValidator = (*Queue)(nil)
)

type options struct {
	prefix         string
	prefetch       int
	pollInterval   time.Duration
	publishTimeout time.Duration
	maxReads       int
	queueType      QueueType
	connName       string
	reconnectMin   time.Duration
	reconnectMax   time.Duration
	amqpConfig     amqp.Config
	log            logr.Logger
}

// Option configures New.
type Option func(*options)

// WithPrefix sets the prefix of broker queue and exchange names (default PrefixDefault).
func WithPrefix(p string) Option { return func(o *options) { o.prefix = p } }

// WithPrefetch sets each consumer's prefetch (default PrefetchDefault). Deliveries buffered in one
// process wait for it even when another is idle, so keep it near the engine's concurrency. Values
// <= 0 keep the default.
func WithPrefetch(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.prefetch = n
		}
	}
}

// WithPollInterval sets Listen's fallback wake-up (default PollIntervalDefault). Values <= 0 keep
// the default.
func WithPollInterval(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.pollInterval = d
		}
	}
}

// WithPublishTimeout bounds each Publish (default PublishTimeoutDefault); a shorter deadline on
// its context wins. Values <= 0 keep the default.
func WithPublishTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.publishTimeout = d
		}
	}
}

// WithMaxReads sets how many reads a message may have: a delivery whose read count is higher is
// dead-lettered on arrival instead of being buffered for Read (default MaxReadsDefault; 0 or less:
// no limit).
// Crash loops are bounded by tasker's attempts in the database already; this is the last resort
// against a message that keeps coming back.
func WithMaxReads(n int) Option { return func(o *options) { o.maxReads = n } }

// WithQueueType sets the type of the main and dead-letter queues (default QueueTypeQuorum). A queue
// that already exists with another type makes its declaration fail.
func WithQueueType(t QueueType) Option { return func(o *options) { o.queueType = t } }

// WithConnectionName names the connections in the broker's management tools (default
// ConnectionNameDefault).
func WithConnectionName(name string) Option { return func(o *options) { o.connName = name } }

// WithReconnectBackoff sets the first and the longest wait between connection attempts (defaults
// ReconnectDelayDefault, ReconnectDelayMaxDefault); waits double in between, with jitter. Values
// <= 0 keep the defaults.
func WithReconnectBackoff(initial, maxDelay time.Duration) Option {
	return func(o *options) {
		if initial > 0 {
			o.reconnectMin = initial
		}
		if maxDelay > 0 {
			o.reconnectMax = maxDelay
		}
	}
}

// WithAMQPConfig sets the connection configuration (TLS, SASL, heartbeat, vhost, properties); the
// URL given to New still wins where amqp091-go says it does. Its Recovery must be nil: this package
// recovers connections itself.
func WithAMQPConfig(cfg amqp.Config) Option { return func(o *options) { o.amqpConfig = cfg } }

// WithLogger sets where connection trouble and dropped messages are reported (default: discarded).
func WithLogger(l logr.Logger) Option { return func(o *options) { o.log = l } }

// New connects to the broker at url (amqp://user:password@host:5672/vhost) and returns a Queue.
// It fails when the broker cannot be reached; after that, lost connections are re-established on
// their own until Close.
func New(url string, opts ...Option) (*Queue, error) {
	o := options{
		prefix:         PrefixDefault,
		prefetch:       PrefetchDefault,
		pollInterval:   PollIntervalDefault,
		publishTimeout: PublishTimeoutDefault,
		maxReads:       MaxReadsDefault,
		queueType:      QueueTypeQuorum,
		connName:       ConnectionNameDefault,
		reconnectMin:   ReconnectDelayDefault,
		reconnectMax:   ReconnectDelayMaxDefault,
		log:            logr.Discard(),
	}
	for _, opt := range opts {
		opt(&o)
	}
	switch o.queueType {
	case QueueTypeQuorum, QueueTypeClassic:
	default:
		return nil, fmt.Errorf("rabbitmq: unknown queue type %q (want %q or %q)", o.queueType, QueueTypeQuorum, QueueTypeClassic)
	}
	if o.amqpConfig.Recovery != nil {
		return nil, errors.New("rabbitmq: amqp.Config.Recovery must be nil: this package reconnects by itself")
	}
	q := &Queue{
		url:        url,
		opt:        o,
		instance:   rand.Text()[:12],
		log:        o.log,
		deliveries: map[int64]*delivery{},
		consumers:  map[string]*consumer{},
		listeners:  map[string][]*listener{},
		declared:   map[string]declaration{},
	}
	q.ctx, q.cancel = context.WithCancel(context.Background())
	q.pub = newLink(q, "publish")
	q.sub = newLink(q, "consume")
	pubConn, err := q.pub.dial()
	if err != nil {
		q.cancel()
		return nil, fmt.Errorf("rabbitmq: connect to the broker: %w", err)
	}
	subConn, err := q.sub.dial()
	if err != nil {
		q.cancel()
		_ = pubConn.Close()
		return nil, fmt.Errorf("rabbitmq: connect to the broker: %w", err)
	}
	q.pub.start(pubConn)
	q.sub.start(subConn)
	q.wg.Add(1)
	go func() {
		defer q.wg.Done()
		q.reap()
	}()
	return q, nil
}

// Close stops every consumer, closes both connections (the broker redelivers whatever was not
// acked) and waits for every goroutine the Queue started. Messages read and not settled are void
// afterwards: Ack reports them with queue.ErrNotFound. Calls after the first do nothing. Close
// returns nil (a connection that is already broken is simply dropped); the result makes the Queue
// an io.Closer.
func (q *Queue) Close() error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.closed = true
	q.cancel()
	q.mu.Unlock()

	q.pub.close()
	q.sub.close()
	q.wg.Wait()
	return nil
}

// spawn runs f in a goroutine that Close waits for; it reports false, running nothing, once Close
// has begun.
func (q *Queue) spawn(f func()) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	q.wg.Add(1)
	go func() {
		defer q.wg.Done()
		f()
	}()
	return true
}

// SendTx implements queue.Queue: it always returns queue.ErrNotTransactional. Publish after the
// transaction commits instead.
func (q *Queue) SendTx(_ context.Context, _ pgx.Tx, _ string, _ [][]byte, _ time.Duration) error {
	return queue.ErrNotTransactional
}

// QueueName returns the broker's name of the queue called name.
func (q *Queue) QueueName(name string) string { return q.opt.prefix + name }

// DeadLetterQueueName returns the broker's name of the dead-letter queue of the queue called name.
func (q *Queue) DeadLetterQueueName(name string) string { return q.QueueName(name) + "@dead" }

// delayQueueName is the delay queue of the queue called name for a TTL of ms milliseconds.
func (q *Queue) delayQueueName(name string, ms int64) string {
	return fmt.Sprintf("%s@delay.%d", q.QueueName(name), ms)
}

func (q *Queue) deadLetterExchange() string { return q.opt.prefix + "dead-letter" }

// ValidateQueueName implements queue.NameValidator: it reports a name that cannot name a queue
// here, because it is empty, holds "@" (reserved for this package's dead-letter and delay
// queues), or would make a broker queue name (Prefix+name, and its longest delay queue,
// Prefix+name+"@delay."+milliseconds) longer than AMQP's 255 bytes.
func (q *Queue) ValidateQueueName(name string) error { return q.checkName(name) }

// MaxDelay implements queue.DelayLimiter: the longest delay Publish accepts, about 24.8 days (the
// broker keeps message TTLs in 32-bit millisecond timers).
func (q *Queue) MaxDelay() time.Duration { return time.Duration(maxDelayMillis) * time.Millisecond }

// maxBrokerName is AMQP's limit on a queue's name, in bytes (a short string).
const maxBrokerName = 255

// checkName rejects queue names that would be ambiguous or that the broker refuses.
func (q *Queue) checkName(name string) error {
	switch {
	case name == "":
		return errors.New("empty queue name")
	case strings.Contains(name, "@"):
		return fmt.Errorf("queue name %q contains \"@\", which this package reserves", name)
	case len(q.delayQueueName(name, 1<<31)) > maxBrokerName:
		room := maxBrokerName - len(q.delayQueueName("", 1<<31))
		return fmt.Errorf("queue name of %d bytes is too long: with the prefix %q and the longest delay-queue suffix it passes the broker's %d-byte limit; at most %d bytes fit",
			len(name), q.opt.prefix, maxBrokerName, room)
	}
	return nil
}

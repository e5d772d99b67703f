package rabbitmq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Headers this package sets on every message.
const (
	// headerReads carries the read count of a message republished by RetryLater.
	headerReads = "tasker-reads"
	// headerEnqueuedAt is when the payload was first published, in microseconds since the Unix
	// epoch (the AMQP timestamp property has whole seconds only).
	headerEnqueuedAt = "tasker-enqueued-at"
)

// delayRedeclare is how often a delay queue in use is declared again, renewing its x-expires. It
// must stay well below DelayQueueGrace, so that a delay queue never expires while it holds a
// message: one published right before the renewal is due leaves at delay+delayRedeclare, before
// the queue's delay+DelayQueueGrace of disuse has passed.
const delayRedeclare = time.Minute

// maxDelayMillis is the longest delay (about 24.8 days): x-message-ttl and x-expires are
// milliseconds the broker keeps in 32-bit timers.
const maxDelayMillis = 1<<31 - 1 - int64(DelayQueueGrace/time.Millisecond)

// errReturned reports messages the broker could route to no queue.
var errReturned = errors.New("the broker routed the message to no queue (was the queue deleted?)")

// declaration remembers that a broker queue was declared on one publishing connection.
type declaration struct {
	gen uint64
	at  time.Time
}

// publisher is the confirm-mode channel that Publish uses, one per publishing connection.
type publisher struct {
	mu  sync.Mutex
	gen uint64
	ch  *amqp.Channel
	ret *returns

	seq atomic.Int64 // numbers message ids
}

// Publish implements queue.Publisher: it sends payloads (JSON documents) to the named queue as
// persistent messages and returns once the broker has confirmed them all. delay > 0 holds them in
// a delay queue first (see the package documentation). An invalid JSON payload is an error,
// reported before anything is sent; no payloads is a no-op. After an error some of the payloads
// may have been stored: publishing again may duplicate them, which tasker's consumers tolerate.
// Publish waits for a lost connection to come back, up to WithPublishTimeout.
func (q *Queue) Publish(ctx context.Context, name string, payloads [][]byte, delay time.Duration) error {
	if err := q.checkName(name); err != nil {
		return fmt.Errorf("rabbitmq: publish: %w", err)
	}
	if len(payloads) == 0 {
		return nil
	}
	for i, p := range payloads {
		if !json.Valid(p) {
			return fmt.Errorf("rabbitmq: publish to queue %q: payload %d is not valid JSON", name, i)
		}
	}
	ttl, err := delayMillis(delay)
	if err != nil {
		return fmt.Errorf("rabbitmq: publish to queue %q: %w", name, err)
	}
	now := time.Now()
	msgs := make([]amqp.Publishing, len(payloads))
	for i, p := range payloads {
		msgs[i] = message(p, 0, now)
	}
	if err := q.publish(ctx, name, msgs, ttl); err != nil {
		return fmt.Errorf("rabbitmq: publish to queue %q: %w", name, err)
	}
	return nil
}

// message builds a persistent publishing of payload.
func message(payload []byte, reads int, enqueuedAt time.Time) amqp.Publishing {
	headers := amqp.Table{headerEnqueuedAt: enqueuedAt.UnixMicro()}
	if reads > 0 {
		headers[headerReads] = int64(reads)
	}
	return amqp.Publishing{
		Headers:      headers,
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent,
		Timestamp:    enqueuedAt,
		Body:         payload,
	}
}

// delayMillis turns a delay into the TTL of its delay queue: 0 for none; else whole milliseconds
// rounded up to the next step of a fixed series (1, 2, ..., 10, 11, 13, 15, 17, 19, 21, 24, ...)
// whose steps grow by a tenth, so that a queue has few distinct delay queues (about 24 per factor
// of ten) and no message leaves early or more than about 10% late. Integer arithmetic keeps the
// series the same in every process.
func delayMillis(d time.Duration) (int64, error) {
	if d <= 0 {
		return 0, nil
	}
	ms := int64((d + time.Millisecond - 1) / time.Millisecond)
	if ms > maxDelayMillis {
		return 0, fmt.Errorf("delay %v is longer than the broker's timers allow (%v)", d, time.Duration(maxDelayMillis)*time.Millisecond)
	}
	if ms <= 10 {
		return ms, nil
	}
	step := int64(10)
	for step < ms {
		step += (step + 9) / 10
	}
	return min(step, maxDelayMillis), nil
}

// publish sends msgs to the queue called name (to its delay queue for ttl when ttl > 0) and waits
// for the confirms. Messages returned as unroutable are published once more, after declaring
// the queues again; a connection or channel that closes under a publish is waited for and the
// unconfirmed messages published again, within the publish timeout.
func (q *Queue) publish(ctx context.Context, name string, msgs []amqp.Publishing, ttl int64) error {
	if q.ctx.Err() != nil {
		return ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, q.opt.publishTimeout)
	defer cancel()
	returns := 0
	for {
		rest, err := q.publishOnce(ctx, name, msgs, ttl)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, errReturned) && returns == 0:
			returns++
		case errors.Is(err, errConnectionLost) && ctx.Err() == nil && q.ctx.Err() == nil:
			t := time.NewTimer(retryPause)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return err
			}
		default:
			return err
		}
		msgs = rest
	}
}

// retryPause is the wait before publishing again on a connection that closed under a publish,
// long enough for the link to notice.
const retryPause = 20 * time.Millisecond

// errConnectionLost reports a publish cut short by a closed channel or connection.
var errConnectionLost = errors.New("the connection or channel closed before the broker confirmed the message")

func (q *Queue) publishOnce(ctx context.Context, name string, msgs []amqp.Publishing, ttl int64) ([]amqp.Publishing, error) {
	conn, gen, err := q.pub.await(ctx, nil)
	if err != nil {
		if errors.Is(err, ErrClosed) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", ErrNotConnected, err)
	}
	target, err := q.declareForPublish(conn, gen, name, ttl)
	if err != nil {
		if conn.IsClosed() || errors.Is(err, amqp.ErrClosed) {
			return msgs, lost(err)
		}
		return nil, err
	}
	ch, ret, err := q.pubState.channel(q, conn, gen)
	if err != nil {
		if conn.IsClosed() || errors.Is(err, amqp.ErrClosed) {
			return msgs, lost(err)
		}
		return nil, fmt.Errorf("open publishing channel: %w", err)
	}
	confirms := make([]*amqp.DeferredConfirmation, 0, len(msgs))
	for i := range msgs {
		msgs[i].MessageId = q.instance + "-" + strconv.FormatInt(q.pubState.seq.Add(1), 10)
		// Mandatory: a message that reaches no queue comes back (basic.return) instead of vanishing.
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", target, true, false, msgs[i])
		if err != nil {
			if errors.Is(err, amqp.ErrClosed) {
				// Whether the earlier ones arrived is unknown: send them all again.
				return msgs, lost(err)
			}
			return nil, err
		}
		confirms = append(confirms, dc)
	}
	var returned []amqp.Publishing
	for i, dc := range confirms {
		acked, err := dc.WaitContext(ctx)
		if err != nil {
			return nil, fmt.Errorf("waiting for the broker's confirm: %w", err)
		}
		if !acked {
			if ch.IsClosed() {
				return append(returned, msgs[i:]...), errConnectionLost
			}
			return nil, errors.New("the broker refused the message (basic.nack)")
		}
		if ret.returned(msgs[i].MessageId) {
			returned = append(returned, msgs[i])
		}
	}
	if len(returned) > 0 {
		q.mu.Lock()
		delete(q.declared, q.QueueName(name))
		delete(q.declared, target)
		q.mu.Unlock()
		return returned, errReturned
	}
	return nil, nil
}

// lost marks err as a publish cut short by a closed connection or channel.
func lost(err error) error { return fmt.Errorf("%w: %w", errConnectionLost, err) }

// declareForPublish declares, unless this connection did already, the queue called name with its
// dead-letter queue, and the delay queue for ttl when ttl > 0. It returns the queue to publish to.
func (q *Queue) declareForPublish(conn *amqp.Connection, gen uint64, name string, ttl int64) (string, error) {
	main := q.QueueName(name)
	target := main
	now := time.Now()
	q.mu.Lock()
	d, ok := q.declared[main]
	needMain := !ok || d.gen != gen
	needDelay := false
	if ttl > 0 {
		target = q.delayQueueName(name, ttl)
		d, ok := q.declared[target]
		needDelay = !ok || d.gen != gen || now.Sub(d.at) > delayRedeclare
	}
	q.mu.Unlock()
	if !needMain && !needDelay {
		return target, nil
	}
	// A refused declaration closes its channel: use one of its own.
	ch, err := conn.Channel()
	if err != nil {
		return "", fmt.Errorf("open channel: %w", err)
	}
	defer func() { _ = ch.Close() }()
	if needMain {
		if err := q.declareTopology(ch, name); err != nil {
			return "", err
		}
	}
	if needDelay {
		if err := q.declareDelay(ch, name, ttl); err != nil {
			return "", err
		}
	}
	q.mu.Lock()
	if needMain {
		q.declared[main] = declaration{gen: gen, at: now}
	}
	if needDelay {
		q.declared[target] = declaration{gen: gen, at: now}
	}
	q.mu.Unlock()
	return target, nil
}

// declareTopology declares the queue called name, its dead-letter exchange and queue.
func (q *Queue) declareTopology(ch *amqp.Channel, name string) error {
	q.declareMu.Lock()
	defer q.declareMu.Unlock()
	main, dead, dlx := q.QueueName(name), q.DeadLetterQueueName(name), q.deadLetterExchange()
	if err := ch.ExchangeDeclare(dlx, amqp.ExchangeDirect, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %q: %w", dlx, err)
	}
	if _, err := ch.QueueDeclare(dead, true, false, false, false, amqp.Table{amqp.QueueTypeArg: string(q.opt.queueType)}); err != nil {
		return fmt.Errorf("declare queue %q: %w", dead, err)
	}
	// Dead-lettered messages keep their routing key, the main queue's name.
	if err := ch.QueueBind(dead, main, dlx, false, nil); err != nil {
		return fmt.Errorf("bind queue %q: %w", dead, err)
	}
	args := amqp.Table{amqp.QueueTypeArg: string(q.opt.queueType), "x-dead-letter-exchange": dlx}
	if _, err := ch.QueueDeclare(main, true, false, false, false, args); err != nil {
		return fmt.Errorf("declare queue %q: %w", main, err)
	}
	return nil
}

// declareDelay declares the delay queue of the queue called name for ttl milliseconds: its messages
// expire after ttl and its dead-letter exchange, the default one, routes them to the main queue.
func (q *Queue) declareDelay(ch *amqp.Channel, name string, ttl int64) error {
	dq := q.delayQueueName(name, ttl)
	args := amqp.Table{
		amqp.QueueTypeArg:           string(q.opt.queueType),
		amqp.QueueMessageTTLArg:     ttl,
		amqp.QueueTTLArg:            ttl + DelayQueueGrace.Milliseconds(),
		"x-dead-letter-exchange":    "",
		"x-dead-letter-routing-key": q.QueueName(name),
	}
	if q.opt.queueType == QueueTypeQuorum {
		args["x-dead-letter-strategy"] = "at-least-once"
		args[amqp.QueueOverflowArg] = "reject-publish"
	}
	if _, err := ch.QueueDeclare(dq, true, false, false, false, args); err != nil {
		return fmt.Errorf("declare queue %q: %w", dq, err)
	}
	return nil
}

// channel returns the confirm-mode channel for the connection of generation gen, opening it when
// there is none or the last one closed.
func (p *publisher) channel(q *Queue, conn *amqp.Connection, gen uint64) (*amqp.Channel, *returns, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ch != nil && p.gen == gen && !p.ch.IsClosed() {
		return p.ch, p.ret, nil
	}
	ch, err := conn.Channel()
	if err != nil {
		return nil, nil, err
	}
	if err := ch.Confirm(false); err != nil {
		_ = ch.Close()
		return nil, nil, err
	}
	r := &returns{in: make(chan amqp.Return), ask: make(chan returnQuery), done: make(chan struct{})}
	// Registered only with its reader running: the client blocks until a return is taken.
	if !q.spawn(r.run) {
		_ = ch.Close()
		return nil, nil, ErrClosed
	}
	ch.NotifyReturn(r.in)
	p.ch, p.gen, p.ret = ch, gen, r
	return ch, r, nil
}

// returns collects the messages the broker sent back as unroutable on one channel. The broker sends
// a message's basic.return before its basic.ack, and the client hands the return to the unbuffered
// channel in before it handles the ack; so when a publisher has its ack and asks, run has taken the
// return already, and answers only after recording it.
type returns struct {
	in   chan amqp.Return
	ask  chan returnQuery
	done chan struct{}

	mu   sync.Mutex
	left map[string]struct{} // what run had recorded when the channel closed
}

type returnQuery struct {
	id    string
	reply chan bool
}

func (r *returns) run() {
	seen := map[string]struct{}{}
	defer func() {
		r.mu.Lock()
		r.left = seen
		r.mu.Unlock()
		close(r.done)
	}()
	for {
		select {
		case ret, ok := <-r.in:
			if !ok {
				return // the channel closed
			}
			if len(seen) >= 10000 {
				clear(seen) // returns nobody asked about: their publishers gave up waiting
			}
			seen[ret.MessageId] = struct{}{}
		case query := <-r.ask:
			_, found := seen[query.id]
			delete(seen, query.id)
			query.reply <- found
		}
	}
}

// returned reports whether the message with this id came back.
func (r *returns) returned(id string) bool {
	reply := make(chan bool, 1)
	select {
	case r.ask <- returnQuery{id: id, reply: reply}:
		return <-reply
	case <-r.done:
		r.mu.Lock()
		defer r.mu.Unlock()
		_, found := r.left[id]
		return found
	}
}

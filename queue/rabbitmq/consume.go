package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/tasker-systems/tasker/queue"
)

// reapInterval is how often visibility timeouts are checked.
const reapInterval = 100 * time.Millisecond

// voidRetention is how long the id of a void delivery is remembered, so that a late Ack, Extend or
// RetryLater learns that the message will come again (queue.ErrNotFound) instead of nothing.
const voidRetention = 30 * time.Minute

type deliveryState int

const (
	stateBuffered deliveryState = iota // delivered by the broker, not yet read
	stateRead                          // handed out by Read, under its visibility timeout
	stateBusy                          // RetryLater is republishing it
	stateVoid                          // given back, or its channel is gone: it cannot be settled
)

// delivery is one message delivered to a consumer of this Queue.
type delivery struct {
	msg      queue.Message
	cs       *consumerChannel
	tag      uint64
	state    deliveryState
	deadline time.Time // end of the visibility timeout, while stateRead
	voidedAt time.Time
}

// consumerChannel is the channel of one consumer run; its delivery tags mean nothing on any
// other channel.
type consumerChannel struct {
	ch  *amqp.Channel
	tag string // consumer tag
	// Guarded by Queue.mu:
	open int           // deliveries taken from the broker and not yet settled
	idle chan struct{} // while draining: closed when open reaches 0
	dead bool          // the channel is gone: every delivery on it is void
}

// consumer consumes one queue on the consuming connection, on a new channel after each loss,
// until asked to stop.
type consumer struct {
	name string
	stop chan struct{} // closed to stop it
	// Guarded by Queue.mu:
	buf []*delivery // delivered, not yet read, oldest first
	err error       // why the last start failed; nil while consuming
}

// ensureConsumer returns the consumer of the queue called name, starting one if there is none.
// The caller holds q.mu and has checked that the Queue is open.
func (q *Queue) ensureConsumer(name string) *consumer {
	if c := q.consumers[name]; c != nil {
		return c
	}
	c := &consumer{name: name, stop: make(chan struct{})}
	q.consumers[name] = c
	q.wg.Add(1) // Close has not begun waiting: the caller holds q.mu and saw q.closed false
	go func() {
		defer q.wg.Done()
		q.runConsumer(c)
	}()
	return c
}

// runConsumer keeps c consuming until it is stopped or the Queue closes.
func (q *Queue) runConsumer(c *consumer) {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = q.opt.reconnectMin
	b.MaxInterval = q.opt.reconnectMax
	b.MaxElapsedTime = 0
	b.Reset()
	for {
		conn, _, err := q.sub.await(q.ctx, c.stop)
		if err != nil {
			return // stopped or closed
		}
		cs, deliveries, err := q.startConsumer(conn, c.name)
		if err != nil {
			// A lost connection is the link's to report and repair; anything else, such as a
			// queue declared elsewhere with other arguments, is Read's to report.
			if !conn.IsClosed() {
				q.mu.Lock()
				c.err = err
				q.mu.Unlock()
				q.log.Error(err, "rabbitmq: start consumer; will retry", "queue", c.name)
			}
		} else {
			b.Reset()
			q.mu.Lock()
			c.err = nil
			q.mu.Unlock()
			q.log.V(1).Info("rabbitmq: consuming", "queue", c.name)
			q.wakeQueue(c.name) // deliveries may have been missed while away
			if q.pump(c, cs, deliveries) {
				return
			}
		}
		t := time.NewTimer(b.NextBackOff())
		select {
		case <-t.C:
		case <-c.stop:
			t.Stop()
			return
		case <-q.ctx.Done():
			t.Stop()
			return
		}
	}
}

// startConsumer opens a channel, declares the queue and consumes it with the prefetch.
func (q *Queue) startConsumer(conn *amqp.Connection, name string) (*consumerChannel, <-chan amqp.Delivery, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, nil, fmt.Errorf("open channel: %w", err)
	}
	fail := func(err error) (*consumerChannel, <-chan amqp.Delivery, error) {
		_ = ch.Close()
		return nil, nil, err
	}
	if err := q.declareTopology(ch, name); err != nil {
		return fail(err)
	}
	if err := ch.Qos(q.opt.prefetch, 0, false); err != nil {
		return fail(fmt.Errorf("set prefetch: %w", err))
	}
	tag := "tasker-" + q.instance + "-" + strconv.FormatInt(q.nextID.Add(1), 10)
	deliveries, err := ch.Consume(q.QueueName(name), tag, false, false, false, false, nil)
	if err != nil {
		return fail(fmt.Errorf("consume queue %q: %w", q.QueueName(name), err))
	}
	return &consumerChannel{ch: ch, tag: tag}, deliveries, nil
}

// pump buffers deliveries until the channel is lost (false) or c is stopped or the Queue closes
// (true).
func (q *Queue) pump(c *consumer, cs *consumerChannel, deliveries <-chan amqp.Delivery) bool {
	for {
		select {
		case d, ok := <-deliveries:
			if !ok {
				// The channel or the connection closed, or the broker cancelled the consumer (its
				// queue was deleted): closing the channel, if it is still open, gives its
				// unacked deliveries back.
				q.voidChannel(c, cs)
				_ = cs.ch.Close()
				if q.ctx.Err() != nil {
					return true
				}
				q.log.Info("rabbitmq: consumer channel lost; consuming again", "queue", c.name)
				return false
			}
			q.accept(c, cs, d)
		case <-c.stop:
			q.stopConsumer(c, cs, deliveries)
			return true
		case <-q.ctx.Done():
			// Close closes the connection, and the broker takes back what was not acked.
			q.voidChannel(c, cs)
			return true
		}
	}
}

// accept buffers one delivery and wakes the queue's listeners; a delivery read too many times
// already goes to the dead-letter queue instead.
func (q *Queue) accept(c *consumer, cs *consumerChannel, d amqp.Delivery) {
	reads := readCount(d)
	if q.opt.maxReads > 0 && reads > q.opt.maxReads {
		q.log.Info("rabbitmq: message read too many times; dead-lettering it", "queue", c.name,
			"reads", reads, "max_reads", q.opt.maxReads, "dead_letter_queue", q.DeadLetterQueueName(c.name))
		_ = cs.ch.Reject(d.DeliveryTag, false)
		return
	}
	m := queue.Message{
		ID:         q.nextID.Add(1),
		Queue:      c.name,
		Payload:    d.Body,
		ReadCount:  reads,
		EnqueuedAt: enqueuedAt(d),
	}
	q.mu.Lock()
	dl := &delivery{msg: m, cs: cs, tag: d.DeliveryTag}
	q.deliveries[m.ID] = dl
	c.buf = append(c.buf, dl)
	cs.open++
	q.mu.Unlock()
	q.wakeQueue(c.name)
}

// stopConsumer cancels the consumer, gives back what was delivered and not read, and closes the
// channel once every message read from it is settled (Ack, RetryLater, Reject, or its visibility
// timeout), so that those can still be acked.
func (q *Queue) stopConsumer(c *consumer, cs *consumerChannel, deliveries <-chan amqp.Delivery) {
	if err := cs.ch.Cancel(cs.tag, false); err != nil {
		q.voidChannel(c, cs)
		_ = cs.ch.Close()
		return
	}
	// The client hands over what arrived before the broker's cancel-ok, then closes deliveries.
	for d := range deliveries {
		q.accept(c, cs, d)
	}
	q.mu.Lock()
	unread := c.buf
	c.buf = nil
	for _, d := range unread {
		delete(q.deliveries, d.msg.ID)
	}
	q.mu.Unlock()
	for _, d := range unread {
		_ = cs.ch.Nack(d.tag, false, true)
		q.release(cs)
	}
	q.mu.Lock()
	if cs.open == 0 || cs.dead {
		q.mu.Unlock()
		_ = cs.ch.Close()
		return
	}
	cs.idle = make(chan struct{})
	idle := cs.idle
	q.mu.Unlock()
	closed := cs.ch.NotifyClose(make(chan *amqp.Error, 1))
	select {
	case <-idle:
	case <-closed:
	case <-q.ctx.Done():
	}
	q.voidChannel(c, cs)
	_ = cs.ch.Close()
}

// release records that one delivery of cs is settled.
func (q *Queue) release(cs *consumerChannel) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if cs.dead {
		return
	}
	cs.open--
	if cs.open == 0 && cs.idle != nil {
		close(cs.idle)
		cs.idle = nil
	}
}

// voidChannel voids every delivery of a lost channel: the broker takes them back. Those never read
// are forgotten; those read are remembered as void for a while.
func (q *Queue) voidChannel(c *consumer, cs *consumerChannel) {
	now := time.Now()
	q.mu.Lock()
	defer q.mu.Unlock()
	if cs.dead {
		return
	}
	cs.dead = true
	if cs.idle != nil {
		close(cs.idle)
		cs.idle = nil
	}
	kept := c.buf[:0]
	for _, d := range c.buf {
		if d.cs != cs {
			kept = append(kept, d)
		}
	}
	clear(c.buf[len(kept):])
	c.buf = kept
	for id, d := range q.deliveries {
		if d.cs != cs {
			continue
		}
		switch d.state {
		case stateBuffered:
			delete(q.deliveries, id)
		case stateRead, stateBusy:
			d.state, d.voidedAt = stateVoid, now
		}
	}
}

// Read implements queue.Queue. It returns at once: up to n messages already delivered to this
// process's consumer of the queue, oldest first, each under a visibility timeout of vt (see the
// package documentation). The first Read or Listen of a queue starts its consumer, so the first
// Read usually finds nothing; the consumer's deliveries wake Listen. While the consuming
// connection is down Read finds nothing, without an error: the Queue reports the outage in its
// log and wakes Listen when consuming again. It fails when the consumer cannot start for another
// reason, such as a queue that exists with other arguments.
func (q *Queue) Read(_ context.Context, name string, n int, vt time.Duration) ([]queue.Message, error) {
	if err := q.checkName(name); err != nil {
		return nil, fmt.Errorf("rabbitmq: read: %w", err)
	}
	if n <= 0 {
		return nil, fmt.Errorf("rabbitmq: read from queue %q: n must be positive, got %d", name, n)
	}
	if vt <= 0 {
		return nil, fmt.Errorf("rabbitmq: read from queue %q: visibility timeout must be positive, got %v", name, vt)
	}
	msgs := make([]queue.Message, 0, min(n, q.opt.prefetch))
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil, fmt.Errorf("rabbitmq: read from queue %q: %w", name, ErrClosed)
	}
	c := q.ensureConsumer(name)
	deadline := time.Now().Add(vt)
	for len(msgs) < n && len(c.buf) > 0 {
		d := c.buf[0]
		c.buf[0] = nil
		c.buf = c.buf[1:]
		d.state, d.deadline = stateRead, deadline
		msgs = append(msgs, d.msg)
	}
	startErr := c.err
	q.mu.Unlock()

	if len(msgs) == 0 && startErr != nil {
		return nil, fmt.Errorf("rabbitmq: read from queue %q: %w", name, startErr)
	}
	return msgs, nil
}

// take removes the delivery id of the queue called name from the table, for settling, if it is
// read and unsettled. It returns the delivery, or an error wrapping queue.ErrNotFound; gone
// reports an id that is unknown (never read, or settled already) rather than void.
func (q *Queue) take(name string, id int64) (d *delivery, gone bool, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	d = q.deliveries[id]
	switch {
	case d == nil || d.msg.Queue != name || d.state == stateBuffered:
		return nil, true, queue.ErrNotFound
	case d.state == stateVoid:
		return nil, false, fmt.Errorf("its delivery is void (given back after its visibility timeout, or its channel closed), "+
			"so the broker delivers it again: %w", queue.ErrNotFound)
	case d.state == stateBusy:
		return nil, false, fmt.Errorf("RetryLater is handling it: %w", queue.ErrNotFound)
	}
	delete(q.deliveries, id)
	return d, false, nil
}

// settleErr is the error of an ack, nack or reject that the channel refused: it is gone, and the
// broker delivers the message again.
func settleErr(err error) error {
	return fmt.Errorf("its channel closed (%v), so the broker delivers it again: %w", err, queue.ErrNotFound)
}

// Ack implements queue.Queue. Ids already acked (or unknown) are ignored. An id whose delivery is
// void (its visibility timeout passed, or its channel closed) cannot be acked: Ack reports it with
// an error wrapping queue.ErrNotFound, and the message will be delivered again.
func (q *Queue) Ack(_ context.Context, name string, ids ...int64) error {
	var errs []error
	for _, id := range ids {
		d, gone, err := q.take(name, id)
		if gone {
			continue
		}
		if err == nil {
			err = d.cs.ch.Ack(d.tag, false)
			q.release(d.cs)
			if err != nil {
				err = settleErr(err)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("message %d: %w", id, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("rabbitmq: ack on queue %q: %w", name, errors.Join(errs...))
	}
	return nil
}

// AckTx implements queue.Queue: it acks at once, whatever becomes of tx, since the broker cannot
// join a PostgreSQL transaction. tasker acks after its commit anyway; should tx roll back, the
// database still holds the step, and the engine's sweeper publishes it again.
func (q *Queue) AckTx(ctx context.Context, _ pgx.Tx, name string, ids ...int64) error {
	return q.Ack(ctx, name, ids...)
}

// Reject dead-letters a message that can never be handled, such as a malformed payload: the broker
// moves it to the queue's dead-letter queue (DeadLetterQueueName) for operators to inspect. It
// returns an error wrapping queue.ErrNotFound when the message is not read and unsettled.
func (q *Queue) Reject(_ context.Context, name string, id int64) error {
	d, _, err := q.take(name, id)
	if err == nil {
		err = d.cs.ch.Reject(d.tag, false)
		q.release(d.cs)
		if err != nil {
			err = settleErr(err)
		}
	}
	if err != nil {
		return fmt.Errorf("rabbitmq: reject message %d on queue %q: %w", id, name, err)
	}
	return nil
}

// RetryLater implements queue.Queue. With no delay the message goes back to the broker at once
// (basic.nack with requeue; quorum queues count it as a delivery). With a delay it is published
// again through a delay queue, carrying its read count, and then acked; if that publish fails,
// the message stays read, under its visibility timeout, and RetryLater returns the error.
func (q *Queue) RetryLater(ctx context.Context, name string, id int64, delay time.Duration) error {
	if delay <= 0 {
		d, _, err := q.take(name, id)
		if err != nil {
			return fmt.Errorf("rabbitmq: retry message %d on queue %q later: %w", id, name, err)
		}
		// A refused nack means a closed channel, which gives the message back just the same.
		_ = d.cs.ch.Nack(d.tag, false, true)
		q.release(d.cs)
		return nil
	}
	ttl, err := delayMillis(delay)
	if err != nil {
		return fmt.Errorf("rabbitmq: retry message %d on queue %q later: %w", id, name, err)
	}
	q.mu.Lock()
	d := q.deliveries[id]
	if d == nil || d.msg.Queue != name || d.state != stateRead {
		q.mu.Unlock()
		return fmt.Errorf("rabbitmq: retry message %d on queue %q later: %w", id, name, queue.ErrNotFound)
	}
	d.state = stateBusy
	q.mu.Unlock()

	err = q.publish(ctx, name, []amqp.Publishing{message(d.msg.Payload, d.msg.ReadCount, d.msg.EnqueuedAt)}, ttl)

	q.mu.Lock()
	if err != nil {
		if d.state == stateBusy {
			d.state = stateRead
		}
		q.mu.Unlock()
		return fmt.Errorf("rabbitmq: retry message %d on queue %q later: %w", id, name, err)
	}
	void := d.state == stateVoid
	delete(q.deliveries, id)
	q.mu.Unlock()
	if !void {
		// Should the ack fail, the broker delivers the old message again too: a duplicate.
		_ = d.cs.ch.Ack(d.tag, false)
		q.release(d.cs)
	}
	return nil
}

// Extend implements queue.Queue: it moves the message's visibility timeout to now+vt. It returns an
// error wrapping queue.ErrNotFound for a message that is not read and unsettled.
func (q *Queue) Extend(_ context.Context, name string, id int64, vt time.Duration) error {
	if vt <= 0 {
		return fmt.Errorf("rabbitmq: extend message %d on queue %q: visibility timeout must be positive, got %v", id, name, vt)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	d := q.deliveries[id]
	if d == nil || d.msg.Queue != name || d.state != stateRead {
		return fmt.Errorf("rabbitmq: extend message %d on queue %q: %w", id, name, queue.ErrNotFound)
	}
	d.deadline = time.Now().Add(vt)
	return nil
}

// reap gives back messages whose visibility timeout passed and forgets old void ids, until the
// Queue closes.
func (q *Queue) reap() {
	t := time.NewTicker(reapInterval)
	defer t.Stop()
	for {
		select {
		case <-q.ctx.Done():
			return
		case now := <-t.C:
			q.expire(now)
		}
	}
}

func (q *Queue) expire(now time.Time) {
	var due []*delivery
	q.mu.Lock()
	for id, d := range q.deliveries {
		switch {
		case d.state == stateRead && now.After(d.deadline):
			d.state, d.voidedAt = stateVoid, now
			due = append(due, d)
		case d.state == stateVoid && now.Sub(d.voidedAt) > voidRetention:
			delete(q.deliveries, id)
		}
	}
	q.mu.Unlock()
	for _, d := range due {
		q.log.V(1).Info("rabbitmq: visibility timeout passed; giving the message back", "queue", d.msg.Queue, "message", d.msg.ID)
		_ = d.cs.ch.Nack(d.tag, false, true)
		q.release(d.cs)
	}
}

// readCount is how many times the message has been delivered, this time included.
func readCount(d amqp.Delivery) int {
	carried, _ := intHeader(d.Headers, headerReads)
	if n, ok := intHeader(d.Headers, "x-delivery-count"); ok {
		return carried + n + 1
	}
	if d.Redelivered {
		return carried + 2
	}
	return carried + 1
}

// enqueuedAt is when the payload was first published.
func enqueuedAt(d amqp.Delivery) time.Time {
	if us, ok := intHeader(d.Headers, headerEnqueuedAt); ok {
		return time.UnixMicro(int64(us))
	}
	if !d.Timestamp.IsZero() {
		return d.Timestamp
	}
	return time.Now()
}

func intHeader(h amqp.Table, key string) (int, bool) {
	switch v := h[key].(type) {
	case int64:
		return int(v), true
	case int32:
		return int(v), true
	case int16:
		return int(v), true
	case int8:
		return int(v), true
	case int:
		return v, true
	case uint64:
		return int(v), true
	case uint32:
		return int(v), true
	case uint16:
		return int(v), true
	case uint8:
		return int(v), true
	}
	return 0, false
}

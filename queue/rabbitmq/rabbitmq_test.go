package rabbitmq

import (
	"context"
	"fmt"
	"os/exec"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/queue"
	"github.com/tasker-systems/tasker/queue/queuetest"
)

// harness runs the conformance suite on a Queue of the given type with a broker prefix of its own
// per subtest. Read hands out what the queue's consumer has buffered, so it lags a send by a
// moment (no ImmediateRead); nothing joins a transaction (Publish after commit instead); and
// classic queues only flag a redelivery, so their read counts stop at 2.
func harness(qt QueueType) queuetest.Harness {
	return queuetest.Harness{
		New: func(t testing.TB, cfg queuetest.Config) queuetest.Backend {
			b := setup(t)
			return queuetest.Backend{Queue: b.open(t, cfg.Queues, WithQueueType(qt), WithPollInterval(cfg.PollInterval))}
		},
		Capabilities: queuetest.Capabilities{ExactReadCounts: qt == QueueTypeQuorum, Ordered: true},
	}
}

func TestConformance(t *testing.T) {
	t.Parallel()
	for _, qt := range []QueueType{QueueTypeQuorum, QueueTypeClassic} {
		t.Run(string(qt), func(t *testing.T) {
			t.Parallel()
			queuetest.Run(t, harness(qt))
		})
	}
}

func BenchmarkPublishReadAck(b *testing.B) {
	queuetest.Benchmark(b, harness(QueueTypeQuorum))
}

// TestClose: closing gives the broker back what was not acked and voids the ids read; the Queue
// refuses calls afterwards.
func TestClose(t *testing.T) {
	t.Parallel()
	b := setup(t)
	q := b.open(t, []string{"steps", "other"})
	publish(t, b.ctx, q, "steps", 0, `1`)
	publish(t, b.ctx, q, "other", 0, `"elsewhere"`)
	steps := readN(t, b.ctx, q, "steps", 1, time.Minute)
	require.NoError(t, q.Ack(b.ctx, "steps", ids(steps)...))
	other := readN(t, b.ctx, q, "other", 1, time.Minute)

	require.NoError(t, q.Close())
	require.ErrorIs(t, q.Ack(b.ctx, "other", other[0].ID), queue.ErrNotFound, "void after Close")
	require.Zero(t, b.ready(t, q.QueueName("steps")), "the ack went through before the connection closed")
	require.Eventually(t, func() bool { return b.ready(t, q.QueueName("other")) == 1 }, 5*time.Second, 10*time.Millisecond)
	_, err := q.Read(b.ctx, "steps", 1, time.Minute)
	require.ErrorIs(t, err, ErrClosed)
	require.ErrorIs(t, q.Publish(b.ctx, "steps", [][]byte{[]byte(`1`)}, 0), ErrClosed)
	require.NoError(t, q.Close(), "closing twice is harmless")
}

// TestBadArguments covers what the conformance suite does not: names and delays the broker
// cannot take, and connection options.
func TestBadArguments(t *testing.T) {
	t.Parallel()
	b := setup(t)
	q := b.open(t, []string{"q"})
	err := q.Publish(b.ctx, "q", [][]byte{[]byte(`{}`), []byte(`{"broken":`)}, 0)
	require.ErrorContains(t, err, "payload 1 is not valid JSON")
	require.False(t, b.exists(t, q.QueueName("q")), "checked before anything was sent, or even declared")
	require.ErrorContains(t, q.Publish(b.ctx, "a@delay.5", [][]byte{[]byte(`1`)}, 0), `contains "@"`)
	_, err = q.Read(b.ctx, "a@delay.5", 1, time.Minute)
	require.ErrorContains(t, err, `contains "@"`)
	require.ErrorContains(t, q.Publish(b.ctx, "q", [][]byte{[]byte(`1`)}, 365*24*time.Hour), "longer than the broker's timers allow")

	_, err = New("amqp://guest:guest@127.0.0.1:1/")
	require.ErrorContains(t, err, "connect to the broker")
	_, err = New(testURL(), WithQueueType("stream"))
	require.ErrorContains(t, err, "unknown queue type")
}

// TestDeliveryIDs: an id stands for one delivery of a message. Once its visibility timeout has
// passed, the id is void and Ack, Extend and RetryLater report queue.ErrNotFound, since the
// broker delivers the message again under a new id; once given back with RetryLater, it is
// settled and acking it is harmless.
func TestDeliveryIDs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	q := b.open(t, []string{"q"})
	publish(t, b.ctx, q, "q", 0, `{"k": "v"}`)
	first := readN(t, b.ctx, q, "q", 1, 200*time.Millisecond)[0]
	again := readN(t, b.ctx, q, "q", 1, time.Hour)[0]
	require.Equal(t, 2, again.ReadCount)
	require.NotEqual(t, first.ID, again.ID, "a new delivery, a new id")

	err := q.Ack(b.ctx, "q", first.ID)
	require.ErrorIs(t, err, queue.ErrNotFound, "the first delivery is void: it cannot be acked")
	require.ErrorContains(t, err, "delivers it again")
	require.ErrorIs(t, q.Extend(b.ctx, "q", first.ID, time.Minute), queue.ErrNotFound)
	require.ErrorIs(t, q.RetryLater(b.ctx, "q", first.ID, 0), queue.ErrNotFound)

	require.NoError(t, q.RetryLater(b.ctx, "q", again.ID, 0))
	third := readN(t, b.ctx, q, "q", 1, time.Hour)[0]
	require.NotEqual(t, again.ID, third.ID)
	require.NoError(t, q.Ack(b.ctx, "q", again.ID), "settled by RetryLater: acking it is harmless")
	require.NoError(t, q.Ack(b.ctx, "q", third.ID))
}

// TestReadAfterListenEnds: a message read while Listen ran can still be acked after it returned,
// and Read starts the queue's consumer again.
func TestReadAfterListenEnds(t *testing.T) {
	t.Parallel()
	b := setup(t)
	q := b.open(t, []string{"a"}, WithPollInterval(time.Hour))
	l := queuetest.Listen(t, q, "a")
	publish(t, b.ctx, q, "a", 0, `1`)
	l.Expect("a", 5*time.Second)
	msgs := readN(t, b.ctx, q, "a", 1, time.Minute)
	l.Stop()

	publish(t, b.ctx, q, "a", 0, `2`)
	require.NoError(t, q.Ack(b.ctx, "a", msgs[0].ID))
	rest := readN(t, b.ctx, q, "a", 1, time.Minute)
	require.JSONEq(t, `2`, string(rest[0].Payload))
	require.NoError(t, q.Ack(b.ctx, "a", rest[0].ID))
	require.Eventually(t, func() bool { return b.ready(t, q.QueueName("a")) == 0 }, 5*time.Second, 10*time.Millisecond)
}

// TestPublisherConfirms checks that Publish returns once the broker holds the messages, and that a
// message the broker refuses (basic.nack) is an error.
func TestPublisherConfirms(t *testing.T) {
	t.Parallel()
	b := setup(t)
	q := b.open(t, []string{"q", "full"})
	publish(t, b.ctx, q, "q", 0, payloads(100)...)
	require.Equal(t, 100, b.ready(t, q.QueueName("q")), "confirmed: all stored when Publish returns")

	// A policy limits the queue to one message and makes the broker nack the rest.
	policy := b.prefix + "full"
	out, err := exec.Command("rabbitmqctl", "-q", "set_policy", "--apply-to", "queues", policy,
		"^"+q.QueueName("full")+"$", `{"max-length": 1, "overflow": "reject-publish"}`).CombinedOutput()
	require.NoError(t, err, "rabbitmqctl set_policy: %s", out)
	t.Cleanup(func() { _ = exec.Command("rabbitmqctl", "-q", "clear_policy", policy).Run() })
	require.Eventually(t, func() bool {
		err = q.Publish(b.ctx, "full", [][]byte{[]byte(`1`)}, 0)
		return err != nil
	}, 10*time.Second, 50*time.Millisecond, "the policy applies")
	require.ErrorContains(t, err, "the broker refused the message (basic.nack)")
	full := b.ready(t, q.QueueName("full"))
	err = q.Publish(b.ctx, "full", [][]byte{[]byte(`2`)}, 0)
	require.ErrorContains(t, err, "the broker refused the message (basic.nack)")
	require.Equal(t, full, b.ready(t, q.QueueName("full")), "refused: not stored")
}

// TestPublishToDeletedQueue checks that a message returned as unroutable (its queue was deleted
// after this process declared it) is published again after the queue is declared again.
func TestPublishToDeletedQueue(t *testing.T) {
	t.Parallel()
	b := setup(t)
	q := b.open(t, []string{"q"})
	publish(t, b.ctx, q, "q", 0, `1`)
	_, err := b.admin.QueueDelete(q.QueueName("q"), false, false, false)
	require.NoError(t, err)
	publish(t, b.ctx, q, "q", 0, `2`)
	require.Equal(t, 1, b.ready(t, q.QueueName("q")))
	msgs := readN(t, b.ctx, q, "q", 1, time.Minute)
	require.JSONEq(t, `2`, string(msgs[0].Payload))
}

func TestDelayMillis(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   time.Duration
		want int64
	}{
		{0, 0}, {-time.Second, 0}, {time.Nanosecond, 1}, {10 * time.Millisecond, 10}, {11 * time.Millisecond, 11},
		{12 * time.Millisecond, 13}, {100 * time.Millisecond, 104}, {time.Second, 1060},
	} {
		got, err := delayMillis(c.in)
		require.NoError(t, err)
		require.Equal(t, c.want, got, "delay %v", c.in)
	}
	buckets := map[int64]bool{}
	for ms := int64(1); ms <= 100_000; ms += 7 {
		got, err := delayMillis(time.Duration(ms) * time.Millisecond)
		require.NoError(t, err)
		require.GreaterOrEqual(t, got, ms, "never early")
		require.LessOrEqual(t, float64(got), 1.1*float64(ms)+1, "at most about 10%% late (%dms)", ms)
		if ms >= 1000 && ms < 10_000 {
			buckets[got] = true
		}
	}
	require.LessOrEqual(t, len(buckets), 26, "few delay queues per factor of ten")
	got, err := delayMillis(24 * 24 * time.Hour)
	require.NoError(t, err)
	require.LessOrEqual(t, got, maxDelayMillis)
}

// TestRedeliveryAfterCrash: a consumer whose connection ends without acking loses its messages
// to the next consumer, which sees them as read twice.
func TestRedeliveryAfterCrash(t *testing.T) {
	t.Parallel()
	for _, qt := range []QueueType{QueueTypeQuorum, QueueTypeClassic} {
		t.Run(string(qt), func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			first := b.open(t, []string{"q"}, WithQueueType(qt))
			publish(t, b.ctx, first, "q", 0, `"a"`, `"b"`)
			msgs := readN(t, b.ctx, first, "q", 2, time.Hour)
			require.NoError(t, first.Close())
			require.ErrorIs(t, first.Ack(b.ctx, "q", msgs[0].ID), queue.ErrNotFound, "void after Close")

			second := b.open(t, nil, WithQueueType(qt))
			again := readN(t, b.ctx, second, "q", 2, time.Hour)
			for _, m := range again {
				require.Equal(t, 2, m.ReadCount)
			}
			require.JSONEq(t, `"a"`, string(again[0].Payload))
			require.NoError(t, second.Ack(b.ctx, "q", ids(again)...))
		})
	}
}

func TestDeadLetter(t *testing.T) {
	t.Parallel()
	b := setup(t)
	q := b.open(t, []string{"q"}, WithMaxReads(2))
	publish(t, b.ctx, q, "q", 0, `"malformed"`)
	msgs := readN(t, b.ctx, q, "q", 1, time.Hour)
	require.NoError(t, q.Reject(b.ctx, "q", msgs[0].ID))
	require.ErrorIs(t, q.Reject(b.ctx, "q", msgs[0].ID), queue.ErrNotFound)
	d := b.get(t, q.DeadLetterQueueName("q"))
	require.JSONEq(t, `"malformed"`, string(d.Body))
	require.Equal(t, "rejected", d.Headers["x-first-death-reason"])

	// A message read more than WithMaxReads times is dead-lettered by Read.
	publish(t, b.ctx, q, "q", 0, `"poison"`)
	for reads := 1; reads <= 2; reads++ {
		msgs = readN(t, b.ctx, q, "q", 1, time.Hour)
		require.Equal(t, reads, msgs[0].ReadCount)
		require.NoError(t, q.RetryLater(b.ctx, "q", msgs[0].ID, 0))
	}
	d = b.get(t, q.DeadLetterQueueName("q"))
	require.JSONEq(t, `"poison"`, string(d.Body))
	require.Equal(t, "rejected", d.Headers["x-first-death-reason"])
	readNone(t, b.ctx, q, "q", 200*time.Millisecond)
	require.Zero(t, b.ready(t, q.QueueName("q")))
}

// TestConcurrentConsumers runs several processes' worth of consumers on one queue: each message is
// delivered once while every delivery is acked in time.
func TestConcurrentConsumers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const total, consumers = 1000, 4
	pub := b.open(t, []string{"q"})
	// Declared before the consumers start: RabbitMQ 3.10 can crash a consume racing with another
	// connection's first declaration of a quorum queue (the consumer then reconnects; the test
	// wants no error at all).
	publish(t, b.ctx, pub, "q", 0, `{"i": -1}`)

	var (
		mu   sync.Mutex
		seen = map[string]int{}
		wg   sync.WaitGroup
		errs = make(chan error, consumers)
	)
	for range consumers {
		q := b.open(t, nil, WithPrefetch(16))
		l := queuetest.Listen(t, q, "q")
		wg.Go(func() {
			defer l.Stop()
			last := time.Now()
			for time.Since(last) < 2*time.Second { // until idle: everything was taken
				select {
				case <-l.C():
				case <-time.After(100 * time.Millisecond):
				}
				for {
					msgs, err := q.Read(b.ctx, "q", 7, time.Minute)
					if err != nil {
						errs <- err
						return
					}
					if len(msgs) == 0 {
						break
					}
					last = time.Now()
					mu.Lock()
					for _, m := range msgs {
						seen[string(m.Payload)]++
					}
					mu.Unlock()
					if err := q.Ack(b.ctx, "q", ids(msgs)...); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	for i := 0; i < total; i += 100 {
		var batch [][]byte
		for j := i; j < i+100; j++ {
			batch = append(batch, fmt.Appendf(nil, `{"i": %d}`, j))
		}
		require.NoError(t, pub.Publish(b.ctx, "q", batch, 0))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Len(t, seen, total+1, "no message missing")
	for p, n := range seen {
		require.Equal(t, 1, n, "message %s delivered more than once", p)
	}
	require.Zero(t, b.ready(t, pub.QueueName("q")))
}

// TestListenStopGivesBackUnread: when the last Listen of a queue ends, what its consumer holds
// unread goes to other consumers, while what it read can still be acked.
func TestListenStopGivesBackUnread(t *testing.T) {
	t.Parallel()
	b := setup(t)
	first := b.open(t, []string{"q"}, WithPrefetch(10))
	l := queuetest.Listen(t, first, "q")
	publish(t, b.ctx, first, "q", 0, payloads(5)...)
	l.Expect("q", 5*time.Second)
	read := readN(t, b.ctx, first, "q", 1, time.Hour)
	require.Eventually(t, func() bool { return buffered(first, "q") == 4 }, 5*time.Second, 10*time.Millisecond)
	l.Stop()

	second := b.open(t, nil)
	others := readN(t, b.ctx, second, "q", 4, time.Hour)
	for _, m := range others {
		require.Equal(t, 2, m.ReadCount, "given back unread by the first consumer")
	}
	require.NoError(t, first.Ack(b.ctx, "q", read[0].ID), "the read message can still be acked")
	require.NoError(t, second.Ack(b.ctx, "q", ids(others)...))
	require.NoError(t, first.Close())
	require.Zero(t, b.ready(t, first.QueueName("q")), "the ack went through before the channel closed")
}

func buffered(q *Queue, name string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if c := q.consumers[name]; c != nil {
		return len(c.buf)
	}
	return -1
}

// TestReconnect closes both connections from the broker's side: Listen wakes after the consumer
// is back, Publish and Read work again, and deliveries of the lost channel are void.
func TestReconnect(t *testing.T) {
	t.Parallel()
	b := setup(t)
	q := b.open(t, []string{"q"}, WithPollInterval(time.Hour))
	l := queuetest.Listen(t, q, "q")
	l.Expect("q", 5*time.Second)
	publish(t, b.ctx, q, "q", 0, `"before"`)
	held := readN(t, b.ctx, q, "q", 1, time.Hour)

	pubConn, _ := q.pub.current()
	subConn, _ := q.sub.current()
	l.Drain()
	closeFromServer(t, subConn)
	closeFromServer(t, pubConn)
	l.Expect("q", 10*time.Second) // the consumer is back on a new connection

	err := q.Ack(b.ctx, "q", held[0].ID)
	require.ErrorIs(t, err, queue.ErrNotFound, "a delivery of the lost channel is void")
	again := readN(t, b.ctx, q, "q", 1, time.Hour)
	require.JSONEq(t, `"before"`, string(again[0].Payload))
	require.Equal(t, 2, again[0].ReadCount)

	publish(t, b.ctx, q, "q", 0, `"after"`)
	l.Expect("q", 5*time.Second)
	after := readN(t, b.ctx, q, "q", 1, time.Hour)
	require.JSONEq(t, `"after"`, string(after[0].Payload))
	require.NoError(t, q.Ack(b.ctx, "q", again[0].ID, after[0].ID))
	newPub, _ := q.pub.current()
	require.NotSame(t, pubConn, newPub)
}

func TestListenEndsWithClose(t *testing.T) {
	t.Parallel()
	b := setup(t)
	q := b.open(t, []string{"q"})
	done := make(chan error, 1)
	go func() { done <- q.Listen(context.Background(), []string{"q"}, func(string) {}) }()
	time.Sleep(100 * time.Millisecond)
	require.NoError(t, q.Close())
	select {
	case err := <-done:
		require.ErrorIs(t, err, ErrClosed)
	case <-time.After(5 * time.Second):
		t.Fatal("Listen did not return after Close")
	}
	require.ErrorIs(t, q.Listen(context.Background(), []string{"q"}, func(string) {}), ErrClosed)
	require.NoError(t, q.Close(), "closing twice is harmless")
}

// TestConflictingQueue: a queue that exists with other arguments makes Publish and Read fail,
// with the broker's reason.
func TestConflictingQueue(t *testing.T) {
	t.Parallel()
	b := setup(t)
	q := b.open(t, []string{"q"})
	_, err := b.admin.QueueDeclare(q.QueueName("q"), true, false, false, false, amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeClassic})
	require.NoError(t, err)
	err = q.Publish(b.ctx, "q", [][]byte{[]byte(`1`)}, 0)
	require.ErrorContains(t, err, "PRECONDITION_FAILED")
	require.Eventually(t, func() bool {
		_, err = q.Read(b.ctx, "q", 1, time.Minute)
		return err != nil
	}, 5*time.Second, 10*time.Millisecond)
	require.ErrorContains(t, err, "PRECONDITION_FAILED")
}

package rabbitmq

import (
	"context"
	"encoding/json"
	"os/exec"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/queue"
)

func TestPublishReadAck(t *testing.T) {
	t.Parallel()
	for _, qt := range []QueueType{QueueTypeQuorum, QueueTypeClassic} {
		t.Run(string(qt), func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			q := b.open(t, []string{"steps", "other"}, WithQueueType(qt))
			before := time.Now()
			publish(t, b.ctx, q, "steps", 0, `{"n": 1}`, `{"n": 2}`, `{"b": [1, 2], "a": "x"}`)
			publish(t, b.ctx, q, "other", 0, `"elsewhere"`)

			msgs := readN(t, b.ctx, q, "steps", 3, time.Minute)
			for i, m := range msgs {
				require.Equal(t, "steps", m.Queue)
				require.Equal(t, 1, m.ReadCount)
				require.WithinDuration(t, before, m.EnqueuedAt, 5*time.Second)
				if i > 0 {
					require.Greater(t, m.ID, msgs[i-1].ID, "oldest first")
				}
			}
			require.JSONEq(t, `{"n": 1}`, string(msgs[0].Payload))
			require.JSONEq(t, `{"n": 2}`, string(msgs[1].Payload))
			require.JSONEq(t, `{"a": "x", "b": [1, 2]}`, string(msgs[2].Payload))
			readNone(t, b.ctx, q, "steps", 200*time.Millisecond)

			require.NoError(t, q.Ack(b.ctx, "steps", ids(msgs)[:2]...))
			require.NoError(t, q.AckTx(b.ctx, nil, "steps", msgs[2].ID), "AckTx acks at once; the tx plays no part")
			require.NoError(t, q.Ack(b.ctx, "steps", ids(msgs)...), "acking twice is harmless")
			require.NoError(t, q.Ack(b.ctx, "steps"), "acking nothing is a no-op")

			other := readN(t, b.ctx, q, "other", 1, time.Minute)
			require.JSONEq(t, `"elsewhere"`, string(other[0].Payload))

			// Closing returns what was not acked to the broker: only "other"'s message.
			require.NoError(t, q.Close())
			require.ErrorIs(t, q.Ack(b.ctx, "other", other[0].ID), queue.ErrNotFound, "void after Close")
			require.Zero(t, b.ready(t, q.QueueName("steps")))
			require.Eventually(t, func() bool { return b.ready(t, q.QueueName("other")) == 1 }, 5*time.Second, 10*time.Millisecond)
			_, err := q.Read(b.ctx, "steps", 1, time.Minute)
			require.ErrorIs(t, err, ErrClosed)
			require.ErrorIs(t, q.Publish(b.ctx, "steps", [][]byte{[]byte(`1`)}, 0), ErrClosed)
		})
	}
}

func TestSendTxIsNotTransactional(t *testing.T) {
	t.Parallel()
	b := setup(t)
	q := b.open(t, nil)
	require.ErrorIs(t, q.SendTx(b.ctx, nil, "q", [][]byte{[]byte(`1`)}, 0), queue.ErrNotTransactional)
}

func TestBadArguments(t *testing.T) {
	t.Parallel()
	b := setup(t)
	q := b.open(t, []string{"q"})
	_, err := q.Read(b.ctx, "q", 0, time.Minute)
	require.ErrorContains(t, err, "n must be positive")
	_, err = q.Read(b.ctx, "q", 1, 0)
	require.ErrorContains(t, err, "visibility timeout must be positive")
	require.ErrorContains(t, q.Extend(b.ctx, "q", 1, 0), "visibility timeout must be positive")

	err = q.Publish(b.ctx, "q", [][]byte{[]byte(`{}`), []byte(`{"broken":`)}, 0)
	require.ErrorContains(t, err, "payload 1 is not valid JSON")
	require.False(t, b.exists(t, q.QueueName("q")), "checked before anything was sent, or even declared")
	require.NoError(t, q.Publish(b.ctx, "q", nil, 0), "no payloads is a no-op")
	require.ErrorContains(t, q.Publish(b.ctx, "", [][]byte{[]byte(`1`)}, 0), "empty queue name")
	require.ErrorContains(t, q.Publish(b.ctx, "a@delay.5", [][]byte{[]byte(`1`)}, 0), `contains "@"`)
	require.ErrorContains(t, q.Publish(b.ctx, "q", [][]byte{[]byte(`1`)}, 365*24*time.Hour), "longer than the broker's timers allow")
	require.ErrorContains(t, q.Listen(b.ctx, nil, func(string) {}), "no queues")
	require.ErrorContains(t, q.Listen(b.ctx, []string{"q"}, nil), "nil wake function")

	_, err = New("amqp://guest:guest@127.0.0.1:1/")
	require.ErrorContains(t, err, "connect to the broker")
	_, err = New(testURL(), WithQueueType("stream"))
	require.ErrorContains(t, err, "unknown queue type")
}

func TestReadLimit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	q := b.open(t, []string{"q"})
	publish(t, b.ctx, q, "q", 0, `1`, `2`, `3`, `4`, `5`)
	first := readN(t, b.ctx, q, "q", 2, time.Minute)
	require.Len(t, first, 2)
	rest := readN(t, b.ctx, q, "q", 3, time.Minute)
	require.Less(t, first[1].ID, rest[0].ID, "oldest first")
	require.JSONEq(t, `1`, string(first[0].Payload))
	require.JSONEq(t, `3`, string(rest[0].Payload))
	require.NoError(t, q.Ack(b.ctx, "q", append(ids(first), ids(rest)...)...))
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

func TestPublishDelay(t *testing.T) {
	t.Parallel()
	b := setup(t)
	q := b.open(t, []string{"q"})
	sent := time.Now()
	publish(t, b.ctx, q, "q", time.Second, `"later"`)
	publish(t, b.ctx, q, "q", 0, `"now"`)
	publish(t, b.ctx, q, "q", 300*time.Millisecond, `"soon"`)

	now := readN(t, b.ctx, q, "q", 1, time.Minute)
	require.JSONEq(t, `"now"`, string(now[0].Payload))
	soon := readN(t, b.ctx, q, "q", 1, time.Minute)
	require.JSONEq(t, `"soon"`, string(soon[0].Payload), "a shorter delay is not held up by a longer one")
	require.GreaterOrEqual(t, time.Since(sent), 300*time.Millisecond)
	later := readN(t, b.ctx, q, "q", 1, time.Minute)
	require.GreaterOrEqual(t, time.Since(sent), time.Second, "never early")
	require.JSONEq(t, `"later"`, string(later[0].Payload))
	require.Equal(t, 1, later[0].ReadCount)
	require.WithinDuration(t, sent, later[0].EnqueuedAt, time.Second, "EnqueuedAt is the publish time")
	require.NoError(t, q.Ack(b.ctx, "q", now[0].ID, soon[0].ID, later[0].ID))
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

func TestRetryLater(t *testing.T) {
	t.Parallel()
	b := setup(t)
	q := b.open(t, []string{"q", "other"})
	publish(t, b.ctx, q, "q", 0, `{"k": "v"}`)
	msgs := readN(t, b.ctx, q, "q", 1, time.Hour)
	id := msgs[0].ID
	require.Equal(t, 1, msgs[0].ReadCount)

	require.NoError(t, q.RetryLater(b.ctx, "q", id, 0))
	msgs = readN(t, b.ctx, q, "q", 1, time.Hour)
	require.Equal(t, 2, msgs[0].ReadCount, "given back now: read again at once, counted")
	require.NoError(t, q.Ack(b.ctx, "q", id), "the old id is settled: acking it is harmless")

	given := time.Now()
	require.NoError(t, q.RetryLater(b.ctx, "q", msgs[0].ID, 700*time.Millisecond))
	readNone(t, b.ctx, q, "q", 500*time.Millisecond)
	msgs = readN(t, b.ctx, q, "q", 1, time.Hour)
	require.GreaterOrEqual(t, time.Since(given), 700*time.Millisecond)
	require.Equal(t, 3, msgs[0].ReadCount, "the read count travels with the republished message")
	require.JSONEq(t, `{"k": "v"}`, string(msgs[0].Payload))
	require.WithinDuration(t, given, msgs[0].EnqueuedAt, 5*time.Second, "EnqueuedAt is kept")
	require.Less(t, msgs[0].EnqueuedAt, given)

	id = msgs[0].ID
	require.ErrorIs(t, q.RetryLater(b.ctx, "other", id, 0), queue.ErrNotFound, "ids belong to their queue")
	require.NoError(t, q.Ack(b.ctx, "q", id))
	require.ErrorIs(t, q.RetryLater(b.ctx, "q", id, 0), queue.ErrNotFound)
	require.ErrorIs(t, q.RetryLater(b.ctx, "q", id, time.Second), queue.ErrNotFound)
	require.ErrorIs(t, q.RetryLater(b.ctx, "q", 1<<40, 0), queue.ErrNotFound)
}

func TestVisibilityTimeout(t *testing.T) {
	t.Parallel()
	b := setup(t)
	q := b.open(t, []string{"q"})
	publish(t, b.ctx, q, "q", 0, `{"k": "v"}`)

	msgs := readN(t, b.ctx, q, "q", 1, 500*time.Millisecond)
	require.Equal(t, 1, msgs[0].ReadCount)
	readNone(t, b.ctx, q, "q", 300*time.Millisecond)
	again := readN(t, b.ctx, q, "q", 1, time.Minute)
	require.Equal(t, 2, again[0].ReadCount, "given back after the timeout, counted")
	require.NotEqual(t, msgs[0].ID, again[0].ID, "a new delivery, a new id")
	require.JSONEq(t, `{"k": "v"}`, string(again[0].Payload))

	err := q.Ack(b.ctx, "q", msgs[0].ID)
	require.ErrorIs(t, err, queue.ErrNotFound, "the first delivery is void: it cannot be acked")
	require.ErrorContains(t, err, "delivers it again")
	require.ErrorIs(t, q.Extend(b.ctx, "q", msgs[0].ID, time.Minute), queue.ErrNotFound)
	require.ErrorIs(t, q.RetryLater(b.ctx, "q", msgs[0].ID, 0), queue.ErrNotFound)

	// Extend keeps a message past its first timeout.
	require.NoError(t, q.RetryLater(b.ctx, "q", again[0].ID, 0))
	msgs = readN(t, b.ctx, q, "q", 1, 300*time.Millisecond)
	require.NoError(t, q.Extend(b.ctx, "q", msgs[0].ID, time.Minute))
	readNone(t, b.ctx, q, "q", time.Second)
	require.NoError(t, q.Ack(b.ctx, "q", msgs[0].ID))
	require.ErrorIs(t, q.Extend(b.ctx, "q", msgs[0].ID, time.Minute), queue.ErrNotFound)
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
		w, stop := listen(t, q, "q")
		wg.Go(func() {
			defer stop()
			last := time.Now()
			for time.Since(last) < 2*time.Second { // until idle: everything was taken
				select {
				case <-w:
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
			batch = append(batch, []byte(`{"i": `+itoa(j)+`}`))
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

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

// TestListen: wake-ups on deliveries, on the poll, none after Listen returns.
func TestListen(t *testing.T) {
	t.Parallel()
	b := setup(t)
	q := b.open(t, []string{"a", "b"}, WithPollInterval(time.Hour))
	w, stop := listen(t, q, "a", "b")
	w.expect(t, "a", 5*time.Second) // on start
	w.expect(t, "b", 5*time.Second)
	w.drain()

	publish(t, b.ctx, q, "a", 0, `1`)
	w.expect(t, "a", 5*time.Second)
	msgs := readN(t, b.ctx, q, "a", 1, time.Minute)
	publish(t, b.ctx, q, "b", 0, `2`)
	w.expect(t, "b", 5*time.Second)

	stop()
	w.drain()
	publish(t, b.ctx, q, "a", 0, `3`)
	time.Sleep(200 * time.Millisecond)
	require.Empty(t, w, "no wake-up after Listen returned")
	// Read after Listen still settles what was read, and starts the consumer again.
	require.NoError(t, q.Ack(b.ctx, "a", msgs[0].ID))
	rest := readN(t, b.ctx, q, "a", 1, time.Minute)
	require.JSONEq(t, `3`, string(rest[0].Payload))
	require.NoError(t, q.Ack(b.ctx, "a", rest[0].ID))

	polled := b.open(t, nil, WithPollInterval(50*time.Millisecond))
	w2, _ := listen(t, polled, "idle")
	b.mu.Lock()
	b.names["idle"] = struct{}{}
	b.mu.Unlock()
	for range 4 {
		w2.expect(t, "idle", time.Second)
	}
}

// TestListenStopGivesBackUnread: when the last Listen of a queue ends, what its consumer holds
// unread goes to other consumers, while what it read can still be acked.
func TestListenStopGivesBackUnread(t *testing.T) {
	t.Parallel()
	b := setup(t)
	first := b.open(t, []string{"q"}, WithPrefetch(10))
	w, stop := listen(t, first, "q")
	publish(t, b.ctx, first, "q", 0, payloads(5)...)
	w.expect(t, "q", 5*time.Second)
	read := readN(t, b.ctx, first, "q", 1, time.Hour)
	require.Eventually(t, func() bool { return buffered(first, "q") == 4 }, 5*time.Second, 10*time.Millisecond)
	stop()

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
	w, _ := listen(t, q, "q")
	w.expect(t, "q", 5*time.Second)
	publish(t, b.ctx, q, "q", 0, `"before"`)
	held := readN(t, b.ctx, q, "q", 1, time.Hour)

	pubConn, _ := q.pub.current()
	subConn, _ := q.sub.current()
	w.drain()
	closeFromServer(t, subConn)
	closeFromServer(t, pubConn)
	w.expect(t, "q", 10*time.Second) // the consumer is back on a new connection

	err := q.Ack(b.ctx, "q", held[0].ID)
	require.ErrorIs(t, err, queue.ErrNotFound, "a delivery of the lost channel is void")
	again := readN(t, b.ctx, q, "q", 1, time.Hour)
	require.JSONEq(t, `"before"`, string(again[0].Payload))
	require.Equal(t, 2, again[0].ReadCount)

	publish(t, b.ctx, q, "q", 0, `"after"`)
	w.expect(t, "q", 5*time.Second)
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

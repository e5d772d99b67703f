package rabbitmq

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/queue"
	"github.com/tasker-systems/tasker/queue/queuetest"
)

// TestBrokerOutage cuts the network between a Queue and the broker, as a broker restart does: Read
// finds nothing, Publish fails after its timeout, and when the broker is reachable again the
// Queue reconnects by itself, Listen wakes, the message held before the outage comes again and
// new ones flow.
func TestBrokerOutage(t *testing.T) {
	t.Parallel()
	p := newProxy(t) // first, so that it is still up while the test's queues close
	b := setup(t)
	q := b.openURL(t, p.url(t), []string{"q"}, WithPollInterval(time.Hour), WithPublishTimeout(300*time.Millisecond))
	l := queuetest.Listen(t, q, "q")
	l.Expect("q", 5*time.Second)
	publish(t, b.ctx, q, "q", 0, `"before"`)
	held := readN(t, b.ctx, q, "q", 1, time.Hour)

	p.setDown(true)
	require.Eventually(t, func() bool { c, _ := q.sub.current(); return c == nil }, 10*time.Second, 10*time.Millisecond)
	msgs, err := q.Read(b.ctx, "q", 1, time.Minute)
	require.NoError(t, err, "an outage is no error of Read's")
	require.Empty(t, msgs)
	start := time.Now()
	err = q.Publish(b.ctx, "q", [][]byte{[]byte(`"lost"`)}, 0)
	require.ErrorIs(t, err, ErrNotConnected)
	require.Less(t, time.Since(start), 2*time.Second, "bounded by the publish timeout")
	require.ErrorIs(t, q.Ack(b.ctx, "q", held[0].ID), queue.ErrNotFound, "a delivery of the lost connection is void")

	time.Sleep(time.Second) // a few failed reconnect attempts
	l.Drain()
	p.setDown(false)
	l.Expect("q", 10*time.Second) // consuming again
	again := readN(t, b.ctx, q, "q", 1, time.Hour)
	require.JSONEq(t, `"before"`, string(again[0].Payload))
	require.Equal(t, 2, again[0].ReadCount)
	require.Eventually(t, func() bool { c, _ := q.pub.current(); return c != nil }, 10*time.Second, 10*time.Millisecond)
	publish(t, b.ctx, q, "q", 0, `"after"`)
	after := readN(t, b.ctx, q, "q", 1, time.Hour)
	require.JSONEq(t, `"after"`, string(after[0].Payload))
	require.NoError(t, q.Ack(b.ctx, "q", again[0].ID, after[0].ID))
}

// TestPublishWaitsForReconnect: a Publish that starts during a short outage waits for the
// connection and succeeds.
func TestPublishWaitsForReconnect(t *testing.T) {
	t.Parallel()
	p := newProxy(t) // first, so that it is still up while the test's queues close
	b := setup(t)
	q := b.openURL(t, p.url(t), []string{"q"}, WithPublishTimeout(10*time.Second))
	publish(t, b.ctx, q, "q", 0, `1`) // declares the queue
	p.setDown(true)
	require.Eventually(t, func() bool { c, _ := q.pub.current(); return c == nil }, 5*time.Second, 10*time.Millisecond)
	go func() {
		time.Sleep(300 * time.Millisecond)
		p.setDown(false)
	}()
	publish(t, b.ctx, q, "q", 0, `2`)
	require.Equal(t, 2, b.ready(t, q.QueueName("q")))
}

// TestBrokerRestart stops and starts a private RabbitMQ node: the Queue reconnects with backoff,
// durable queues and persistent messages survive (the delayed one too), a message held unacked
// when the broker stopped is delivered again, and consumers and Publish resume.
func TestBrokerRestart(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts, stops and starts again a private RabbitMQ node (half a minute or more); skipped with -short")
	}
	n := newNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	q, err := New(n.url(), WithReconnectBackoff(50*time.Millisecond, time.Second), WithPollInterval(time.Hour))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, q.Close()) })
	l := queuetest.Listen(t, q, "q")
	l.Expect("q", 10*time.Second)

	publish(t, ctx, q, "q", 0, `"held"`, `"buffered"`)
	publish(t, ctx, q, "q", 8*time.Second, `"delayed"`) // still in its delay queue when the node stops
	held := readN(t, ctx, q, "q", 1, time.Hour)
	require.JSONEq(t, `"held"`, string(held[0].Payload))

	n.stop(t)
	require.Eventually(t, func() bool { c, _ := q.sub.current(); return c == nil }, 10*time.Second, 10*time.Millisecond)
	msgs, err := q.Read(ctx, "q", 1, time.Minute)
	require.NoError(t, err)
	require.Empty(t, msgs, "the buffered message went with the connection")
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	err = q.Publish(short, "q", [][]byte{[]byte(`"lost"`)}, 0)
	cancelShort()
	require.ErrorIs(t, err, ErrNotConnected)
	require.ErrorIs(t, q.Ack(ctx, "q", held[0].ID), queue.ErrNotFound)

	l.Drain()
	n.start(t)
	l.Expect("q", 30*time.Second) // consuming again
	got := map[string]int{}
	var ids []int64
	require.Eventually(t, func() bool {
		msgs, err := q.Read(ctx, "q", 10, time.Hour)
		require.NoError(t, err)
		for _, m := range msgs {
			got[string(m.Payload)] = m.ReadCount
			ids = append(ids, m.ID)
		}
		return len(got) == 3
	}, 40*time.Second, 10*time.Millisecond, "got %v; %s", got, n.ctl(t, "list_queues", "name", "messages", "arguments"))
	require.Equal(t, 2, got[`"held"`], "what the consumer held was delivered again")
	require.Equal(t, 2, got[`"buffered"`], "what the consumer held was delivered again")
	require.Equal(t, 1, got[`"delayed"`], "the delayed message survived the restart")
	publish(t, ctx, q, "q", 0, `"after"`)
	after := readN(t, ctx, q, "q", 1, time.Hour)
	require.JSONEq(t, `"after"`, string(after[0].Payload))
	require.NoError(t, q.Ack(ctx, "q", append(ids, after[0].ID)...))
}

// TestConfirmedMeansStored publishes while the network to the broker keeps failing: every
// Publish that returned nil has its message in the queue (some twice, which consumers tolerate).
func TestConfirmedMeansStored(t *testing.T) {
	t.Parallel()
	p := newProxy(t)
	b := setup(t)
	q := b.openURL(t, p.url(t), []string{"q"}, WithPublishTimeout(3*time.Second))
	publish(t, b.ctx, q, "q", 0, `"first"`)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(150 * time.Millisecond):
			}
			p.setDown(true)
			time.Sleep(50 * time.Millisecond)
			p.setDown(false)
		}
	})
	confirmed := map[string]bool{}
	failed := 0
	for i := range 150 {
		payload := fmt.Sprintf(`{"i": %d}`, i)
		if err := q.Publish(b.ctx, "q", [][]byte{[]byte(payload)}, 0); err != nil {
			failed++
			continue
		}
		confirmed[payload] = true
	}
	close(stop)
	wg.Wait()
	t.Logf("%d publishes confirmed, %d failed", len(confirmed), failed)
	require.NotEmpty(t, confirmed)

	reader := b.open(t, nil)
	seen := map[string]bool{}
	for left := b.ready(t, q.QueueName("q")); left > 0; {
		msgs := readN(t, b.ctx, reader, "q", min(left, 10), time.Hour)
		for _, m := range msgs {
			seen[string(m.Payload)] = true
		}
		require.NoError(t, reader.Ack(b.ctx, "q", ids(msgs)...))
		left -= len(msgs)
	}
	for payload := range confirmed {
		require.True(t, seen[payload], "confirmed message %s is missing", payload)
	}
}

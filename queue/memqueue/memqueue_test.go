package memqueue

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tasker-systems/tasker/queue"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

type bundle struct {
	ctx context.Context
	q   *Queue
}

func setup(t testing.TB, opts ...Option) *bundle {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return &bundle{ctx: ctx, q: New(opts...)}
}

func (b *bundle) send(t testing.TB, queueName string, delay time.Duration, payloads ...string) {
	t.Helper()
	raw := make([][]byte, len(payloads))
	for i, p := range payloads {
		raw[i] = []byte(p)
	}
	require.NoError(t, b.q.SendTx(b.ctx, nil, queueName, raw, delay))
}

func ids(msgs []queue.Message) []int64 {
	out := make([]int64, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

func TestSendReadAck(t *testing.T) {
	t.Parallel()
	b := setup(t)
	before := time.Now()
	b.send(t, "steps", 0, `{"n": 1}`, `{"n": 2}`, `{"b": [1, 2], "a": "x"}`)
	b.send(t, "other", 0, `"elsewhere"`)

	msgs, err := b.q.Read(b.ctx, "steps", 10, time.Minute)
	require.NoError(t, err)
	require.Len(t, msgs, 3)
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

	again, err := b.q.Read(b.ctx, "steps", 10, time.Minute)
	require.NoError(t, err)
	require.Empty(t, again, "claimed messages are hidden")
	require.NotNil(t, again, "an empty slice, not nil")

	require.NoError(t, b.q.Ack(b.ctx, "steps", ids(msgs)...))
	require.NoError(t, b.q.Ack(b.ctx, "steps", ids(msgs)...), "acking twice is harmless")
	require.NoError(t, b.q.Ack(b.ctx, "steps"), "acking nothing is a no-op")
	require.Zero(t, b.q.count("steps"))
	require.Equal(t, 1, b.q.count("other"), "only the other queue's message is left")

	other, err := b.q.Read(b.ctx, "other", 10, time.Minute)
	require.NoError(t, err)
	require.Len(t, other, 1)
	require.JSONEq(t, `"elsewhere"`, string(other[0].Payload))

	none, err := b.q.Read(b.ctx, "never-used", 10, time.Minute)
	require.NoError(t, err)
	require.NotNil(t, none)
	require.Empty(t, none)
}

func TestPayloadIsACopy(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := []byte(`{"n": 1}`)
	require.NoError(t, b.q.SendTx(b.ctx, nil, "q", [][]byte{p}, 0))
	p[6] = '2'
	msgs, err := b.q.Read(b.ctx, "q", 1, time.Minute)
	require.NoError(t, err)
	require.JSONEq(t, `{"n": 1}`, string(msgs[0].Payload))
}

func TestReadLimit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.send(t, "q", 0, `1`, `2`, `3`, `4`, `5`)

	first, err := b.q.Read(b.ctx, "q", 2, time.Minute)
	require.NoError(t, err)
	require.Len(t, first, 2)
	rest, err := b.q.Read(b.ctx, "q", 10, time.Minute)
	require.NoError(t, err)
	require.Len(t, rest, 3)
	require.Less(t, first[1].ID, rest[0].ID, "oldest first")
	require.JSONEq(t, `1`, string(first[0].Payload))
	require.JSONEq(t, `3`, string(rest[0].Payload))
}

func TestReadRejectsBadArguments(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.q.Read(b.ctx, "q", 0, time.Minute)
	require.ErrorContains(t, err, "n must be positive")
	_, err = b.q.Read(b.ctx, "q", 1, 0)
	require.ErrorContains(t, err, "visibility timeout must be positive")
	require.ErrorContains(t, b.q.Extend(b.ctx, "q", 1, 0), "visibility timeout must be positive")
}

func TestCancelledContext(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.send(t, "q", 0, `1`)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := b.q.Read(ctx, "q", 1, time.Minute)
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorIs(t, b.q.SendTx(ctx, nil, "q", [][]byte{[]byte(`2`)}, 0), context.Canceled)
	require.Equal(t, 1, b.q.count("q"), "nothing was sent")
}

func TestSendInvalidJSON(t *testing.T) {
	t.Parallel()
	b := setup(t)
	err := b.q.SendTx(b.ctx, nil, "q", [][]byte{[]byte(`{}`), []byte(`{"broken":`)}, 0)
	require.ErrorContains(t, err, "payload 1 is not valid JSON")
	require.Zero(t, b.q.count("q"), "checked before anything was sent")

	// Valid JSON that jsonb refuses is refused here too, so that tests on memory catch it.
	err = b.q.SendTx(b.ctx, nil, "q", [][]byte{[]byte(`"nul \u0000"`)}, 0)
	require.ErrorContains(t, err, "payload rejected as jsonb")
	err = b.q.SendTx(b.ctx, nil, "q", [][]byte{[]byte(`{"k\u0000": 1}`)}, 0)
	require.ErrorContains(t, err, "payload rejected as jsonb")
	require.NoError(t, b.q.SendTx(b.ctx, nil, "q", [][]byte{[]byte(`"escaped \\u0000 is text"`)}, 0))

	require.ErrorContains(t, b.q.SendTx(b.ctx, nil, "", [][]byte{[]byte(`1`)}, 0), "empty queue name")
	require.NoError(t, b.q.SendTx(b.ctx, nil, "q", nil, 0), "no payloads is a no-op")
	require.Equal(t, 1, b.q.count("q"))
}

func TestSendManyKeepsOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	payloads := make([]string, 500)
	for i := range payloads {
		payloads[i] = fmt.Sprintf(`{"i": %d}`, i)
	}
	b.send(t, "q", 0, payloads...)

	msgs, err := b.q.Read(b.ctx, "q", 1000, time.Minute)
	require.NoError(t, err)
	require.Len(t, msgs, 500)
	for i, m := range msgs {
		var doc struct{ I int }
		require.NoError(t, json.Unmarshal(m.Payload, &doc))
		require.Equal(t, i, doc.I, "ids follow the order of the payloads")
	}
}

func TestSendDelay(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sent := time.Now()
	b.send(t, "q", 0, `"now"`)
	b.send(t, "q", 300*time.Millisecond, `"later"`)

	msgs, err := b.q.Read(b.ctx, "q", 10, time.Minute)
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	require.JSONEq(t, `"now"`, string(msgs[0].Payload))

	var later []queue.Message
	require.Eventually(t, func() bool {
		later, err = b.q.Read(b.ctx, "q", 10, time.Minute)
		require.NoError(t, err)
		return len(later) == 1
	}, 5*time.Second, 10*time.Millisecond)
	require.GreaterOrEqual(t, time.Since(sent), 300*time.Millisecond)
	require.JSONEq(t, `"later"`, string(later[0].Payload))
}

func TestVisibilityTimeout(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.send(t, "q", 0, `{"k": "v"}`)

	msgs, err := b.q.Read(b.ctx, "q", 1, 200*time.Millisecond)
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	require.Equal(t, 1, msgs[0].ReadCount)

	hidden, err := b.q.Read(b.ctx, "q", 1, time.Minute)
	require.NoError(t, err)
	require.Empty(t, hidden)

	var again []queue.Message
	require.Eventually(t, func() bool {
		again, err = b.q.Read(b.ctx, "q", 1, time.Minute)
		require.NoError(t, err)
		return len(again) == 1
	}, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, msgs[0].ID, again[0].ID)
	require.Equal(t, 2, again[0].ReadCount)
	require.Equal(t, msgs[0].EnqueuedAt, again[0].EnqueuedAt)
	require.JSONEq(t, `{"k": "v"}`, string(again[0].Payload))
}

func TestRetryLater(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.send(t, "q", 0, `1`)

	msgs, err := b.q.Read(b.ctx, "q", 1, time.Hour)
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	id := msgs[0].ID

	require.NoError(t, b.q.RetryLater(b.ctx, "q", id, 0))
	msgs, err = b.q.Read(b.ctx, "q", 1, time.Hour)
	require.NoError(t, err)
	require.Len(t, msgs, 1, "given back now: visible at once")
	require.Equal(t, id, msgs[0].ID)
	require.Equal(t, 2, msgs[0].ReadCount)

	require.NoError(t, b.q.RetryLater(b.ctx, "q", id, -time.Second), "a negative delay counts as 0")
	msgs, err = b.q.Read(b.ctx, "q", 1, time.Hour)
	require.NoError(t, err)
	require.Len(t, msgs, 1)

	require.NoError(t, b.q.RetryLater(b.ctx, "q", id, 300*time.Millisecond))
	msgs, err = b.q.Read(b.ctx, "q", 1, time.Hour)
	require.NoError(t, err)
	require.Empty(t, msgs, "given back for later: still hidden")
	require.Eventually(t, func() bool {
		msgs, err = b.q.Read(b.ctx, "q", 1, time.Hour)
		require.NoError(t, err)
		return len(msgs) == 1
	}, 5*time.Second, 10*time.Millisecond)

	require.ErrorIs(t, b.q.RetryLater(b.ctx, "other", id, 0), queue.ErrNotFound, "ids belong to their queue")
	require.NoError(t, b.q.Ack(b.ctx, "other", id), "acking on another queue ignores the id")
	require.Equal(t, 1, b.q.count("q"))
	require.NoError(t, b.q.Ack(b.ctx, "q", id))
	require.ErrorIs(t, b.q.RetryLater(b.ctx, "q", id, 0), queue.ErrNotFound)
}

func TestExtend(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.send(t, "q", 0, `1`)

	msgs, err := b.q.Read(b.ctx, "q", 1, 200*time.Millisecond)
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	id := msgs[0].ID

	require.NoError(t, b.q.Extend(b.ctx, "q", id, time.Minute))
	time.Sleep(400 * time.Millisecond) // past the original timeout
	msgs, err = b.q.Read(b.ctx, "q", 1, time.Minute)
	require.NoError(t, err)
	require.Empty(t, msgs, "extended past the original visibility timeout")

	require.NoError(t, b.q.Ack(b.ctx, "q", id))
	err = b.q.Extend(b.ctx, "q", id, time.Minute)
	require.ErrorIs(t, err, queue.ErrNotFound)
}

func TestAckTx(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.send(t, "q", 0, `1`)
	msgs, err := b.q.Read(b.ctx, "q", 1, time.Hour)
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	require.NoError(t, b.q.AckTx(b.ctx, nil, "q", msgs[0].ID))
	require.Zero(t, b.q.count("q"), "no transaction: removed at once")
}

// TestConcurrentReaders: every message is read exactly once while the visibility timeout is long
// enough.
func TestConcurrentReaders(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const total, readers = 2000, 8
	payloads := make([]string, total)
	for i := range payloads {
		payloads[i] = fmt.Sprintf(`{"i": %d}`, i)
	}
	b.send(t, "q", 0, payloads...)

	var (
		mu   sync.Mutex
		seen = make(map[int64]int, total)
		wg   sync.WaitGroup
		errs = make(chan error, readers)
	)
	for range readers {
		wg.Go(func() {
			for {
				msgs, err := b.q.Read(b.ctx, "q", 7, time.Minute)
				if err != nil {
					errs <- err
					return
				}
				if len(msgs) == 0 {
					return
				}
				mu.Lock()
				for _, m := range msgs {
					seen[m.ID]++
				}
				mu.Unlock()
				if err := b.q.Ack(b.ctx, "q", ids(msgs)...); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Len(t, seen, total, "no message missing")
	for id, n := range seen {
		require.Equal(t, 1, n, "message %d read more than once", id)
	}
	require.Zero(t, b.q.count("q"))
}

func BenchmarkSendReadAck(b *testing.B) {
	for _, batch := range []int{1, 100} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			bb := setup(b)
			payloads := make([][]byte, batch)
			for i := range payloads {
				payloads[i] = []byte(`{"task_id": "0190b3a4-7c1e-7000-8000-000000000000", "step": "validate_order"}`)
			}
			for b.Loop() {
				if err := bb.q.SendTx(bb.ctx, nil, "bench", payloads, 0); err != nil {
					b.Fatal(err)
				}
				msgs, err := bb.q.Read(bb.ctx, "bench", batch, time.Minute)
				if err != nil {
					b.Fatal(err)
				}
				if len(msgs) != batch {
					b.Fatalf("read %d messages, want %d", len(msgs), batch)
				}
				if err := bb.q.Ack(bb.ctx, "bench", ids(msgs)...); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

package pgqueue

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/queue"
)

type bundle struct {
	ctx  context.Context
	db   *testdb.DB
	pool *pgxpool.Pool
	q    *Queue
}

func setup(t testing.TB, dbOpts []testdb.Option, opts ...Option) *bundle {
	t.Helper()
	db := testdb.New(t, dbOpts...)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	opts = append([]Option{WithSchema(db.Schema)}, opts...)
	return &bundle{ctx: ctx, db: db, pool: db.Pool, q: New(db.Pool, opts...)}
}

// send commits payloads on queueName in a transaction of its own.
func (b *bundle) send(t testing.TB, queueName string, delay time.Duration, payloads ...string) {
	t.Helper()
	raw := make([][]byte, len(payloads))
	for i, p := range payloads {
		raw[i] = []byte(p)
	}
	err := pgx.BeginFunc(b.ctx, b.pool, func(tx pgx.Tx) error {
		return b.q.SendTx(b.ctx, tx, queueName, raw, delay)
	})
	require.NoError(t, err)
}

func (b *bundle) rowCount(t testing.TB) int {
	t.Helper()
	var n int
	err := b.pool.QueryRow(b.ctx, `SELECT count(*) FROM `+pgx.Identifier{b.db.Schema, "queue_messages"}.Sanitize()).Scan(&n)
	require.NoError(t, err)
	return n
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
	b := setup(t, nil)
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

	require.NoError(t, b.q.Ack(b.ctx, "steps", ids(msgs)...))
	require.NoError(t, b.q.Ack(b.ctx, "steps", ids(msgs)...), "acking twice is harmless")
	require.NoError(t, b.q.Ack(b.ctx, "steps"), "acking nothing is a no-op")
	require.Equal(t, 1, b.rowCount(t), "only the other queue's message is left")

	other, err := b.q.Read(b.ctx, "other", 10, time.Minute)
	require.NoError(t, err)
	require.Len(t, other, 1)
	require.JSONEq(t, `"elsewhere"`, string(other[0].Payload))
}

func TestReadLimit(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
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
	b := setup(t, nil)
	_, err := b.q.Read(b.ctx, "q", 0, time.Minute)
	require.ErrorContains(t, err, "n must be positive")
	_, err = b.q.Read(b.ctx, "q", 1, 0)
	require.ErrorContains(t, err, "visibility timeout must be positive")
	require.ErrorContains(t, b.q.Extend(b.ctx, "q", 1, 0), "visibility timeout must be positive")
}

func TestSendRolledBackIsNeverVisible(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)

	tx, err := b.pool.Begin(b.ctx)
	require.NoError(t, err)
	require.NoError(t, b.q.SendTx(b.ctx, tx, "q", [][]byte{[]byte(`{"x": 1}`)}, 0))

	msgs, err := b.q.Read(b.ctx, "q", 10, time.Minute)
	require.NoError(t, err)
	require.Empty(t, msgs, "an uncommitted send is invisible")

	require.NoError(t, tx.Rollback(b.ctx))
	msgs, err = b.q.Read(b.ctx, "q", 10, time.Minute)
	require.NoError(t, err)
	require.Empty(t, msgs)
	require.Zero(t, b.rowCount(t))
}

func TestSendInvalidJSON(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)

	tx, err := b.pool.Begin(b.ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(b.ctx) }()

	err = b.q.SendTx(b.ctx, tx, "q", [][]byte{[]byte(`{}`), []byte(`{"broken":`)}, 0)
	require.ErrorContains(t, err, "payload 1 is not valid JSON")
	// Checked before anything was sent: the caller's transaction is still usable.
	require.NoError(t, b.q.SendTx(b.ctx, tx, "q", [][]byte{[]byte(`{"ok": true}`)}, 0))

	// Valid JSON that jsonb refuses aborts the statement, with a clear error.
	err = b.q.SendTx(b.ctx, tx, "q", [][]byte{[]byte(`"nul \u0000"`)}, 0)
	require.ErrorContains(t, err, "payload rejected as jsonb")

	require.ErrorContains(t, b.q.SendTx(b.ctx, tx, "", [][]byte{[]byte(`1`)}, 0), "empty queue name")
	require.NoError(t, b.q.SendTx(b.ctx, tx, "q", nil, 0), "no payloads is a no-op")
}

func TestSendManyInOneStatement(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
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
		require.Equal(t, i, doc.I, "msg_id follows the order of the payloads")
	}
}

func TestSendDelay(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	sent := time.Now()
	b.send(t, "q", 0, `"now"`)
	b.send(t, "q", time.Second, `"later"`)

	msgs, err := b.q.Read(b.ctx, "q", 10, time.Minute)
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	require.JSONEq(t, `"now"`, string(msgs[0].Payload))

	var later []queue.Message
	require.Eventually(t, func() bool {
		later, err = b.q.Read(b.ctx, "q", 10, time.Minute)
		require.NoError(t, err)
		return len(later) == 1
	}, 10*time.Second, 50*time.Millisecond)
	require.GreaterOrEqual(t, time.Since(sent), 900*time.Millisecond)
	require.JSONEq(t, `"later"`, string(later[0].Payload))
}

func TestVisibilityTimeout(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.send(t, "q", 0, `{"k": "v"}`)

	msgs, err := b.q.Read(b.ctx, "q", 1, 500*time.Millisecond)
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
	}, 10*time.Second, 50*time.Millisecond)
	require.Equal(t, msgs[0].ID, again[0].ID)
	require.Equal(t, 2, again[0].ReadCount)
	require.JSONEq(t, `{"k": "v"}`, string(again[0].Payload))
}

func TestRetryLater(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
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

	require.NoError(t, b.q.RetryLater(b.ctx, "q", id, 700*time.Millisecond))
	msgs, err = b.q.Read(b.ctx, "q", 1, time.Hour)
	require.NoError(t, err)
	require.Empty(t, msgs, "given back for later: still hidden")
	require.Eventually(t, func() bool {
		msgs, err = b.q.Read(b.ctx, "q", 1, time.Hour)
		require.NoError(t, err)
		return len(msgs) == 1
	}, 10*time.Second, 50*time.Millisecond)

	require.ErrorIs(t, b.q.RetryLater(b.ctx, "other", id, 0), queue.ErrNotFound, "ids belong to their queue")
	require.NoError(t, b.q.Ack(b.ctx, "q", id))
	require.ErrorIs(t, b.q.RetryLater(b.ctx, "q", id, 0), queue.ErrNotFound)
}

func TestExtend(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.send(t, "q", 0, `1`)

	msgs, err := b.q.Read(b.ctx, "q", 1, 500*time.Millisecond)
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	id := msgs[0].ID

	require.NoError(t, b.q.Extend(b.ctx, "q", id, time.Minute))
	time.Sleep(time.Second) // past the original timeout
	msgs, err = b.q.Read(b.ctx, "q", 1, time.Minute)
	require.NoError(t, err)
	require.Empty(t, msgs, "extended past the original visibility timeout")

	require.NoError(t, b.q.Ack(b.ctx, "q", id))
	err = b.q.Extend(b.ctx, "q", id, time.Minute)
	require.ErrorIs(t, err, queue.ErrNotFound)
}

func TestAckTx(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.send(t, "q", 0, `1`)
	msgs, err := b.q.Read(b.ctx, "q", 1, time.Hour)
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	id := msgs[0].ID

	tx, err := b.pool.Begin(b.ctx)
	require.NoError(t, err)
	require.NoError(t, b.q.AckTx(b.ctx, tx, "q", id))
	require.NoError(t, tx.Rollback(b.ctx))
	require.Equal(t, 1, b.rowCount(t), "a rolled-back ack keeps the message")
	require.NoError(t, b.q.Extend(b.ctx, "q", id, time.Hour), "the message is still there")

	err = pgx.BeginFunc(b.ctx, b.pool, func(tx pgx.Tx) error { return b.q.AckTx(b.ctx, tx, "q", id) })
	require.NoError(t, err)
	require.Zero(t, b.rowCount(t))
}

// TestConcurrentReaders checks SKIP LOCKED claims: every message is read exactly once while the
// visibility timeout is long enough.
func TestConcurrentReaders(t *testing.T) {
	t.Parallel()
	b := setup(t, []testdb.Option{testdb.WithMaxConns(10)})
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
	require.Zero(t, b.rowCount(t))
}

func TestChannelName(t *testing.T) {
	t.Parallel()
	require.Equal(t, "tasker_queue_tasker", channelName("tasker"))
	long := strings.Repeat("s", 63)
	name := channelName(long)
	require.LessOrEqual(t, len(name), 63)
	require.NotEqual(t, name, channelName(strings.Repeat("t", 63)))
}

func BenchmarkSendReadAck(b *testing.B) {
	for _, batch := range []int{1, 100} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			bb := setup(b, nil)
			payloads := make([][]byte, batch)
			for i := range payloads {
				payloads[i] = []byte(`{"task_id": "0190b3a4-7c1e-7000-8000-000000000000", "step": "validate_order"}`)
			}
			iterations := 0
			for b.Loop() {
				iterations++
				err := pgx.BeginFunc(bb.ctx, bb.pool, func(tx pgx.Tx) error {
					return bb.q.SendTx(bb.ctx, tx, "bench", payloads, 0)
				})
				if err != nil {
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
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(iterations*batch), "ns/msg")
		})
	}
}

package memqueue

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tasker-systems/tasker/queue/queuetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// harness runs the conformance suite on a fresh in-memory queue per subtest. There are no
// transactions (SendTx and AckTx act at once), and Read sees every change at once.
var harness = queuetest.Harness{
	New: func(_ testing.TB, cfg queuetest.Config) queuetest.Backend {
		return queuetest.Backend{Queue: New(WithPollInterval(cfg.PollInterval))}
	},
	Capabilities: queuetest.Capabilities{ImmediateRead: true, ExactReadCounts: true, Ordered: true, DatedBack: true},
}

func TestConformance(t *testing.T) {
	t.Parallel()
	queuetest.Run(t, harness)
}

// TestSendRefusesWhatJSONBRefuses: valid JSON that PostgreSQL's jsonb cannot store is refused
// here too, so that code tested on memory does not fail on pgqueue.
func TestSendRefusesWhatJSONBRefuses(t *testing.T) {
	t.Parallel()
	q := New()
	ctx := context.Background()
	for _, doc := range []string{`"nul \u0000"`, `{"k\u0000": 1}`, `[1, {"a": "\u0000"}]`} {
		err := q.SendTx(ctx, nil, "q", [][]byte{[]byte(`{}`), []byte(doc)}, 0)
		require.ErrorContains(t, err, "payload rejected as jsonb: payload 1", doc)
	}
	require.Zero(t, q.count("q"), "checked before anything was queued")
	require.NoError(t, q.SendTx(ctx, nil, "q", [][]byte{[]byte(`"escaped \\u0000 is text"`)}, 0))
	require.Equal(t, 1, q.count("q"))
}

// TestCancelledContext: calls with an ended context fail at once and change nothing.
func TestCancelledContext(t *testing.T) {
	t.Parallel()
	q := New()
	require.NoError(t, q.SendTx(context.Background(), nil, "q", [][]byte{[]byte(`1`)}, 0))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := q.Read(ctx, "q", 1, time.Minute)
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorIs(t, q.SendTx(ctx, nil, "q", [][]byte{[]byte(`2`)}, 0), context.Canceled)
	require.ErrorIs(t, q.Ack(ctx, "q", 1), context.Canceled)
	require.ErrorIs(t, q.Extend(ctx, "q", 1, time.Minute), context.Canceled)
	require.Equal(t, 1, q.count("q"), "nothing was sent or acked")
	msgs, err := q.Read(context.Background(), "q", 10, time.Minute)
	require.NoError(t, err)
	require.Len(t, msgs, 1, "nothing was read")
	require.Equal(t, 1, msgs[0].ReadCount)
}

// TestAckedMessagesAreCompacted: acked messages are dropped from the queue's list in bulk, and
// the rest keep their order.
func TestAckedMessagesAreCompacted(t *testing.T) {
	t.Parallel()
	q := New()
	ctx := context.Background()
	payloads := make([][]byte, 300)
	for i := range payloads {
		payloads[i] = fmt.Appendf(nil, `{"i": %d}`, i)
	}
	require.NoError(t, q.SendTx(ctx, nil, "q", payloads, 0))
	msgs, err := q.Read(ctx, "q", 200, time.Minute)
	require.NoError(t, err)
	for _, m := range msgs {
		require.NoError(t, q.Ack(ctx, "q", m.ID))
	}
	q.mu.Lock()
	kept := len(q.queues["q"].msgs)
	q.mu.Unlock()
	require.Less(t, kept, 300, "acked messages were dropped")
	rest, err := q.Read(ctx, "q", 200, time.Minute)
	require.NoError(t, err)
	require.Len(t, rest, 100)
	for i := 1; i < len(rest); i++ {
		require.Greater(t, rest[i].ID, rest[i-1].ID)
	}
	require.Equal(t, msgs[len(msgs)-1].ID+1, rest[0].ID)
}

func BenchmarkSendReadAck(b *testing.B) {
	queuetest.Benchmark(b, harness)
}

package pgqueue

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/queue/queuetest"
	"github.com/tasker-systems/tasker/store/postgres"
)

type bundle struct {
	ctx  context.Context
	db   *testdb.DB
	pool *pgxpool.Pool
	q    *Queue
}

func setup(t testing.TB, opts ...Option) *bundle {
	t.Helper()
	db := testdb.New(t, testdb.WithMaxConns(12))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	opts = append([]Option{WithSchema(db.Schema)}, opts...)
	return &bundle{ctx: ctx, db: db, pool: db.Pool, q: New(db.Pool, opts...)}
}

// send commits payloads on queueName in a transaction of its own.
func (b *bundle) send(t testing.TB, queueName string, payloads ...string) {
	t.Helper()
	raw := make([][]byte, len(payloads))
	for i, p := range payloads {
		raw[i] = []byte(p)
	}
	err := pgx.BeginFunc(b.ctx, b.pool, func(tx pgx.Tx) error {
		return b.q.SendTx(b.ctx, tx, queueName, raw, 0)
	})
	require.NoError(t, err)
}

// harness runs the conformance suite on a fresh schema per subtest: the queue joins the pool's
// transactions, and Read sees every committed change at once.
var harness = queuetest.Harness{
	New: func(t testing.TB, cfg queuetest.Config) queuetest.Backend {
		b := setup(t, WithPollInterval(cfg.PollInterval))
		return queuetest.Backend{Queue: b.q, Begin: b.pool.Begin}
	},
	Capabilities: queuetest.Capabilities{Transactions: true, ImmediateRead: true, ExactReadCounts: true, Ordered: true, DatedBack: true},
}

func TestConformance(t *testing.T) {
	t.Parallel()
	queuetest.Run(t, harness)
}

func BenchmarkSendReadAck(b *testing.B) {
	queuetest.Benchmark(b, harness)
}

// TestSendRejectsWhatJSONBRefuses: valid JSON that jsonb cannot store (a string holding \u0000)
// fails the statement with an error that says so, and nothing is stored.
func TestSendRejectsWhatJSONBRefuses(t *testing.T) {
	t.Parallel()
	b := setup(t)
	err := pgx.BeginFunc(b.ctx, b.pool, func(tx pgx.Tx) error {
		return b.q.SendTx(b.ctx, tx, "q", [][]byte{[]byte(`{}`), []byte(`"nul \u0000"`)}, 0)
	})
	require.ErrorContains(t, err, "payload rejected as jsonb")
	var n int
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT count(*) FROM `+pgx.Identifier{b.db.Schema, "queue_messages"}.Sanitize()).Scan(&n))
	require.Zero(t, n)
}

func TestChannelName(t *testing.T) {
	t.Parallel()
	require.Equal(t, "tasker_queue_tasker", channelName("tasker"))
	long := strings.Repeat("s", 63)
	name := channelName(long)
	require.LessOrEqual(t, len(name), 63)
	require.NotEqual(t, name, channelName(strings.Repeat("t", 63)))
}

// TestOwnedByTheStore: a queue built by New on a store's pool and schema is the store's own
// (store.QueueOwner), so that the store sends and acks its messages in its own transactions.
func TestOwnedByTheStore(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := postgres.New(b.pool, postgres.WithSchema(b.db.Schema))
	require.True(t, s.OwnsQueue(b.q))
	require.False(t, s.OwnsQueue(New(b.pool)), "the default schema is not the store's")
}

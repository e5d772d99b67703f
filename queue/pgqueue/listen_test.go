package pgqueue

import (
	"context"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/queue/queuetest"
)

// TestListenSchemasAreSeparate: each schema has its own NOTIFY channel, so a send to a queue of
// the same name in another schema wakes nobody here.
func TestListenSchemasAreSeparate(t *testing.T) {
	t.Parallel()
	b1 := setup(t, WithPollInterval(time.Minute))
	b2 := setup(t, WithPollInterval(time.Minute))
	l := queuetest.Listen(t, b1.q, "a")
	l.Expect("a", 5*time.Second)

	b2.send(t, "a", `1`) // same queue name, other schema
	l.ExpectNone("a", 300*time.Millisecond)
	b1.send(t, "a", `1`)
	l.Expect("a", time.Second)
}

func TestListenPollsWhileDisconnected(t *testing.T) {
	t.Parallel()
	// Nothing listens on port 1: every connection attempt fails at once.
	cfg, err := pgxpool.ParseConfig("postgres://postgres@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=2")
	require.NoError(t, err)
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)

	logged, logger := errorLogger()
	q := New(pool, WithPollInterval(100*time.Millisecond), WithLogger(logger), withReconnectDelay(50*time.Millisecond))
	l := queuetest.Listen(t, q, "a")
	for range 3 {
		l.Expect("a", time.Second)
	}
	select {
	case err := <-logged:
		require.ErrorContains(t, err, "connect")
	case <-time.After(5 * time.Second):
		t.Fatal("connection failure was not logged")
	}
}

// listenBackends counts the backends listening on b's channel with Listen's application name.
func (b *bundle) listenBackends(t *testing.T, terminate bool) int {
	t.Helper()
	query := `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND query = $2`
	if terminate {
		query = `SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE application_name = $1 AND query = $2) AS t`
	}
	// Exactly this test's listener: its last statement names its schema's channel.
	var n int
	err := b.pool.QueryRow(b.ctx, query, ListenApplicationName, "listen "+pgx.Identifier{b.q.Channel()}.Sanitize()).Scan(&n)
	require.NoError(t, err)
	return n
}

func TestListenReconnects(t *testing.T) {
	t.Parallel()
	logged, logger := errorLogger()
	b := setup(t, WithPollInterval(time.Minute), WithLogger(logger))
	l := queuetest.Listen(t, b.q, "a")
	l.Expect("a", 5*time.Second)

	require.Equal(t, 1, b.listenBackends(t, true), "killed the listener's backend")
	select {
	case err := <-logged:
		require.Error(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("the dropped connection was not logged")
	}
	// Reconnecting (after ReconnectDelayDefault) wakes the queue again, then notifications flow.
	l.Expect("a", 5*time.Second)
	b.send(t, "a", `1`)
	l.Expect("a", time.Second)
}

// TestListenClosesItsConnection: once Listen returns, its dedicated connection is gone.
func TestListenClosesItsConnection(t *testing.T) {
	t.Parallel()
	b := setup(t, WithPollInterval(time.Minute))
	l := queuetest.Listen(t, b.q, "a")
	l.Expect("a", 5*time.Second) // connected and waiting for notifications
	require.Equal(t, 1, b.listenBackends(t, false))
	l.Stop()
	require.Eventually(t, func() bool { return b.listenBackends(t, false) == 0 }, 5*time.Second, 50*time.Millisecond,
		"the listen connection is closed")
}

// errorSink passes every logged error to errs.
type errorSink struct {
	logr.LogSink
	errs chan error
}

func (s *errorSink) Error(err error, _ string, _ ...any) {
	select {
	case s.errs <- err:
	default:
	}
}

// errorLogger returns a logger that passes logged errors to the channel and discards the rest.
func errorLogger() (chan error, logr.Logger) {
	logged := make(chan error, 100)
	logger := funcr.New(func(string, string) {}, funcr.Options{})
	return logged, logger.WithSink(&errorSink{LogSink: logger.GetSink(), errs: logged})
}

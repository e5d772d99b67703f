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
)

// wakes records wake-ups without ever blocking the listener.
type wakes chan string

func (w wakes) wake(queueName string) {
	select {
	case w <- queueName:
	default:
	}
}

// expect waits for a wake-up of queueName, skipping others.
func (w wakes) expect(t *testing.T, queueName string, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case got := <-w:
			if got == queueName {
				return
			}
		case <-deadline:
			t.Fatalf("no wake-up for queue %q within %v", queueName, within)
		}
	}
}

// expectNone checks that queueName is not woken for a while.
func (w wakes) expectNone(t *testing.T, queueName string, during time.Duration) {
	t.Helper()
	deadline := time.After(during)
	for {
		select {
		case got := <-w:
			require.NotEqual(t, queueName, got, "unexpected wake-up")
		case <-deadline:
			return
		}
	}
}

// listen runs q.Listen until the test ends and checks that it returns nil, promptly.
func listen(t *testing.T, q *Queue, queues ...string) wakes {
	t.Helper()
	w := make(wakes, 1024)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Listen(ctx, queues, w.wake) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(5 * time.Second):
			t.Error("Listen did not return after its context ended")
		}
	})
	return w
}

func TestListenWakesOnCommit(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, WithPollInterval(time.Minute)) // so a wake-up can only be a notification
	w := listen(t, b.q, "a", "b")
	// Connecting wakes every queue, once LISTEN is in place.
	w.expect(t, "a", 5*time.Second)
	w.expect(t, "b", 5*time.Second)
	w.expectNone(t, "a", 100*time.Millisecond)

	tx, err := b.pool.Begin(b.ctx)
	require.NoError(t, err)
	require.NoError(t, b.q.SendTx(b.ctx, tx, "a", [][]byte{[]byte(`1`)}, 0))
	w.expectNone(t, "a", 300*time.Millisecond) // not before commit
	require.NoError(t, tx.Commit(b.ctx))
	w.expect(t, "a", time.Second)

	b.send(t, "b", 0, `2`)
	w.expect(t, "b", time.Second)

	// A rolled-back send and a queue nobody listens to wake nobody.
	tx, err = b.pool.Begin(b.ctx)
	require.NoError(t, err)
	require.NoError(t, b.q.SendTx(b.ctx, tx, "a", [][]byte{[]byte(`3`)}, 0))
	require.NoError(t, tx.Rollback(b.ctx))
	b.send(t, "unlistened", 0, `4`)
	w.expectNone(t, "a", 300*time.Millisecond)
	w.expectNone(t, "unlistened", 0)
}

func TestListenSchemasAreSeparate(t *testing.T) {
	t.Parallel()
	b1 := setup(t, nil, WithPollInterval(time.Minute))
	b2 := setup(t, nil, WithPollInterval(time.Minute))
	w := listen(t, b1.q, "a")
	w.expect(t, "a", 5*time.Second)

	b2.send(t, "a", 0, `1`) // same queue name, other schema
	w.expectNone(t, "a", 300*time.Millisecond)
	b1.send(t, "a", 0, `1`)
	w.expect(t, "a", time.Second)
}

func TestListenPolls(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, WithPollInterval(100*time.Millisecond))
	w := listen(t, b.q, "a")
	// One wake-up comes from connecting; the rest can only be the poll.
	for range 5 {
		w.expect(t, "a", time.Second)
	}
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
	w := listen(t, q, "a")
	for range 3 {
		w.expect(t, "a", time.Second)
	}
	select {
	case err := <-logged:
		require.ErrorContains(t, err, "connect")
	case <-time.After(5 * time.Second):
		t.Fatal("connection failure was not logged")
	}
}

func TestListenReconnects(t *testing.T) {
	t.Parallel()
	logged, logger := errorLogger()
	b := setup(t, nil, WithPollInterval(time.Minute), WithLogger(logger))
	w := listen(t, b.q, "a")
	w.expect(t, "a", 5*time.Second)

	// Kill exactly this test's listener: its last statement names its schema's channel.
	listenQuery := "listen " + pgx.Identifier{b.q.channel}.Sanitize()
	var killed int
	err := b.pool.QueryRow(b.ctx, `SELECT count(*) FROM (
		SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE application_name = $1 AND query = $2) AS t`, ListenApplicationName, listenQuery).Scan(&killed)
	require.NoError(t, err)
	require.Equal(t, 1, killed)

	select {
	case err := <-logged:
		require.Error(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("the dropped connection was not logged")
	}
	// Reconnecting (after ReconnectDelayDefault) wakes the queue again, then notifications flow.
	w.expect(t, "a", 5*time.Second)
	b.send(t, "a", 0, `1`)
	w.expect(t, "a", time.Second)
}

func TestListenStopsPromptly(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, WithPollInterval(time.Minute))
	w := make(wakes, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.q.Listen(ctx, []string{"a"}, w.wake) }()
	w.expect(t, "a", 5*time.Second) // connected and waiting for notifications

	cancel()
	start := time.Now()
	select {
	case err := <-done:
		require.NoError(t, err)
		require.Less(t, time.Since(start), 2*time.Second)
	case <-time.After(5 * time.Second):
		t.Fatal("Listen did not return after its context ended")
	}
	require.Eventually(t, func() bool {
		var n int
		err := b.pool.QueryRow(b.ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE application_name = $1 AND query = $2`,
			ListenApplicationName, "listen "+pgx.Identifier{b.q.channel}.Sanitize()).Scan(&n)
		require.NoError(t, err)
		return n == 0
	}, 5*time.Second, 50*time.Millisecond, "the listen connection is closed")
}

func TestListenRejectsBadArguments(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	require.ErrorContains(t, b.q.Listen(b.ctx, nil, func(string) {}), "no queues")
	require.ErrorContains(t, b.q.Listen(b.ctx, []string{"a"}, nil), "nil wake")
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

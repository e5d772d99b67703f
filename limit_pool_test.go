package tasker_test

import (
	"bytes"
	"context"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/store"
	"github.com/tasker-systems/tasker/store/postgres"
)

const poolLimitYAML = `
name: one
namespace_name: lim
version: 1.0.0
steps:
  - name: a
    handler: {callable: pool_h}
`

// TestBatchedLimitPoolDeadlock: the batched claim of a namespace-wide limit used to hold the
// limit lock while it acked the stale messages it read, on another connection of the pool. When
// the pool's other connections were held by claims waiting for that same lock (another engine
// sharing the pool, here raw LockLimit calls), the ack never got a connection and the lock was
// never let go. The claim now lets the lock go as soon as its statement returns.
func TestBatchedLimitPoolDeadlock(t *testing.T) {
	b := smallPoolLimited(t)
	db := b.db
	ctx := context.Background()

	// Hold the namespace's limit lock from outside the pool, so that the fetch loop queues for it.
	waiting, unlock := holdLimitLock(t, db.URL, db.Schema)
	b.start(t)
	require.Eventually(t, func() bool { return waiting() == 1 }, 10*time.Second, 10*time.Millisecond, "the fetch loop waits for the lock")

	// Fill the rest of the pool with other claims waiting for the same lock (here LockLimit
	// itself; in an engine, retry timers' executors or remote claims of the namespace).
	wctx, cancelWaiters := context.WithCancel(ctx)
	defer cancelWaiters()
	got := make(chan error, 8)
	for n := 1; db.Pool.Stat().AcquiredConns() < db.Pool.Config().MaxConns; n++ {
		go func() {
			h, err := b.store.LockLimit(wctx, store.LockLimitParams{Key: "namespace:lim", Namespace: "lim", Scopes: []store.LimitScope{{}}})
			if err == nil {
				h.Unlock()
			}
			got <- err
		}()
		require.Eventually(t, func() bool { return waiting() == 1+n }, 10*time.Second, 10*time.Millisecond)
	}
	unlock()
	select {
	case err := <-got:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		var buf bytes.Buffer
		_ = pprof.Lookup("goroutine").WriteTo(&buf, 2)
		for _, g := range strings.Split(buf.String(), "\n\n") {
			if strings.Contains(g, "claimFromQueue") {
				t.Logf("the fetch loop:\n%s", g)
			}
		}
		t.Errorf("deadlock: the fetch loop holds the limit lock, waiting for a pool connection that the lock's waiters hold (%d conns acquired of %d)",
			db.Pool.Stat().AcquiredConns(), db.Pool.Config().MaxConns)
	}
	cancelWaiters() // break it, so that the engine can stop
}

// TestLimitMessageOfMissingTask: a message naming no template, of a task that no longer exists,
// in a namespace with a limit per template, is dropped at the claim as it is without the limit;
// it used to be put back every 5 ms for good, limitStep's read of the task failing each time.
func TestLimitMessageOfMissingTask(t *testing.T) {
	b := setup(t, func(c *tasker.Config) {
		c.Limits = []tasker.Limit{{Namespace: "lim", Template: "one", Concurrency: 2}}
	})
	b.register(t, poolLimitYAML)
	b.engine.HandleFunc("pool_h", func(ctx context.Context, s *tasker.Step) (any, error) { return 1, nil })
	ctx := context.Background()
	payload := []byte(`{"task_id": "` + uuid.NewString() + `", "step_id": "` + uuid.NewString() + `"}`)
	tx, err := b.db.Pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, b.store.Queue().SendTx(ctx, tx, "lim", [][]byte{payload}, 0))
	require.NoError(t, tx.Commit(ctx))
	b.start(t)
	time.Sleep(2 * time.Second)
	var n, reads int
	require.NoError(t, b.db.Pool.QueryRow(ctx, `SELECT count(*), coalesce(max(read_ct), 0) FROM `+b.db.Schema+`.queue_messages WHERE queue_name = 'lim'`).Scan(&n, &reads))
	t.Logf("after 2 s: %d message(s) left, read %d times", n, reads)
	require.Zero(t, n, "the message of a missing task is dropped")
}

const poolRemoteYAML = `
name: rem
namespace_name: lim
version: 1.0.0
steps:
  - name: r
    handler: {callable: remote_h}
`

// TestBatchedLimitPoolDeadlockRemote is TestBatchedLimitPoolDeadlock with the waiters
// an engine really has: remote workers' claims (RemoteClaim, the worker API's long poll) of the
// namespace. Each used to hold a pool connection while it waited for the limit lock, until the
// pool was full of them (4 of 4) and the lock's holder had none; now an engine lets one claim at
// a time wait in the store, so the others wait without a connection, and once the lock comes
// free the claims go through.
func TestBatchedLimitPoolDeadlockRemote(t *testing.T) {
	b := smallPoolLimited(t)
	db, eng := b.db, b.engine
	b.register(t, poolRemoteYAML)
	ctx := context.Background()
	for i := 0; i < 60; i++ {
		b.create(t, "lim", "rem", map[string]int{"i": i})
	}
	waiting, unlock := holdLimitLock(t, db.URL, db.Schema)
	b.start(t)
	require.Eventually(t, func() bool { return waiting() == 1 }, 10*time.Second, 10*time.Millisecond, "the fetch loop waits for the lock")
	rctx, cancelRemote := context.WithCancel(ctx)
	defer cancelRemote()
	claimed := make(chan error, 8)
	for range 6 {
		go func() {
			_, err := eng.RemoteClaim(rctx, tasker.RemoteClaimParams{WorkerID: "remote", Namespace: "lim",
				Callables: []string{"remote_h"}, Lease: time.Minute, Wait: 30 * time.Second})
			claimed <- err
		}()
	}
	time.Sleep(500 * time.Millisecond)
	require.Equal(t, 1, waiting(), "one of the engine's claims waits for the lock in the store; the others wait for it in the engine")
	require.Less(t, db.Pool.Stat().AcquiredConns(), db.Pool.Config().MaxConns, "the waiters leave the pool room")
	unlock()
	select {
	case err := <-claimed:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Errorf("deadlock: no remote claim returned in 10 s (%d pool conns acquired of %d, %d waiting for the limit lock)",
			db.Pool.Stat().AcquiredConns(), db.Pool.Config().MaxConns, waiting())
	}
	cancelRemote()
}

// smallPoolLimited is an engine on a pool of 4 connections with a namespace-wide limit of 5 on
// namespace lim, whose queue holds a stale message (its task cancelled before any worker ran).
func smallPoolLimited(t *testing.T) *bundle {
	t.Helper()
	db := testdb.New(t, testdb.WithMaxConns(4))
	st := postgres.New(db.Pool, postgres.WithSchema(db.Schema))
	eng, err := tasker.NewEngine(tasker.Config{Store: st, Logger: testLogger(), Lease: 3 * time.Second,
		ShutdownTimeout: 2 * time.Second, GlobalConcurrency: map[string]int{"lim": 5}})
	require.NoError(t, err)
	b := &bundle{backend: backendPostgres, db: db, store: st, st: st, engine: eng}
	b.register(t, poolLimitYAML)
	eng.HandleFunc("pool_h", func(ctx context.Context, s *tasker.Step) (any, error) { return 1, nil })
	stale := b.create(t, "lim", "one", nil)
	require.NoError(t, eng.CancelTask(context.Background(), stale.ID, "stale"))
	return b
}

// holdLimitLock takes namespace lim's limit lock on a connection outside the pool, and returns
// how many advisory locks are waited for, and the unlock.
func holdLimitLock(t *testing.T, url, schema string) (waiting func() int, unlock func()) {
	t.Helper()
	ctx := context.Background()
	x, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	t.Cleanup(func() { _ = x.Close(ctx) })
	key := "tasker.limit:" + schema + ":namespace:lim"
	_, err = x.Exec(ctx, `SELECT pg_advisory_lock(hashtextextended($1, 0))`, key)
	require.NoError(t, err)
	waiting = func() int {
		var n int
		require.NoError(t, x.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`).Scan(&n))
		return n
	}
	unlock = func() {
		_, err := x.Exec(ctx, `SELECT pg_advisory_unlock(hashtextextended($1, 0))`, key)
		require.NoError(t, err)
	}
	return waiting, unlock
}

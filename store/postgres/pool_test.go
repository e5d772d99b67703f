package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/store"
	"github.com/tasker-systems/tasker/store/postgres"
)

// TestPoolStats: the store reports its pool (store.PoolReporter): its size, the connections in
// use and idle, and the acquisitions, including one that waited and one whose context ended while
// waiting.
func TestPoolStats(t *testing.T) {
	t.Parallel()
	db := testdb.New(t, testdb.WithMaxConns(2))
	var pr store.PoolReporter = postgres.New(db.Pool, postgres.WithSchema(db.Schema))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	before := pr.PoolStats()
	require.Equal(t, 2, before.MaxConns)
	require.Equal(t, before.TotalConns, before.AcquiredConns+before.IdleConns+before.ConstructingConns)

	a, err := db.Pool.Acquire(ctx)
	require.NoError(t, err)
	b, err := db.Pool.Acquire(ctx)
	require.NoError(t, err)
	held := pr.PoolStats()
	require.Equal(t, 2, held.AcquiredConns, "both connections in use")
	require.Equal(t, 2, held.TotalConns)
	require.Zero(t, held.IdleConns)
	require.Equal(t, before.AcquireCount+2, held.AcquireCount)

	// The pool is exhausted: an acquisition waits, and gives up when its context ends.
	wctx, wcancel := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err = db.Pool.Acquire(wctx)
	wcancel()
	require.Error(t, err)
	waited := pr.PoolStats()
	require.Equal(t, held.CanceledAcquireCount+1, waited.CanceledAcquireCount)

	// One comes back; the next acquisition had to wait for it.
	got := make(chan error, 1)
	go func() {
		c, err := db.Pool.Acquire(ctx)
		if err == nil {
			c.Release()
		}
		got <- err
	}()
	time.Sleep(20 * time.Millisecond)
	a.Release()
	require.NoError(t, <-got)
	b.Release()
	after := pr.PoolStats()
	require.Greater(t, after.EmptyAcquireCount, held.EmptyAcquireCount, "acquisitions that found no idle connection")
	require.Zero(t, after.AcquiredConns, "all given back")
	require.Equal(t, 2, after.IdleConns)
	require.Greater(t, after.AcquireDuration, held.AcquireDuration, "the wait counts in the time spent acquiring")
}

package healthhttp_test

import (
	"context"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/store/postgres"
)

// blackHole accepts TCP connections and never answers: a database that hangs rather than
// refusing connections (a partition, a frozen server).
func blackHole(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return ln.Addr().String()
}

// TestProbesAreBoundedWhenTheDatabaseHangs: with a database that accepts connections and never
// answers, ready answers 503 and detailed reports it down within the ping's bound
// (tasker.HealthCheckTimeout), not after the client gives up; live answers at once.
func TestProbesAreBoundedWhenTheDatabaseHangs(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := pgxpool.New(ctx, "postgres://postgres@"+blackHole(t)+"/postgres?sslmode=disable&connect_timeout=60")
	require.NoError(t, err, "the pool connects lazily")
	t.Cleanup(pool.Close)
	e, err := tasker.NewEngine(tasker.Config{Store: postgres.New(pool), WorkerID: "hang-0"})
	require.NoError(t, err)
	register(t, e, holdYAML)
	srv := server(t, e)

	start := time.Now()
	var live struct {
		Status string `json:"status"`
	}
	require.Equal(t, http.StatusOK, get(t, srv.URL+"/health/live", &live))
	require.Less(t, time.Since(start), time.Second, "live does no I/O")

	start = time.Now()
	var ready readyDoc
	require.Equal(t, http.StatusServiceUnavailable, get(t, srv.URL+"/health/ready", &ready))
	took := time.Since(start)
	require.GreaterOrEqual(t, took, tasker.HealthCheckTimeout-100*time.Millisecond, "the ping waited for its bound")
	require.Less(t, took, tasker.HealthCheckTimeout+2*time.Second, "and no longer")
	require.False(t, ready.Database.OK)
	require.NotEmpty(t, ready.Database.Error)

	start = time.Now()
	var rep reportDoc
	require.Equal(t, http.StatusServiceUnavailable, get(t, srv.URL+"/health/detailed", &rep))
	require.Less(t, time.Since(start), tasker.HealthCheckTimeout+2*time.Second, "the other database checks are skipped")
	require.Equal(t, "down", rep.Status)
	require.False(t, rep.Database.OK)
	require.NotEmpty(t, rep.Leader.Error)
	require.NotEmpty(t, rep.Queue.Error)
}

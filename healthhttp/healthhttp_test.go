package healthhttp_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/healthhttp"
	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/store/memory"
	"github.com/tasker-systems/tasker/store/postgres"
)

// TestDetailedOnPostgres: on PostgreSQL, /health/detailed reports the backlog of work enqueued
// with no handler running, then, once the workers run, the leader they elect, the rescuer's
// passes, the slots the handlers hold against the caps, and the pool. The three endpoints answer
// GET and HEAD as JSON that must not be cached, refuse other methods, and 404 other paths.
func TestDetailedOnPostgres(t *testing.T) {
	t.Parallel()
	db := testdb.New(t, testdb.WithMaxConns(10))
	e, err := tasker.NewEngine(tasker.Config{Store: postgres.New(db.Pool, postgres.WithSchema(db.Schema)),
		WorkerID: "http-0", Concurrency: 3, NamespaceConcurrency: map[string]int{"health": 2},
		Lease: 3 * time.Second, ShutdownTimeout: 2 * time.Second})
	require.NoError(t, err)
	register(t, e, holdYAML)
	ctx := context.Background()
	for i := range 3 {
		_, err := e.CreateTask(ctx, tasker.TaskRequest{Namespace: "health", Name: "hold", Context: map[string]int{"i": i}})
		require.NoError(t, err)
	}
	srv := server(t, e)

	// Enqueued, no workers: three ready messages, aging.
	time.Sleep(10 * time.Millisecond)
	var rep reportDoc
	require.Equal(t, http.StatusOK, get(t, srv.URL+"/health/detailed", &rep))
	require.Equal(t, "ok", rep.Status, "reasons: %v", rep.Reasons)
	require.Equal(t, "http-0", rep.WorkerID)
	require.WithinDuration(t, time.Now(), rep.CheckedAt, 10*time.Second)
	require.True(t, rep.Database.OK)
	require.Positive(t, rep.Database.LatencySeconds)
	require.True(t, rep.Queue.Inspected)
	require.Len(t, rep.Queue.Namespaces, 1)
	q := rep.Queue.Namespaces[0]
	require.Equal(t, "health", q.Namespace)
	require.Equal(t, 3, q.Ready)
	require.True(t, q.AgeKnown)
	require.Positive(t, q.OldestAgeSeconds)
	require.Positive(t, q.MaxWaitSeconds)
	require.False(t, rep.Workers.Running)
	require.Equal(t, 3, rep.Workers.Concurrency)
	require.Zero(t, rep.Workers.Free)
	require.False(t, rep.Leader.Held)
	require.Empty(t, rep.Services)
	require.NotNil(t, rep.Pool)
	require.Equal(t, 10, rep.Pool.MaxConns)
	require.Positive(t, rep.Pool.TotalConns)

	// Workers run: the namespace's cap of two holds two handlers, the third step stays ready.
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	e.HandleFunc("hold", func(ctx context.Context, _ *tasker.Step) (any, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return "done", nil
	})
	started := time.Now()
	runWorkers(t, e)
	require.Eventually(t, func() bool {
		rep = reportDoc{}
		require.Equal(t, http.StatusOK, get(t, srv.URL+"/health/detailed", &rep))
		rescued := false
		for _, s := range rep.Services {
			rescued = rescued || (s.Name == "rescuer" && s.Runs > 0)
		}
		return rep.Workers.Busy == 2 && rep.Leader.Held && rep.Leader.This && rescued &&
			len(rep.Queue.Namespaces) == 1 && rep.Queue.Namespaces[0].Ready == 1
	}, 20*time.Second, 50*time.Millisecond, "two handlers busy, a leader, a rescue pass, one step ready")
	require.Equal(t, "ok", rep.Status, "reasons: %v", rep.Reasons)
	require.True(t, rep.Workers.Running)
	require.False(t, rep.Workers.Stopping)
	require.Equal(t, 1, rep.Workers.Free)
	require.Len(t, rep.Workers.Namespaces, 1)
	ns := rep.Workers.Namespaces[0]
	require.Equal(t, "health", ns.Namespace)
	require.Equal(t, 2, ns.Cap)
	require.Equal(t, 2, ns.Busy)
	require.Zero(t, ns.Free, "the namespace's cap is reached")
	require.Equal(t, "http-0", rep.Leader.LeaderID)
	require.True(t, rep.Leader.This)
	require.WithinDuration(t, started, rep.Leader.ElectedAt, 20*time.Second)
	require.True(t, rep.Leader.ExpiresAt.After(rep.Leader.ElectedAt))
	i := -1
	for k, s := range rep.Services {
		if s.Name == "rescuer" {
			i = k
		}
	}
	require.GreaterOrEqual(t, i, 0, "the rescuer's passes are reported: %+v", rep.Services)
	require.False(t, rep.Services[i].Failing)
	require.False(t, rep.Services[i].LastRun.Before(started.Add(-time.Second)))
	require.NotNil(t, rep.Pool)
	require.Positive(t, rep.Pool.AcquireCount)
	require.Empty(t, rep.WaitingForHandler)

	var live struct {
		Status   string `json:"status"`
		WorkerID string `json:"worker_id"`
	}
	require.Equal(t, http.StatusOK, get(t, srv.URL+"/health/live", &live))
	require.Equal(t, "ok", live.Status)
	require.Equal(t, "http-0", live.WorkerID)
	var ready readyDoc
	require.Equal(t, http.StatusOK, get(t, srv.URL+"/health/ready", &ready))
	require.True(t, ready.Ready)
	require.True(t, ready.Database.OK)
	require.Nil(t, ready.Workers, "workers are not part of readiness by default")

	for _, path := range []string{"/health/live", "/health/ready", "/health/detailed"} {
		resp, body := do(t, http.MethodHead, srv.URL+path)
		require.Equal(t, http.StatusOK, resp.StatusCode, "HEAD %s", path)
		require.Empty(t, body, "HEAD %s has no body", path)
		require.Equal(t, "application/json; charset=utf-8", resp.Header.Get("Content-Type"), "HEAD %s", path)
		require.Equal(t, "no-store", resp.Header.Get("Cache-Control"), "HEAD %s", path)
		for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
			resp, _ := do(t, method, srv.URL+path)
			require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode, "%s %s", method, path)
			require.Equal(t, "GET, HEAD", resp.Header.Get("Allow"))
		}
	}
	var notFound struct {
		Error string `json:"error"`
	}
	require.Equal(t, http.StatusNotFound, get(t, srv.URL+"/health/nope", &notFound))
	require.Contains(t, notFound.Error, "/health/nope")
	once.Do(func() { close(release) })
}

// TestReadyRequiresWorkers: with WithRequireWorkers, readiness waits for the workers to run; the
// detailed report stays 200 while degraded (here by a queue wait limit of a millisecond) and
// names why.
func TestReadyRequiresWorkers(t *testing.T) {
	t.Parallel()
	e, err := tasker.NewEngine(tasker.Config{Store: memory.New(), WorkerID: "mem-0", ShutdownTimeout: time.Second})
	require.NoError(t, err)
	register(t, e, holdYAML)
	_, err = e.CreateTask(context.Background(), tasker.TaskRequest{Namespace: "health", Name: "hold"})
	require.NoError(t, err)
	srv := server(t, e, healthhttp.WithRequireWorkers(),
		healthhttp.WithHealthOptions(tasker.WithQueueWaitLimit(time.Millisecond)))

	var ready readyDoc
	require.Equal(t, http.StatusServiceUnavailable, get(t, srv.URL+"/health/ready", &ready))
	require.False(t, ready.Ready)
	require.True(t, ready.Database.OK)
	require.NotNil(t, ready.Workers)
	require.False(t, ready.Workers.Running)
	require.Equal(t, []string{"the workers do not run"}, ready.Reasons)

	time.Sleep(5 * time.Millisecond)
	var rep reportDoc
	require.Equal(t, http.StatusOK, get(t, srv.URL+"/health/detailed", &rep), "degraded still serves")
	require.Equal(t, "degraded", rep.Status)
	require.Len(t, rep.Reasons, 1)
	require.Contains(t, rep.Reasons[0], "namespace health: 1 ready messages")
	require.Nil(t, rep.Pool, "the memory store has no pool")

	// The step waits for a handler this engine lacks; the workers run.
	runWorkers(t, e)
	require.Eventually(t, func() bool {
		ready = readyDoc{}
		return get(t, srv.URL+"/health/ready", &ready) == http.StatusOK
	}, 10*time.Second, 20*time.Millisecond, "ready once the workers run")
	require.True(t, ready.Ready)
	require.True(t, ready.Workers.Running)
	require.Empty(t, ready.Reasons)
	require.Eventually(t, func() bool {
		rep = reportDoc{}
		require.Equal(t, http.StatusOK, get(t, srv.URL+"/health/detailed", &rep))
		return len(rep.WaitingForHandler) == 1
	}, 10*time.Second, 20*time.Millisecond, "the step waits for its handler")
	require.Equal(t, "hold", rep.WaitingForHandler[0].Callable)
	require.Equal(t, 1, rep.WaitingForHandler[0].Steps)
}

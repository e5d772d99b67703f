package healthhttp_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/healthhttp"
	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/migrations"
	"github.com/tasker-systems/tasker/store/postgres"
)

// TestReadyFollowsTheDatabase: an engine whose workers run on a private PostgreSQL cluster is
// ready; once the cluster stops, /health/ready answers 503 within a few seconds and
// /health/detailed reports the database down (503); once it starts again, ready answers 200.
// /health/live answers 200 throughout.
func TestReadyFollowsTheDatabase(t *testing.T) {
	t.Parallel()
	cluster := testdb.NewCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := pgxpool.New(ctx, cluster.URL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	const schema = "health"
	require.NoError(t, migrations.Migrate(ctx, pool, migrations.WithSchema(schema)))
	e, err := tasker.NewEngine(tasker.Config{Store: postgres.New(pool, postgres.WithSchema(schema)), WorkerID: "outage-0",
		Lease: 3 * time.Second, ShutdownTimeout: time.Second})
	require.NoError(t, err)
	register(t, e, holdYAML)
	e.HandleFunc("hold", func(context.Context, *tasker.Step) (any, error) { return "done", nil })
	runWorkers(t, e)
	srv := server(t, e, healthhttp.WithRequireWorkers())
	detailed := server(t, e, healthhttp.WithErrorDetails())

	requireLive := func() {
		t.Helper()
		var live struct {
			Status string `json:"status"`
		}
		require.Equal(t, http.StatusOK, get(t, srv.URL+"/health/live", &live))
		require.Equal(t, "ok", live.Status)
	}
	var ready readyDoc
	require.Eventually(t, func() bool {
		ready = readyDoc{}
		return get(t, srv.URL+"/health/ready", &ready) == http.StatusOK
	}, 20*time.Second, 20*time.Millisecond, "ready with the database up and the workers running")
	require.True(t, ready.Ready)
	require.True(t, ready.Database.OK)
	requireLive()

	require.NoError(t, cluster.Stop("fast"))
	stopped := time.Now()
	require.Eventually(t, func() bool {
		ready = readyDoc{}
		code := get(t, srv.URL+"/health/ready", &ready)
		requireLive()
		return code == http.StatusServiceUnavailable
	}, 5*time.Second, 20*time.Millisecond, "not ready within a few seconds of the database stopping")
	t.Logf("ready answered 503 %v after the stop", time.Since(stopped).Round(time.Millisecond))
	require.False(t, ready.Ready)
	require.False(t, ready.Database.OK)
	require.NotEmpty(t, ready.Database.Error)
	require.Len(t, ready.Reasons, 1)
	require.Contains(t, ready.Reasons[0], "the database does not answer")

	var rep reportDoc
	require.Equal(t, http.StatusServiceUnavailable, get(t, srv.URL+"/health/detailed", &rep))
	require.Equal(t, "down", rep.Status)
	require.False(t, rep.Database.OK)
	require.NotEmpty(t, rep.Database.Error)
	require.NotEmpty(t, rep.Leader.Error, "the leader is not read while the database is down")
	require.NotEmpty(t, rep.Queue.Error, "the queue in the database is not read while it is down")
	require.True(t, rep.Workers.Running, "the workers ride the outage out")
	require.NotNil(t, rep.Pool)
	h, err := e.Health(ctx)
	require.NoError(t, err, "an outage is reported, not returned")
	require.Equal(t, tasker.HealthDown, h.Status)
	requireLive()

	// The error texts (they name the cluster's address) are withheld unless WithErrorDetails.
	u, err := url.Parse(cluster.URL)
	require.NoError(t, err)
	require.NotEmpty(t, h.Database.Error)
	t.Logf("the database's error, withheld from the documents: %s", h.Database.Error)
	for _, text := range []string{ready.Database.Error, rep.Database.Error, rep.Leader.Error, rep.Queue.Error} {
		require.Equal(t, healthhttp.Withheld, text)
	}
	for _, r := range append(append([]string(nil), ready.Reasons...), rep.Reasons...) {
		require.NotContains(t, r, u.Port(), "a reason quotes no address")
		require.Contains(t, r, healthhttp.Withheld)
	}
	var full reportDoc
	require.Equal(t, http.StatusServiceUnavailable, get(t, detailed.URL+"/health/detailed", &full))
	require.NotEmpty(t, full.Database.Error)
	require.NotEqual(t, healthhttp.Withheld, full.Database.Error, "WithErrorDetails shows the text")
	require.NotContains(t, full.Reasons[0], healthhttp.Withheld)

	require.NoError(t, cluster.Start())
	require.Eventually(t, func() bool {
		ready = readyDoc{}
		code := get(t, srv.URL+"/health/ready", &ready)
		requireLive()
		return code == http.StatusOK
	}, 20*time.Second, 20*time.Millisecond, "ready again once the database is back")
	require.True(t, ready.Database.OK)
	require.Empty(t, ready.Reasons)
	rep = reportDoc{}
	require.Equal(t, http.StatusOK, get(t, srv.URL+"/health/detailed", &rep))
	require.True(t, rep.Database.OK)
	require.Empty(t, rep.Queue.Error)
	requireLive()
}

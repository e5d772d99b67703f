package healthhttp_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/healthhttp"
)

const holdYAML = `
name: hold
namespace_name: health
version: 1.0.0
steps:
  - name: work
    handler: {callable: hold}
`

// The parts of the documents the tests read, decoded as a client would.
type (
	databaseDoc struct {
		OK             bool    `json:"ok"`
		Error          string  `json:"error"`
		LatencySeconds float64 `json:"latency_seconds"`
	}
	readyDoc struct {
		Ready    bool        `json:"ready"`
		Reasons  []string    `json:"reasons"`
		WorkerID string      `json:"worker_id"`
		Database databaseDoc `json:"database"`
		Workers  *struct {
			Running  bool `json:"running"`
			Stopping bool `json:"stopping"`
		} `json:"workers"`
	}
	reportDoc struct {
		Status    string      `json:"status"`
		Reasons   []string    `json:"reasons"`
		CheckedAt time.Time   `json:"checked_at"`
		WorkerID  string      `json:"worker_id"`
		Database  databaseDoc `json:"database"`
		Queue     struct {
			Inspected  bool   `json:"inspected"`
			Error      string `json:"error"`
			Namespaces []struct {
				Namespace        string  `json:"namespace"`
				Ready            int     `json:"ready"`
				AgeKnown         bool    `json:"age_known"`
				OldestAgeSeconds float64 `json:"oldest_age_seconds"`
				MaxWaitSeconds   float64 `json:"max_wait_seconds"`
			} `json:"namespaces"`
		} `json:"queue"`
		Leader struct {
			Held      bool      `json:"held"`
			LeaderID  string    `json:"leader_id"`
			ElectedAt time.Time `json:"elected_at"`
			ExpiresAt time.Time `json:"expires_at"`
			This      bool      `json:"this_engine"`
			Error     string    `json:"error"`
		} `json:"leader"`
		Workers struct {
			Running     bool `json:"running"`
			Stopping    bool `json:"stopping"`
			Concurrency int  `json:"concurrency"`
			Busy        int  `json:"busy"`
			Free        int  `json:"free"`
			Namespaces  []struct {
				Namespace string `json:"namespace"`
				Cap       int    `json:"cap"`
				Busy      int    `json:"busy"`
				Free      int    `json:"free"`
			} `json:"namespaces"`
		} `json:"workers"`
		Pool *struct {
			MaxConns      int   `json:"max_conns"`
			TotalConns    int   `json:"total_conns"`
			AcquiredConns int   `json:"acquired_conns"`
			IdleConns     int   `json:"idle_conns"`
			AcquireCount  int64 `json:"acquire_count"`
		} `json:"pool"`
		Services []struct {
			Name                string    `json:"name"`
			LastRun             time.Time `json:"last_run"`
			LastDurationSeconds float64   `json:"last_duration_seconds"`
			Runs                int64     `json:"runs"`
			LastError           string    `json:"last_error"`
			Failing             bool      `json:"failing"`
		} `json:"services"`
		WaitingForHandler []struct {
			Namespace string `json:"namespace"`
			Callable  string `json:"callable"`
			Steps     int    `json:"steps"`
		} `json:"waiting_for_handler"`
	}
)

// server serves the engine's health handler for the test.
func server(t *testing.T, e *tasker.Engine, opts ...healthhttp.Option) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/health/", healthhttp.Handler(e, opts...))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// do sends a request and returns the response, its body read and closed.
func do(t *testing.T, method, url string) (*http.Response, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, body
}

// get GETs url, checks the JSON and no-caching headers, and decodes the body into doc.
func get(t *testing.T, url string, doc any) int {
	t.Helper()
	resp, body := do(t, http.MethodGet, url)
	require.Equal(t, "application/json; charset=utf-8", resp.Header.Get("Content-Type"))
	require.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
	require.NoError(t, json.Unmarshal(body, doc), "body %s", body)
	return resp.StatusCode
}

// runWorkers runs the engine's workers until the test ends.
func runWorkers(t *testing.T, e *tasker.Engine) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.RunWorkers(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(60 * time.Second):
			t.Error("RunWorkers did not return within 60s of its context ending")
		}
	})
}

func register(t *testing.T, e *tasker.Engine, yaml string) {
	t.Helper()
	tmpl, err := tasker.ParseTemplate([]byte(yaml))
	require.NoError(t, err)
	require.NoError(t, e.Register(tmpl))
}

package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/store/postgres"
)

// roles is a test Authorizer: the X-Role header names the caller's role ("" is no credentials);
// a "reader" may read, an "operator" may also act on steps but not resolve dead letters.
func roles(r *http.Request, a Action) error {
	switch role := r.Header.Get("X-Role"); {
	case role == "":
		return fmt.Errorf("%w: no X-Role header", ErrUnauthenticated)
	case role == "admin", !a.Write():
		return nil
	case role == "operator" && strings.HasPrefix(string(a), "steps:"):
		return nil
	default:
		return fmt.Errorf("role %s may not %s", role, a)
	}
}

// TestAuthorizerDenies: every route asks the Authorizer, with the action's name; a refusal is a
// 403 problem naming the action (401 for ErrUnauthenticated), and nothing is done. A step's
// PATCH asks for the action its body names.
func TestAuthorizerDenies(t *testing.T) {
	t.Parallel()
	b := setup(t, WithAuthorizer(roles))
	failed := b.create(t, "fail", nil, "X-Role", "admin")
	blocked := b.waitState(t, failed.ID, tasker.TaskBlockedByFailures, "X-Role", "reader")
	reserve := stepNamed(t, blocked, "reserve")

	anon := b.do(t, "GET", "/v1/tasks", nil)
	require.Equal(t, http.StatusUnauthorized, anon.status)
	require.Equal(t, ProblemType+"unauthenticated", anon.problem(t).Type)

	create := b.do(t, "POST", "/v1/tasks", map[string]any{"namespace": "shop", "name": "order",
		"context": map[string]any{"order_id": "x", "amount": 1}}, "X-Role", "reader")
	require.Equal(t, http.StatusForbidden, create.status)
	p := create.problem(t)
	require.Equal(t, ProblemType+"forbidden", p.Type)
	require.Contains(t, p.Detail, "tasks:create")

	stepURL := "/v1/tasks/" + failed.ID.String() + "/workflow_steps/" + reserve.ID.String()
	denied := b.do(t, "PATCH", stepURL, map[string]any{"action": "resolve"}, "X-Role", "reader")
	require.Equal(t, http.StatusForbidden, denied.status)
	require.Contains(t, denied.problem(t).Detail, "steps:resolve")
	cancel := b.do(t, "DELETE", "/v1/tasks/"+failed.ID.String(), nil, "X-Role", "operator")
	require.Equal(t, http.StatusForbidden, cancel.status)
	require.Contains(t, cancel.problem(t).Detail, "tasks:cancel")
	dlq := b.do(t, "PATCH", "/v1/dlq/entry/"+uuid.NewString(), map[string]any{"status": "cancelled", "resolved_by": "x"}, "X-Role", "operator")
	require.Equal(t, http.StatusForbidden, dlq.status, "refused before the entry is looked up")

	// Nothing was done: the step is still in error, no task was created.
	var st stepDoc
	b.do(t, "GET", stepURL, nil, "X-Role", "reader").decode(t, &st)
	require.Equal(t, "error", st.State)
	list, err := b.e.ListTasks(context.Background(), tasker.ListOptions{})
	require.NoError(t, err)
	require.Len(t, list, 1)

	// The operator may resolve the step.
	ok := b.do(t, "PATCH", stepURL, map[string]any{"action": "resolve", "operator": "op"}, "X-Role", "operator")
	require.Equal(t, http.StatusOK, ok.status, "body %s", ok.body)
	b.waitState(t, failed.ID, tasker.TaskComplete, "X-Role", "reader")
}

// TestDefaultIsReadOnly: without WithAuthorizer, reads are served and every write is a 403.
func TestDefaultIsReadOnly(t *testing.T) {
	t.Parallel()
	b := setup(t)
	srv := httptest.NewServer(New(b.e))
	t.Cleanup(srv.Close)
	b.srv = srv
	resp := b.do(t, "GET", "/v1/tasks", nil)
	require.Equal(t, http.StatusOK, resp.status)
	resp = b.do(t, "POST", "/v1/tasks", map[string]any{"namespace": "shop", "name": "order"})
	require.Equal(t, http.StatusForbidden, resp.status)
	require.Contains(t, resp.problem(t).Detail, "read-only")
	for _, a := range Actions {
		err := ReadOnly(nil, a)
		require.Equal(t, a.Write(), errors.Is(err, ErrForbidden), a)
	}
}

// TestUnavailable: when the database cannot be reached (here: the engine's pool is closed), the
// API answers 503 problems with Retry-After.
func TestUnavailable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, b.db.URL)
	require.NoError(t, err)
	e, err := tasker.NewEngine(tasker.Config{Store: postgres.New(pool, postgres.WithSchema(b.db.Schema))})
	require.NoError(t, err)
	pool.Close()
	srv := httptest.NewServer(New(e, WithAuthorizer(AllowAll)))
	t.Cleanup(srv.Close)
	b.srv = srv
	for _, path := range []string{"/v1/tasks", "/v1/tasks/" + uuid.NewString(), "/v1/dlq", "/v1/analytics/performance"} {
		r := b.do(t, "GET", path, nil)
		require.Equal(t, http.StatusServiceUnavailable, r.status, "%s: %s", path, r.body)
		require.Equal(t, ProblemType+"unavailable", r.problem(t).Type)
		require.Equal(t, "5", r.header.Get("Retry-After"))
	}
}

// TestCrossOriginWritesRefused: a write a browser sends from another site is refused before any
// route runs, whatever the Authorizer says, and so is a body that is not JSON (which a page
// elsewhere could send without a CORS preflight); the same write from the UI's own origin, or
// from a client that is not a browser, goes through. The UI's paths redirect relatively.
func TestCrossOriginWritesRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	body := map[string]any{"namespace": "shop", "name": "order", "context": map[string]any{"order_id": "x", "amount": 1}}
	r := b.do(t, "POST", "/v1/tasks", body, "Sec-Fetch-Site", "cross-site")
	require.Equal(t, http.StatusForbidden, r.status)
	require.Equal(t, ProblemType+"cross-origin", r.problem(t).Type)
	r = b.do(t, "POST", "/v1/tasks", body, "Origin", "https://evil.example")
	require.Equal(t, http.StatusForbidden, r.status)
	require.Equal(t, http.StatusOK, b.do(t, "GET", "/v1/tasks", nil, "Sec-Fetch-Site", "cross-site").status, "reads are not refused")

	noType, err := http.Post(b.srv.URL+"/v1/tasks", "", strings.NewReader(`{"namespace":"shop","name":"order"}`))
	require.NoError(t, err)
	require.NoError(t, noType.Body.Close())
	require.Equal(t, http.StatusUnsupportedMediaType, noType.StatusCode)

	r = b.do(t, "POST", "/v1/tasks", body, "Sec-Fetch-Site", "same-origin")
	require.Equal(t, http.StatusCreated, r.status, "body %s", r.body)

	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for path, want := range map[string]string{"/": "ui/", "/ui": "ui/"} {
		resp, err := client.Get(b.srv.URL + path)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		require.Equal(t, want, resp.Header.Get("Location"), path)
	}
	resp, err := http.Get(b.srv.URL + "/ui/app.js")
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, resp.Header.Get("Content-Security-Policy"), "default-src 'self'")
}

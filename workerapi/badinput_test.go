package workerapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/httpapi"
	"github.com/tasker-systems/tasker/workerapi"
)

// post sends a JSON body and returns the status and the decoded body.
func post(t *testing.T, url string, body any) (int, http.Header, map[string]any) {
	t.Helper()
	raw, err := json.Marshal(body)
	require.NoError(t, err)
	res, err := http.Post(url, "application/json", bytes.NewReader(raw))
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	var doc map[string]any
	if len(b) > 0 {
		require.NoError(t, json.Unmarshal(b, &doc), string(b))
	}
	return res.StatusCode, res.Header, doc
}

// TestProtocolBadInput: an unknown step, a stale lease (wrong attempt, wrong worker, a step
// already reported) and an oversized result get typed problems and change nothing; the valid
// outcome then completes the step.
func TestProtocolBadInput(t *testing.T) { eachStore(t, testProtocolBadInput) }

func testProtocolBadInput(t *testing.T, p *polyglot) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	task, err := p.e.CreateTask(ctx, tasker.TaskRequest{Namespace: "polyglot", Name: "diamond", Version: "1.0.0", Context: map[string]any{"n": 1}})
	require.NoError(t, err)

	status, _, _ := post(t, p.srv.URL+"/v1/workers/claim", map[string]any{"worker_id": "w", "namespace": "polyglot", "callables": []string{"nothing"}, "wait_seconds": 0.2})
	require.Equal(t, http.StatusNoContent, status, "no step of that callable")
	status, _, claim := post(t, p.srv.URL+"/v1/workers/claim", map[string]any{"worker_id": "w", "namespace": "polyglot", "callables": []string{"ts_branch"}, "lease_seconds": 30, "wait_seconds": 10})
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "ts_branch", claim["callable"])
	require.EqualValues(t, 1, claim["attempt"])
	require.NotNil(t, claim["lease_expires_at"])
	require.Equal(t, map[string]any{"from": "go"}, claim["dependency_results"].(map[string]any)["start"])
	stepURL := p.srv.URL + "/v1/workers/steps/" + claim["step_id"].(string)

	before, err := p.e.Transitions(ctx, task.ID)
	require.NoError(t, err)
	stepBefore := stepState(t, p, task.ID, "ts")

	bad := []struct {
		name   string
		url    string
		body   any
		status int
		kind   string
	}{
		{"unknown step", p.srv.URL + "/v1/workers/steps/" + uuid.NewString() + "/outcome", map[string]any{"worker_id": "w", "attempt": 1, "result": 1}, 404, "step-not-found"},
		{"unknown step heartbeat", p.srv.URL + "/v1/workers/steps/" + uuid.NewString() + "/heartbeat", map[string]any{"worker_id": "w", "attempt": 1}, 404, "step-not-found"},
		{"wrong attempt", stepURL + "/outcome", map[string]any{"worker_id": "w", "attempt": 2, "result": 1}, 409, "stale-lease"},
		{"wrong worker", stepURL + "/outcome", map[string]any{"worker_id": "other", "attempt": 1, "result": 1}, 409, "stale-lease"},
		{"wrong worker heartbeat", stepURL + "/heartbeat", map[string]any{"worker_id": "other", "attempt": 1}, 409, "stale-lease"},
		{"oversized result", stepURL + "/outcome", map[string]any{"worker_id": "w", "attempt": 1, "result": strings.Repeat("x", tasker.MaxPayloadBytesDefault+1)}, 413, "payload-too-large"},
		{"not JSON", stepURL + "/outcome", json.RawMessage(`{"worker_id": 5}`), 400, "bad-request"},
	}
	for _, c := range bad {
		status, h, doc := post(t, c.url, c.body)
		require.Equal(t, c.status, status, c.name)
		require.Equal(t, "application/problem+json", h.Get("Content-Type"), c.name)
		require.Equal(t, "urn:tasker:problem:"+c.kind, doc["type"], c.name)
		require.EqualValues(t, c.status, doc["status"], c.name)
	}
	after, err := p.e.Transitions(ctx, task.ID)
	require.NoError(t, err)
	require.Len(t, after, len(before), "bad input recorded nothing")
	require.Equal(t, stepBefore, stepState(t, p, task.ID, "ts"), "bad input changed nothing")

	status, _, _ = post(t, stepURL+"/heartbeat", map[string]any{"worker_id": "w", "attempt": 1})
	require.Equal(t, http.StatusNoContent, status)
	status, _, _ = post(t, stepURL+"/outcome", map[string]any{"worker_id": "w", "attempt": 1, "result": map[string]any{"doubled": 2, "by": "test"}})
	require.Equal(t, http.StatusNoContent, status)
	status, _, doc := post(t, stepURL+"/outcome", map[string]any{"worker_id": "w", "attempt": 1, "result": 1})
	require.Equal(t, http.StatusConflict, status, "a second outcome of the same attempt")
	require.Equal(t, "urn:tasker:problem:stale-lease", doc["type"])
	require.Equal(t, tasker.StepState("complete"), stepState(t, p, task.ID, "ts").State)
}

// TestProtocolRetryableError: a retryable error is retried by the engine's policy (a new attempt
// on the queue), a permanent one fails the step.
func TestProtocolRetryableError(t *testing.T) { eachStore(t, testProtocolRetryableError) }

func testProtocolRetryableError(t *testing.T, p *polyglot) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	task, err := p.e.CreateTask(ctx, tasker.TaskRequest{Namespace: "polyglot", Name: "diamond", Version: "1.0.0", Context: map[string]any{"n": 1}})
	require.NoError(t, err)
	claim := func() map[string]any {
		status, _, c := post(t, p.srv.URL+"/v1/workers/claim", map[string]any{"worker_id": "w", "namespace": "polyglot", "callables": []string{"py_branch"}, "wait_seconds": 10})
		require.Equal(t, http.StatusOK, status)
		return c
	}
	c := claim()
	status, _, _ := post(t, p.srv.URL+"/v1/workers/steps/"+c["step_id"].(string)+"/outcome",
		map[string]any{"worker_id": "w", "attempt": 1, "error": map[string]any{"message": "flaky", "retryable": true, "retry_after_seconds": 0.1}})
	require.Equal(t, http.StatusNoContent, status)
	c = claim()
	require.EqualValues(t, 2, c["attempt"], "the retry is a new attempt")
	status, _, _ = post(t, p.srv.URL+"/v1/workers/steps/"+c["step_id"].(string)+"/outcome",
		map[string]any{"worker_id": "w", "attempt": 2, "error": map[string]any{"message": "broken", "retryable": false}})
	require.Equal(t, http.StatusNoContent, status)
	require.Equal(t, tasker.StepState("error"), stepState(t, p, task.ID, "py").State)
}

// TestProtocolAuthorizer: the routes ask for workers:claim and workers:report; a refusal is 403
// (401 for ErrUnauthenticated), and without an Authorizer everything is refused.
func TestProtocolAuthorizer(t *testing.T) {
	p := startPolyglot(t)
	var asked []httpapi.Action
	h := workerapi.New(p.e, workerapi.WithAuthorizer(func(_ *http.Request, a httpapi.Action) error {
		asked = append(asked, a)
		return httpapi.ErrUnauthenticated
	}))
	for _, path := range []string{"/v1/workers/claim", "/v1/workers/steps/" + uuid.NewString() + "/outcome"} {
		rec := newRecorder(h, path)
		require.Equal(t, http.StatusUnauthorized, rec)
	}
	require.Equal(t, []httpapi.Action{workerapi.ActionClaim, workerapi.ActionReport}, asked)
	require.Equal(t, http.StatusForbidden, newRecorder(workerapi.New(p.e), "/v1/workers/claim"))
}

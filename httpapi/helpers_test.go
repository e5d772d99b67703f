package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/store/postgres"
)

// orderYAML is the tests' template: validate → reserve → charge → ship, with an input schema.
// The context's "mode" drives the reserve step: "fail" fails it for good, "hold" holds it until
// the test releases it, anything else completes it.
const orderYAML = `
name: order
namespace_name: shop
version: 1.0.0
description: An order, from validation to shipping.
input_schema:
  type: object
  required: [order_id, amount]
  properties:
    order_id: {type: string}
    amount: {type: number, minimum: 0}
    mode: {type: string}
steps:
  - name: validate
    handler: {callable: validate}
  - name: reserve
    handler: {callable: reserve}
    dependencies: [validate]
    retry: {retryable: false}
  - name: charge
    handler: {callable: charge}
    dependencies: [reserve]
  - name: ship
    handler: {callable: ship}
    dependencies: [charge]
`

// bundle is what a test works with: the engine, its server and the gate of held steps.
type bundle struct {
	e      *tasker.Engine
	srv    *httptest.Server
	mux    *http.ServeMux
	router routers.Router
	db     *testdb.DB

	mu      sync.Mutex
	release chan struct{} // closed to let held reserve steps complete
	covered map[string]bool
}

// setup starts an engine on PostgreSQL with the order template and its handlers, its workers, and
// the API on an httptest server with the given options (AllowAll unless they set an Authorizer).
func setup(t *testing.T, opts ...Option) *bundle {
	t.Helper()
	db := testdb.New(t, testdb.WithMaxConns(10))
	e, err := tasker.NewEngine(tasker.Config{Store: postgres.New(db.Pool, postgres.WithSchema(db.Schema)),
		WorkerID: "api-" + t.Name(), Lease: 3 * time.Second, ShutdownTimeout: time.Second})
	require.NoError(t, err)
	tmpl, err := tasker.ParseTemplate([]byte(orderYAML))
	require.NoError(t, err)
	require.NoError(t, e.Register(tmpl))
	b := &bundle{e: e, db: db, release: make(chan struct{}), covered: map[string]bool{}}
	e.HandleFunc("validate", func(context.Context, *tasker.Step) (any, error) { return map[string]bool{"valid": true}, nil })
	e.HandleFunc("reserve", func(ctx context.Context, s *tasker.Step) (any, error) {
		var in struct {
			Mode string `json:"mode"`
		}
		if err := s.Input(&in); err != nil {
			return nil, tasker.Permanent(err)
		}
		switch in.Mode {
		case "fail":
			return nil, tasker.Permanent(errors.New("out of stock"))
		case "hold":
			b.mu.Lock()
			ch := b.release
			b.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return map[string]string{"reservation": "R-1"}, nil
	})
	e.HandleFunc("charge", func(context.Context, *tasker.Step) (any, error) { return map[string]int{"charged": 1}, nil })
	e.HandleFunc("ship", func(context.Context, *tasker.Step) (any, error) { return "shipped", nil })
	runWorkers(t, e)

	srv := newServer(e, append([]Option{WithAuthorizer(AllowAll)}, opts...)...)
	b.mux = srv.mux
	b.srv = httptest.NewServer(srv.handler)
	t.Cleanup(b.srv.Close)

	doc, err := openapi3.NewLoader().LoadFromData(openAPI)
	require.NoError(t, err)
	doc.Servers = nil // the router then matches paths alone
	b.router, err = legacy.NewRouter(doc)
	require.NoError(t, err)
	return b
}

// releaseHeld lets the held reserve steps complete.
func (b *bundle) releaseHeld() {
	b.mu.Lock()
	defer b.mu.Unlock()
	close(b.release)
	b.release = make(chan struct{})
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

// response is a response, its body read.
type response struct {
	status int
	header http.Header
	body   []byte
}

// problem decodes the response as a problem and checks its media type.
func (r response) problem(t *testing.T) Problem {
	t.Helper()
	require.Equal(t, "application/problem+json", r.header.Get("Content-Type"), "body %s", r.body)
	var p Problem
	require.NoError(t, json.Unmarshal(r.body, &p))
	require.Equal(t, r.status, p.Status)
	require.True(t, strings.HasPrefix(p.Type, ProblemType), p.Type)
	return p
}

func (r response) decode(t *testing.T, v any) {
	t.Helper()
	require.NoError(t, json.Unmarshal(r.body, v), "body %s", r.body)
}

// do sends a request with a JSON body (nil for none) and headers given as name, value pairs,
// notes the route it reached, and checks the response against the OpenAPI document.
func (b *bundle) do(t *testing.T, method, path string, body any, header ...string) response {
	t.Helper()
	var rd io.Reader
	var raw []byte
	if body != nil {
		switch v := body.(type) {
		case string:
			raw = []byte(v)
		case []byte:
			raw = v
		default:
			var err error
			raw, err = json.Marshal(v)
			require.NoError(t, err)
		}
		rd = bytes.NewReader(raw)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, b.srv.URL+path, rd)
	require.NoError(t, err)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	if _, pattern := b.mux.Handler(req); pattern != "" {
		b.mu.Lock()
		b.covered[pattern] = true
		b.mu.Unlock()
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	r := response{status: resp.StatusCode, header: resp.Header, body: out}
	b.checkSpec(t, req, raw, r)
	return r
}

// checkSpec validates an API response (and its request) against the OpenAPI document.
func (b *bundle) checkSpec(t *testing.T, req *http.Request, body []byte, r response) {
	t.Helper()
	if !strings.HasPrefix(req.URL.Path, "/v1/") || r.status == http.StatusMethodNotAllowed {
		return
	}
	vreq := req.Clone(context.Background())
	vreq.Body = io.NopCloser(bytes.NewReader(body))
	route, params, err := b.router.FindRoute(vreq)
	if err != nil {
		require.Equal(t, http.StatusNotFound, r.status, "%s %s is not in the OpenAPI document: %v", req.Method, req.URL.Path, err)
		return
	}
	in := &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true}}
	rin := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: r.status, Header: r.header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}}
	rin.SetBodyBytes(r.body)
	require.NoError(t, openapi3filter.ValidateResponse(context.Background(), rin),
		"%s %s → %d %s does not match the OpenAPI document", req.Method, req.URL.Path, r.status, r.body)
}

// create creates an order task through the API and returns it.
func (b *bundle) create(t *testing.T, mode string, extra map[string]any, header ...string) taskDoc {
	t.Helper()
	body := map[string]any{"namespace": "shop", "name": "order",
		"context": map[string]any{"order_id": uuid.NewString(), "amount": 12.5, "mode": mode}}
	for k, v := range extra {
		body[k] = v
	}
	r := b.do(t, http.MethodPost, "/v1/tasks", body, header...)
	require.Equal(t, http.StatusCreated, r.status, "body %s", r.body)
	var doc taskDoc
	r.decode(t, &doc)
	return doc
}

// waitState polls the task until it is in state.
func (b *bundle) waitState(t *testing.T, id uuid.UUID, state tasker.TaskState, header ...string) taskDoc {
	t.Helper()
	var doc taskDoc
	require.Eventually(t, func() bool {
		r := b.do(t, http.MethodGet, "/v1/tasks/"+id.String(), nil, header...)
		require.Equal(t, http.StatusOK, r.status)
		doc = taskDoc{}
		r.decode(t, &doc)
		return doc.State == string(state)
	}, 30*time.Second, 20*time.Millisecond, "task %s reaches %s", id, state)
	return doc
}

// stepNamed returns the task's step with the given name.
func stepNamed(t *testing.T, d taskDoc, name string) stepDoc {
	t.Helper()
	for _, s := range d.Steps {
		if s.Name == name {
			return s
		}
	}
	require.FailNow(t, fmt.Sprintf("task %s has no step %q", d.ID, name))
	return stepDoc{}
}

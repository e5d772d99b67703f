// Package httpapi serves a tasker engine over HTTP: a JSON REST API in Tasker Core's shape, the
// engine's health, an OpenAPI document, and a web UI, all from one http.Handler that a service
// mounts beside its own routes.
//
//	mux := http.NewServeMux()
//	mux.Handle("/tasker/", http.StripPrefix("/tasker", httpapi.New(engine,
//		httpapi.WithAuthorizer(myAuthorizer))))
//
// The handler serves:
//
//   - /v1/...: the REST API (tasks, workflow steps and their operator actions, transitions,
//     diagrams, templates, the dead-letter queue, analytics, health); see /openapi.json.
//   - /openapi.json: the OpenAPI 3.1 document of the API.
//   - /ui/: the web UI, whose assets are embedded (no CDN); it calls the API with relative URLs,
//     so it works under any prefix the handler is mounted at with http.StripPrefix.
//
// Every API route asks the Authorizer for its Action (Tasker Core's names: tasks:create,
// tasks:read, steps:resolve, dlq:update, ...) before it does anything. Without WithAuthorizer the
// handler is read-only: ReadOnly allows every read and refuses every write with 403. The UI's
// static assets and /openapi.json hold no data and are served without asking. Writes that a browser sends from
// another origin are refused (http.CrossOriginProtection), so that a page elsewhere cannot use an
// operator's cookies; request bodies must be application/json.
//
// Errors are RFC 9457 problem details (application/problem+json); see Problem for the mapping of
// the engine's typed errors to status codes.
package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/healthhttp"
)

// Defaults of the options.
const (
	// MaxBodyBytesDefault bounds a request body (2 MiB): a task's context is bounded by the engine
	// too (tasker.Config.MaxPayloadBytes).
	MaxBodyBytesDefault = 2 << 20
	// ListLimitDefault is the page size of the listings when the request gives no limit.
	ListLimitDefault = 50
	// ListLimitMax is the largest page a listing returns.
	ListLimitMax = 1000
)

// Option configures New.
type Option func(*server)

// WithAuthorizer sets the Authorizer every route asks; nil keeps the default, ReadOnly.
func WithAuthorizer(a Authorizer) Option {
	return func(s *server) {
		if a != nil {
			s.auth = a
		}
	}
}

// WithMaxBodyBytes bounds request bodies (default MaxBodyBytesDefault); values <= 0 keep the
// default. A larger body gets 413.
func WithMaxBodyBytes(n int64) Option {
	return func(s *server) {
		if n > 0 {
			s.maxBody = n
		}
	}
}

// WithHealthOptions passes options to the health handler behind /v1/health (package healthhttp),
// such as healthhttp.WithRequireWorkers.
func WithHealthOptions(opts ...healthhttp.Option) Option {
	return func(s *server) { s.healthOpts = append(s.healthOpts, opts...) }
}

// server is the handler New returns.
type server struct {
	e          *tasker.Engine
	auth       Authorizer
	maxBody    int64
	healthOpts []healthhttp.Option
	health     http.Handler
	mux        *http.ServeMux
	handler    http.Handler // mux behind the cross-origin protection
}

// route is one API route: its ServeMux pattern's method and path, and the action it needs.
type route struct {
	method, path string
	action       Action
	serve        func(s *server, w http.ResponseWriter, r *http.Request) error
}

// routes is the API; the OpenAPI document lists the same (a test checks both ways).
var routes = []route{
	{"POST", "/v1/tasks", ActionTasksCreate, (*server).createTask},
	{"GET", "/v1/tasks", ActionTasksRead, (*server).listTasks},
	{"GET", "/v1/tasks/{id}", ActionTasksRead, (*server).getTask},
	{"DELETE", "/v1/tasks/{id}", ActionTasksCancel, (*server).cancelTask},
	{"GET", "/v1/tasks/{id}/transitions", ActionTasksRead, (*server).taskTransitions},
	{"GET", "/v1/tasks/{id}/diagram", ActionTasksRead, (*server).taskDiagram},
	{"GET", "/v1/tasks/{id}/workflow_steps", ActionStepsRead, (*server).listSteps},
	{"GET", "/v1/tasks/{id}/workflow_steps/{step}", ActionStepsRead, (*server).getStep},
	{"PATCH", "/v1/tasks/{id}/workflow_steps/{step}", "", (*server).patchStep}, // the action depends on the body
	{"GET", "/v1/tasks/{id}/workflow_steps/{step}/transitions", ActionStepsRead, (*server).stepTransitions},
	{"GET", "/v1/templates", ActionTemplatesRead, (*server).listTemplates},
	{"GET", "/v1/templates/{namespace}/{name}/{version}", ActionTemplatesRead, (*server).getTemplate},
	{"GET", "/v1/dlq", ActionDLQRead, (*server).listDeadLetters},
	{"GET", "/v1/dlq/task/{id}", ActionDLQRead, (*server).taskDeadLetter},
	{"PATCH", "/v1/dlq/entry/{id}", ActionDLQUpdate, (*server).resolveDeadLetter},
	{"GET", "/v1/dlq/stats", ActionDLQRead, (*server).deadLetterStats},
	{"GET", "/v1/dlq/investigation", ActionDLQRead, (*server).investigation},
	{"GET", "/v1/analytics/performance", ActionAnalyticsRead, (*server).performance},
	{"GET", "/v1/analytics/bottlenecks", ActionAnalyticsRead, (*server).bottlenecks},
	{"GET", "/v1/health", ActionHealthRead, (*server).healthReport},
	{"GET", "/v1/health/{probe}", ActionHealthRead, (*server).healthProbe},
}

// New returns the handler of an engine's API and UI (see the package documentation). Mount it at
// the root of a mux, or under a prefix with http.StripPrefix.
func New(engine *tasker.Engine, opts ...Option) http.Handler {
	return newServer(engine, opts...).handler
}

func newServer(engine *tasker.Engine, opts ...Option) *server {
	s := &server{e: engine, auth: ReadOnly, maxBody: MaxBodyBytesDefault, mux: http.NewServeMux()}
	for _, o := range opts {
		o(s)
	}
	s.health = healthhttp.Handler(engine, append([]healthhttp.Option{healthhttp.WithPrefix("/v1/health")}, s.healthOpts...)...)
	for _, rt := range routes {
		s.mux.HandleFunc(rt.method+" "+rt.path, s.wrap(rt))
	}
	s.mux.HandleFunc("GET /openapi.json", serveOpenAPI)
	s.mux.Handle("GET /ui/", uiHandler())
	// Relative redirects, so that they work under any prefix the handler is mounted at.
	s.mux.HandleFunc("GET /{$}", relativeRedirect)
	s.mux.HandleFunc("GET /ui", relativeRedirect)
	s.mux.HandleFunc("/v1/", s.noRoute)
	// A browser on another site must not drive the API with the operator's cookies: writes from a
	// cross-origin browser request (Sec-Fetch-Site, Origin) are refused before any route runs.
	// Clients that are not browsers send neither header and are not affected.
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, r, &requestError{status: http.StatusForbidden, kind: "cross-origin",
			msg: "a cross-origin request from a browser may not change anything"})
	}))
	s.handler = cop.Handler(s.mux)
	return s
}

// noRoute answers a request no route takes: 405 with an Allow header when the path has routes for
// other methods, else 404, as problems.
func (s *server) noRoute(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := s.mux.Handler(probe); pattern != "/v1/" && pattern != "" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeProblem(w, r, &requestError{status: http.StatusMethodNotAllowed, kind: "method-not-allowed",
			msg: fmt.Sprintf("%s is not allowed on %s; use %s", r.Method, r.URL.Path, strings.Join(allow, ", "))})
		return
	}
	writeProblem(w, r, &requestError{status: http.StatusNotFound, kind: "not-found", msg: "no such route: " + r.Method + " " + r.URL.Path})
}

// relativeRedirect sends the browser to the UI with a relative Location (http.Redirect would make it
// absolute from the path it sees, which lacks the prefix http.StripPrefix removed).
func relativeRedirect(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Location", "ui/")
	w.WriteHeader(http.StatusFound)
}

// wrap authorizes a route's request and writes its error, if any, as a problem.
func (s *server) wrap(rt route) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if rt.action != "" {
			if err := s.authorize(r, rt.action); err != nil {
				writeProblem(w, r, err)
				return
			}
		}
		if err := rt.serve(s, w, r); err != nil {
			writeProblem(w, r, err)
		}
	}
}

// authorize asks the Authorizer; its refusal is a 403, or a 401 when it wraps ErrUnauthenticated.
func (s *server) authorize(r *http.Request, a Action) error {
	err := s.auth(r, a)
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrUnauthenticated) {
		return &requestError{status: http.StatusUnauthorized, kind: "unauthenticated", msg: string(a) + ": " + err.Error()}
	}
	return &requestError{status: http.StatusForbidden, kind: "forbidden", msg: string(a) + ": " + err.Error()}
}

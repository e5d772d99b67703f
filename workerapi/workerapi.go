// Package workerapi serves the worker protocol over HTTP, so that a step's handler can live in
// another process and another language: a worker long-polls for a step whose callable it serves
// (a claim that takes the engine's lease), sends heartbeats while it runs, and posts the outcome.
// The engine records it as it records a Go handler's return: leases, retries, backoff and the
// audit trail are the engine's own. A callable that no Go handler of the engine serves waits on
// the queue for a remote claim. The protocol is documented in openapi.json (served at
// /v1/workers/openapi.json); sdk/typescript and sdk/python are reference workers.
//
//	mux.Handle("/v1/workers/", workerapi.New(engine, workerapi.WithAuthorizer(auth)))
//
// Routes: POST /v1/workers/claim, POST /v1/workers/steps/{step_id}/heartbeat,
// POST /v1/workers/steps/{step_id}/outcome. Errors are RFC 9457 problem details.
package workerapi

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/httpapi"
)

// The actions the routes ask the Authorizer for.
const (
	ActionClaim  httpapi.Action = "workers:claim"
	ActionReport httpapi.Action = "workers:report"
)

// Bounds of a claim.
const (
	// LeaseDefault is the lease of a claim that asks for none.
	LeaseDefault = 30 * time.Second
	// LeaseMax caps a claim's lease.
	LeaseMax = 10 * time.Minute
	// WaitMax caps a claim's long poll.
	WaitMax = 30 * time.Second
)

//go:embed openapi.json
var openapiDoc []byte

// Option configures New.
type Option func(*server)

// WithAuthorizer sets the Authorizer; without it every request is refused with 403.
func WithAuthorizer(a httpapi.Authorizer) Option { return func(s *server) { s.auth = a } }

// MaxBodyBytesDefault bounds a request body (16 MiB); a result over the engine's MaxPayloadBytes
// gets 413 from the engine's own check.
const MaxBodyBytesDefault = 16 << 20

// WithMaxBodyBytes bounds request bodies (default MaxBodyBytesDefault); a larger body gets 413.
func WithMaxBodyBytes(n int64) Option { return func(s *server) { s.maxBody = n } }

type server struct {
	e       *tasker.Engine
	auth    httpapi.Authorizer
	maxBody int64
	mux     *http.ServeMux
}

// New returns the worker protocol's handler for e.
func New(e *tasker.Engine, opts ...Option) http.Handler {
	s := &server{e: e, auth: func(*http.Request, httpapi.Action) error { return httpapi.ErrForbidden },
		maxBody: MaxBodyBytesDefault}
	for _, o := range opts {
		o(s)
	}
	s.mux = http.NewServeMux()
	for _, rt := range s.routes() {
		s.mux.HandleFunc(rt.pattern, rt.h)
	}
	s.mux.HandleFunc("GET /v1/workers/openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openapiDoc)
	})
	return s.mux
}

// route is one API route: its ServeMux pattern ("METHOD /path") and handler.
type route struct {
	pattern string
	h       http.HandlerFunc
}

// routes is the route table; openapi.json documents each (TestOpenAPIMatchesRoutes).
func (s *server) routes() []route {
	return []route{
		{"POST /v1/workers/claim", s.claim},
		{"POST /v1/workers/steps/{step_id}/heartbeat", s.heartbeat},
		{"POST /v1/workers/steps/{step_id}/outcome", s.outcome},
	}
}

// Problem is an RFC 9457 problem document.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
}

func writeProblem(w http.ResponseWriter, status int, kind, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(Problem{Type: "urn:tasker:problem:" + kind, Title: http.StatusText(status), Status: status, Detail: detail})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// engineError writes the problem of an engine error.
func engineError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, tasker.ErrRemoteStepNotFound):
		writeProblem(w, http.StatusNotFound, "step-not-found", err.Error())
	case errors.Is(err, tasker.ErrRemoteStale):
		writeProblem(w, http.StatusConflict, "stale-lease", err.Error())
	case errors.Is(err, tasker.ErrRemoteTooLarge):
		writeProblem(w, http.StatusRequestEntityTooLarge, "payload-too-large", err.Error())
	default:
		writeProblem(w, http.StatusInternalServerError, "internal", err.Error())
	}
}

// authorize asks the Authorizer; false when it refused (the problem is written).
func (s *server) authorize(w http.ResponseWriter, r *http.Request, a httpapi.Action) bool {
	err := s.auth(r, a)
	switch {
	case err == nil:
		return true
	case errors.Is(err, httpapi.ErrUnauthenticated):
		writeProblem(w, http.StatusUnauthorized, "unauthenticated", err.Error())
	default:
		writeProblem(w, http.StatusForbidden, "forbidden", err.Error())
	}
	return false
}

// decode reads a JSON body into v; false when it could not (the problem is written).
func (s *server) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	r.Body = http.MaxBytesReader(w, r.Body, s.maxBody)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeProblem(w, http.StatusRequestEntityTooLarge, "payload-too-large", fmt.Sprintf("body over %d bytes", mbe.Limit))
			return false
		}
		writeProblem(w, http.StatusBadRequest, "bad-request", "invalid JSON body: "+err.Error())
		return false
	}
	return true
}

// ClaimRequest is the body of POST /v1/workers/claim.
type ClaimRequest struct {
	WorkerID     string   `json:"worker_id"`
	Namespace    string   `json:"namespace"`
	Callables    []string `json:"callables"`
	LeaseSeconds float64  `json:"lease_seconds"`
	WaitSeconds  float64  `json:"wait_seconds"`
}

func seconds(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

func (s *server) claim(w http.ResponseWriter, r *http.Request) {
	if !s.authorize(w, r, ActionClaim) {
		return
	}
	var req ClaimRequest
	if !s.decode(w, r, &req) {
		return
	}
	if req.WorkerID == "" || req.Namespace == "" || len(req.Callables) == 0 {
		writeProblem(w, http.StatusBadRequest, "bad-request", "worker_id, namespace and callables are required")
		return
	}
	lease := seconds(req.LeaseSeconds)
	if lease <= 0 {
		lease = LeaseDefault
	}
	lease = min(lease, LeaseMax)
	wait := min(max(seconds(req.WaitSeconds), 0), WaitMax)
	st, err := s.e.RemoteClaim(r.Context(), tasker.RemoteClaimParams{WorkerID: req.WorkerID, Namespace: req.Namespace,
		Callables: req.Callables, Lease: lease, Wait: wait})
	if err != nil {
		engineError(w, err)
		return
	}
	if st == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// HeartbeatRequest is the body of POST /v1/workers/steps/{step_id}/heartbeat.
type HeartbeatRequest struct {
	WorkerID     string  `json:"worker_id"`
	Attempt      int     `json:"attempt"`
	LeaseSeconds float64 `json:"lease_seconds"`
}

func (s *server) stepID(w http.ResponseWriter, r *http.Request) (uuid.UUID, bool) {
	id, err := uuid.Parse(r.PathValue("step_id"))
	if err != nil {
		writeProblem(w, http.StatusNotFound, "step-not-found", "no step "+r.PathValue("step_id"))
		return uuid.Nil, false
	}
	return id, true
}

func (s *server) heartbeat(w http.ResponseWriter, r *http.Request) {
	if !s.authorize(w, r, ActionReport) {
		return
	}
	id, ok := s.stepID(w, r)
	if !ok {
		return
	}
	var req HeartbeatRequest
	if !s.decode(w, r, &req) {
		return
	}
	lease := seconds(req.LeaseSeconds)
	if lease <= 0 {
		lease = LeaseDefault
	}
	if err := s.e.RemoteHeartbeat(r.Context(), id, req.WorkerID, req.Attempt, min(lease, LeaseMax)); err != nil {
		engineError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// OutcomeError is a failed attempt's error.
type OutcomeError struct {
	Message           string  `json:"message"`
	Retryable         bool    `json:"retryable"`
	RetryAfterSeconds float64 `json:"retry_after_seconds"`
}

// OutcomeRequest is the body of POST /v1/workers/steps/{step_id}/outcome: a result or an error.
type OutcomeRequest struct {
	WorkerID string          `json:"worker_id"`
	Attempt  int             `json:"attempt"`
	Result   json.RawMessage `json:"result"`
	Error    *OutcomeError   `json:"error"`
}

func (s *server) outcome(w http.ResponseWriter, r *http.Request) {
	if !s.authorize(w, r, ActionReport) {
		return
	}
	id, ok := s.stepID(w, r)
	if !ok {
		return
	}
	var req OutcomeRequest
	if !s.decode(w, r, &req) {
		return
	}
	o := tasker.RemoteOutcome{Result: req.Result}
	if req.Error != nil {
		o = tasker.RemoteOutcome{Failed: true, Message: req.Error.Message, Retryable: req.Error.Retryable,
			RetryAfter: seconds(req.Error.RetryAfterSeconds)}
	}
	if err := s.e.RemoteReport(r.Context(), id, req.WorkerID, req.Attempt, o); err != nil {
		engineError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

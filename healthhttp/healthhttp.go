// Package healthhttp serves a tasker engine's health over HTTP, as JSON, with the status codes
// that load balancers and orchestrators act on:
//
//   - GET /health/live: 200 while the process serves HTTP. It does no I/O, so a database outage
//     never makes an orchestrator restart a process that would only find the database down again.
//   - GET /health/ready: 200 when the database answers a ping (Engine.PingDatabase), 503 when it
//     does not. With WithRequireWorkers it also wants the engine's workers running and not
//     draining, so that a process stopping its workers leaves the pool of a load balancer first.
//   - GET /health/detailed: the whole Engine.Health report; 200 while its status is ok or
//     degraded (the engine still does its work), 503 when it is down or the report did not finish
//     within its timeout.
//
// Every response is JSON (application/json) with Cache-Control: no-store; HEAD answers as GET
// without the body, and other methods get 405 with an Allow header. Each probe runs under its own
// timeout (WithReadyTimeout, WithDetailedTimeout) within the request's context.
//
// Mount the handler on a path that covers its prefix ("/health" unless WithPrefix):
//
//	mux := http.NewServeMux()
//	mux.Handle("/health/", healthhttp.Handler(engine))
package healthhttp

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/tasker-systems/tasker"
)

// Defaults of the options.
const (
	// PrefixDefault is the path the endpoints live under: PrefixDefault+"/live", "/ready" and
	// "/detailed".
	PrefixDefault = "/health"
	// ReadyTimeoutDefault bounds a readiness probe. The database ping itself is bounded by
	// tasker.HealthCheckTimeout.
	ReadyTimeoutDefault = 3 * time.Second
	// DetailedTimeoutDefault bounds a detailed report.
	DetailedTimeoutDefault = 5 * time.Second
)

// Option configures Handler.
type Option func(*handler)

// WithPrefix sets the path the endpoints live under (default PrefixDefault); "" serves them at
// /live, /ready and /detailed. A trailing slash is dropped.
func WithPrefix(p string) Option {
	return func(h *handler) { h.prefix = strings.TrimSuffix(p, "/") }
}

// WithReadyTimeout bounds a readiness probe (default ReadyTimeoutDefault). Values <= 0 keep the
// default.
func WithReadyTimeout(d time.Duration) Option {
	return func(h *handler) {
		if d > 0 {
			h.readyTimeout = d
		}
	}
}

// WithDetailedTimeout bounds a detailed report (default DetailedTimeoutDefault). Values <= 0 keep
// the default.
func WithDetailedTimeout(d time.Duration) Option {
	return func(h *handler) {
		if d > 0 {
			h.detailedTimeout = d
		}
	}
}

// WithRequireWorkers makes readiness also require the engine's workers (RunWorkers) to run and
// not to be draining. Leave it off (the default) for a process that only creates and reads tasks
// and never runs workers.
func WithRequireWorkers() Option {
	return func(h *handler) { h.requireWorkers = true }
}

// WithErrorDetails shows in the documents the error texts of the report: the database's, the
// leader's, the queue's and a failing maintenance service's, also where a reason quotes them.
// Without it (the default) each is replaced by Withheld, since such a text can name hosts, ports,
// users, databases and SQL, which a probe reachable from outside the process must not tell; the
// documents still say which part failed, and Engine.Health gives the texts in the process. Turn
// it on where only operators reach the endpoints.
func WithErrorDetails() Option {
	return func(h *handler) { h.errorDetails = true }
}

// Withheld stands in the documents for an error text without WithErrorDetails.
const Withheld = "withheld (healthhttp.WithErrorDetails shows it)"

// WithHealthOptions passes options to Engine.Health for the detailed report, such as
// tasker.WithQueueWaitLimit.
func WithHealthOptions(opts ...tasker.HealthOption) Option {
	return func(h *handler) { h.healthOpts = append(h.healthOpts, opts...) }
}

// Handler returns the http.Handler of an engine's health endpoints (see the package
// documentation). A path under the prefix that is not an endpoint gets 404.
func Handler(e *tasker.Engine, opts ...Option) http.Handler {
	h := &handler{e: e, prefix: PrefixDefault, readyTimeout: ReadyTimeoutDefault, detailedTimeout: DetailedTimeoutDefault}
	for _, o := range opts {
		o(h)
	}
	return h
}

type handler struct {
	e               *tasker.Engine
	prefix          string
	readyTimeout    time.Duration
	detailedTimeout time.Duration
	requireWorkers  bool
	errorDetails    bool
	healthOpts      []tasker.HealthOption
}

// withhold returns the error texts of a document, or Withheld in their place without
// WithErrorDetails, and replaces their quotes in reasons likewise.
func (h *handler) withhold(reasons []string, texts ...*string) []string {
	if h.errorDetails {
		return reasons
	}
	var out []string
	if len(reasons) > 0 {
		out = append([]string(nil), reasons...)
	}
	for _, t := range texts {
		if *t == "" {
			continue
		}
		for i := range out {
			out[i] = strings.ReplaceAll(out[i], *t, Withheld)
		}
		*t = Withheld
	}
	return out
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var serve func(*http.Request) (int, any)
	switch r.URL.Path {
	case h.prefix + "/live":
		serve = h.live
	case h.prefix + "/ready":
		serve = h.ready
	case h.prefix + "/detailed":
		serve = h.detailed
	default:
		write(w, r, http.StatusNotFound, errorDoc{Error: "no such health endpoint: " + r.URL.Path})
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		write(w, r, http.StatusMethodNotAllowed, errorDoc{Error: "method " + r.Method + " not allowed; use GET or HEAD"})
		return
	}
	code, doc := serve(r)
	write(w, r, code, doc)
}

func (h *handler) live(*http.Request) (int, any) {
	return http.StatusOK, liveDoc{Status: "ok", WorkerID: h.e.WorkerID()}
}

func (h *handler) ready(r *http.Request) (int, any) {
	ctx, cancel := context.WithTimeout(r.Context(), h.readyTimeout)
	defer cancel()
	db := h.e.PingDatabase(ctx)
	doc := readyDoc{Ready: true, WorkerID: h.e.WorkerID(), Database: database(db)}
	if !db.OK {
		doc.Ready = false
		doc.Reasons = append(doc.Reasons, "the database does not answer: "+db.Error)
		doc.Reasons = h.withhold(doc.Reasons, &doc.Database.Error)
	}
	if h.requireWorkers {
		wk := h.e.WorkerSlots()
		doc.Workers = &readyWorkersDoc{Running: wk.Running, Stopping: wk.Stopping}
		switch {
		case !wk.Running:
			doc.Ready = false
			doc.Reasons = append(doc.Reasons, "the workers do not run")
		case wk.Stopping:
			doc.Ready = false
			doc.Reasons = append(doc.Reasons, "the workers are stopping")
		}
	}
	if !doc.Ready {
		return http.StatusServiceUnavailable, doc
	}
	return http.StatusOK, doc
}

func (h *handler) detailed(r *http.Request) (int, any) {
	ctx, cancel := context.WithTimeout(r.Context(), h.detailedTimeout)
	defer cancel()
	rep, err := h.e.Health(ctx, h.healthOpts...)
	doc := report(rep)
	texts := []*string{&doc.Database.Error, &doc.Leader.Error, &doc.Queue.Error}
	for i := range doc.Services {
		texts = append(texts, &doc.Services[i].LastError)
	}
	if err != nil {
		doc.Status = string(tasker.HealthDown)
		msg := err.Error()
		doc.Reasons = append(doc.Reasons, "the report did not finish: "+msg)
		doc.Reasons = h.withhold(doc.Reasons, append(texts, &msg)...)
		return http.StatusServiceUnavailable, doc
	}
	doc.Reasons = h.withhold(doc.Reasons, texts...)
	if rep.Status == tasker.HealthDown {
		return http.StatusServiceUnavailable, doc
	}
	return http.StatusOK, doc
}

// write sends doc as JSON with code, headers that forbid caching, and no body for HEAD.
func write(w http.ResponseWriter, r *http.Request, code int, doc any) {
	body, err := json.Marshal(doc)
	if err != nil { // the documents are plain data: this does not happen
		code, body = http.StatusInternalServerError, []byte(`{"error":"encode the response"}`)
	}
	body = append(body, '\n')
	hd := w.Header()
	hd.Set("Content-Type", "application/json; charset=utf-8")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

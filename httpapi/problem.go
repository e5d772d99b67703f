package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/puddle/v2"

	"github.com/tasker-systems/tasker"
)

// ProblemType is the base of the problems' type URIs: ProblemType + "not-found" and the like.
const ProblemType = "https://tasker.dev/problems/"

// Problem is an RFC 9457 problem details document (application/problem+json), with the
// extensions this API adds where they apply. Type is ProblemType followed by the kind of problem
// (invalid-request, invalid-input, unauthenticated, forbidden, cross-origin, not-found,
// method-not-allowed, duplicate-task, conflict, payload-too-large, unsupported-media-type,
// not-allowed, unsupported, unavailable, internal).
//
// The status codes, and the engine's errors they stand for (the OpenAPI document says the same):
//
//   - 400 invalid-request: a malformed body or parameter; invalid-input: a task context or
//     request the engine refused (*tasker.InputError, with every violation), a value or text the
//     database cannot store (*tasker.ValueError), a dead-letter argument (*tasker.DeadLetterRequestError).
//   - 401 unauthenticated / 403 forbidden: the Authorizer refused (401 when its error wraps
//     ErrUnauthenticated); 403 cross-origin: a write a browser sent from another origin.
//   - 404 not-found: an unknown task, step, template or dead-letter entry, or route; 405
//     method-not-allowed, with an Allow header.
//   - 409 duplicate-task: the request matched an existing task (existing_task_id); conflict: a
//     task already holds an open dead-letter entry, a template version conflicts.
//   - 413 payload-too-large: a body, context or result over its limit; 415
//     unsupported-media-type: a body that is not application/json.
//   - 422 not-allowed: a well-formed request the current state forbids (cancelling a finished
//     task, retrying a step that is not in error, resolving a resolved dead-letter entry).
//   - 503 unavailable: the database does not answer (connection refused or lost, a closed pool,
//     the request's deadline spent waiting for it).
//   - 500 internal: anything else.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
	// Violations lists every reason an input was refused (a task context failing the template's
	// input schema, say).
	Violations []string `json:"violations,omitempty"`
	// ExistingTaskID is the task a duplicate request matched.
	ExistingTaskID *uuid.UUID `json:"existing_task_id,omitempty"`
	// Field names the request's field that was refused, when one was.
	Field string `json:"field,omitempty"`
}

// requestError is an error of the request itself, found by the handler (a malformed body, a
// parameter that is not a UUID).
type requestError struct {
	status     int
	kind       string
	field      string
	msg        string
	violations []string
}

func (e *requestError) Error() string { return e.msg }

func badRequest(field, format string, args ...any) error {
	return &requestError{status: http.StatusBadRequest, kind: "invalid-request", field: field, msg: fmt.Sprintf(format, args...)}
}

// problemFor maps an error to its problem (see Problem).
func problemFor(err error) Problem {
	var (
		re  *requestError
		ie  *tasker.InputError
		ve  *tasker.ValueError
		dre *tasker.DeadLetterRequestError
		de  *tasker.DuplicateTaskError
		mbe *http.MaxBytesError
	)
	switch {
	case errors.As(err, &re):
		return Problem{Type: ProblemType + re.kind, Title: http.StatusText(re.status), Status: re.status, Detail: re.msg,
			Field: re.field, Violations: re.violations}
	case errors.As(err, &mbe):
		return problem(http.StatusRequestEntityTooLarge, "payload-too-large", fmt.Sprintf("the body is over %d bytes", mbe.Limit))
	case errors.As(err, &ie):
		p := problem(http.StatusBadRequest, "invalid-input", err.Error())
		p.Violations = ie.Violations
		return p
	case errors.As(err, &ve):
		p := problem(http.StatusBadRequest, "invalid-input", err.Error())
		p.Field = ve.Field
		if ve.Path != "" {
			p.Violations = []string{ve.Path + ": " + ve.Reason}
		} else {
			p.Violations = []string{ve.Reason}
		}
		return p
	case errors.As(err, &dre):
		p := problem(http.StatusBadRequest, "invalid-input", err.Error())
		p.Field = dre.Field
		return p
	case errors.As(err, &de):
		p := problem(http.StatusConflict, "duplicate-task", err.Error())
		id := de.ExistingID
		p.ExistingTaskID = &id
		return p
	case errors.Is(err, tasker.ErrUnsupported):
		return problem(http.StatusUnprocessableEntity, "unsupported", err.Error())
	case errors.Is(err, tasker.ErrPayloadTooLarge):
		return problem(http.StatusRequestEntityTooLarge, "payload-too-large", err.Error())
	case errors.Is(err, tasker.ErrTaskNotFound), errors.Is(err, tasker.ErrStepNotFound),
		errors.Is(err, tasker.ErrTemplateNotFound), errors.Is(err, tasker.ErrDeadLetterNotFound):
		return problem(http.StatusNotFound, "not-found", err.Error())
	case errors.Is(err, tasker.ErrDeadLetterOpen), errors.Is(err, tasker.ErrTemplateConflict):
		return problem(http.StatusConflict, "conflict", err.Error())
	case errors.Is(err, tasker.ErrNotAllowed):
		return problem(http.StatusUnprocessableEntity, "not-allowed", err.Error())
	case unavailable(err):
		return problem(http.StatusServiceUnavailable, "unavailable", "the database is unavailable: "+err.Error())
	}
	return problem(http.StatusInternalServerError, "internal", err.Error())
}

func problem(status int, kind, detail string) Problem {
	return Problem{Type: ProblemType + kind, Title: http.StatusText(status), Status: status, Detail: detail}
}

// unavailable tells whether err says the database cannot be reached now.
func unavailable(err error) bool {
	var (
		ce *pgconn.ConnectError
		ne net.Error
		pe *pgconn.PgError
	)
	switch {
	case errors.Is(err, puddle.ErrClosedPool), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &ce), errors.As(err, &ne), pgconn.Timeout(err):
		return true
	case errors.As(err, &pe):
		// 08: connection exception; 53: insufficient resources; 57P0x: the server shuts down.
		c := pe.Code
		return len(c) >= 2 && (c[:2] == "08" || c[:2] == "53" || c == "57P01" || c == "57P02" || c == "57P03")
	}
	return false
}

// writeProblem sends the error's problem.
func writeProblem(w http.ResponseWriter, r *http.Request, err error) {
	p := problemFor(err)
	p.Instance = r.URL.Path
	if p.Status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
	}
	writeDoc(w, p.Status, "application/problem+json", p)
}

// writeJSON sends doc as JSON.
func writeJSON(w http.ResponseWriter, status int, doc any) {
	writeDoc(w, status, "application/json; charset=utf-8", doc)
}

func writeDoc(w http.ResponseWriter, status int, contentType string, doc any) {
	body, err := json.Marshal(doc)
	if err != nil {
		status, contentType = http.StatusInternalServerError, "application/problem+json"
		body, _ = json.Marshal(problem(status, "internal", "encode the response: "+err.Error()))
	}
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Action is a permission an Authorizer grants or refuses; the names are Tasker Core's. Reads and
// writes are separate actions, so that a read-only role is an Authorizer that refuses every
// Action whose Write method is true.
type Action string

// The actions, one per kind of request.
const (
	ActionTasksCreate   Action = "tasks:create"
	ActionTasksRead     Action = "tasks:read"
	ActionTasksCancel   Action = "tasks:cancel"
	ActionStepsRead     Action = "steps:read"
	ActionStepsRetry    Action = "steps:retry"
	ActionStepsResolve  Action = "steps:resolve"
	ActionStepsComplete Action = "steps:complete"
	ActionTemplatesRead Action = "templates:read"
	ActionDLQRead       Action = "dlq:read"
	ActionDLQUpdate     Action = "dlq:update"
	ActionAnalyticsRead Action = "analytics:read"
	ActionHealthRead    Action = "health:read"
)

// Actions lists every Action.
var Actions = []Action{ActionTasksCreate, ActionTasksRead, ActionTasksCancel, ActionStepsRead, ActionStepsRetry,
	ActionStepsResolve, ActionStepsComplete, ActionTemplatesRead, ActionDLQRead, ActionDLQUpdate, ActionAnalyticsRead,
	ActionHealthRead}

// Write tells whether the action changes something (anything but a read).
func (a Action) Write() bool { return !strings.HasSuffix(string(a), ":read") }

// Authorizer decides whether a request may perform an action. It returns nil to allow it, or an
// error to refuse it: the request gets 403 Forbidden, or 401 Unauthorized when the error wraps
// ErrUnauthenticated (no credentials, or credentials that do not check out). The error's text is
// shown to the client in the problem's detail. Every route of the handler calls it before doing
// anything, with the request as received (the host's middleware may have put the caller in its
// context).
type Authorizer func(r *http.Request, a Action) error

// ErrUnauthenticated, wrapped by an Authorizer's error, makes the refusal a 401 instead of a 403.
var ErrUnauthenticated = errors.New("httpapi: unauthenticated")

// ErrForbidden is what ReadOnly refuses writes with.
var ErrForbidden = errors.New("httpapi: forbidden")

// AllowAll is an Authorizer that allows every action. Use it only where the handler is reachable
// by operators alone (a port bound to localhost, behind the host's own authentication).
func AllowAll(*http.Request, Action) error { return nil }

// ReadOnly is the Authorizer used when none is given: it allows every read and refuses every write
// (creating or cancelling a task, a step's retry, resolve or complete, a dead-letter resolution)
// with ErrForbidden. Writes need an Authorizer set with WithAuthorizer.
func ReadOnly(_ *http.Request, a Action) error {
	if a.Write() {
		return fmt.Errorf("%w: %s needs an Authorizer that allows it (httpapi.WithAuthorizer); by default the API is read-only", ErrForbidden, a)
	}
	return nil
}

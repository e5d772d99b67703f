package tasker

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-systems/tasker/internal/engine"
	"github.com/tasker-systems/tasker/internal/jsonsafe"
	"github.com/tasker-systems/tasker/store"
)

// Sentinel errors for errors.Is.
var (
	// ErrTemplateNotFound is returned when no registered template has the requested key.
	ErrTemplateNotFound = engine.ErrTemplateNotFound
	// ErrTaskNotFound is returned for an unknown task ID.
	ErrTaskNotFound = errors.New("tasker: task not found")
	// ErrStepNotFound is returned for an unknown step.
	ErrStepNotFound = errors.New("tasker: step not found")
	// ErrDuplicateTask is matched by a *DuplicateTaskError: the request's identity matches an
	// existing task, which is returned alongside the error.
	ErrDuplicateTask = errors.New("tasker: duplicate task")
	// ErrInvalidInput is matched by an *InputError: the task's context, or another field of its
	// request, was rejected.
	ErrInvalidInput = errors.New("tasker: invalid task input")
	// ErrPayloadTooLarge is returned when a context or a result is over Config.MaxPayloadBytes.
	ErrPayloadTooLarge = errors.New("tasker: payload too large")
	// ErrInvalidValue is matched by a *ValueError: a value the database cannot store, such as an
	// operator's result given to CompleteStep or a handler's checkpoint.
	ErrInvalidValue = errors.New("tasker: value cannot be stored")
	// ErrNotAllowed is returned when an operation does not apply to the current state, such as
	// cancelling a finished task or retrying a step that is not in error.
	ErrNotAllowed = errors.New("tasker: not allowed in the current state")
	// ErrUnsupported is returned for template features this version cannot run yet.
	ErrUnsupported = errors.New("tasker: unsupported")
	// ErrAlreadyRunning is returned by RunWorkers when the engine's workers already run.
	ErrAlreadyRunning = engine.ErrAlreadyRunning
	// ErrTaskCancelled is the cause of a handler context cancelled because its task was cancelled.
	ErrTaskCancelled = engine.ErrTaskCancelled
	// ErrLeaseLost is the cause of a handler context cancelled because its step is no longer this
	// worker's: its lease expired and the step was rescued, or another worker holds it now. The
	// handler's outcome would be dropped.
	ErrLeaseLost = engine.ErrLeaseLost
	// ErrNotTransactional is returned by the …Tx calls (CancelTaskTx, RetryStepTx and the like)
	// when the store cannot join the caller's transaction, as store/memory cannot.
	ErrNotTransactional = store.ErrNotTransactional
	// ErrShutdown is the cause of a handler context cancelled because the engine is stopping.
	ErrShutdown = engine.ErrShutdown
)

// DuplicateTaskError reports that a task with the same identity exists.
type DuplicateTaskError struct {
	// ExistingID is the task that matched.
	ExistingID uuid.UUID
	// Identity is the identity hash both share.
	Identity string
}

func (e *DuplicateTaskError) Error() string {
	return fmt.Sprintf("tasker: duplicate task: task %s has the same identity", e.ExistingID)
}

// Is makes errors.Is(err, ErrDuplicateTask) true.
func (e *DuplicateTaskError) Is(target error) bool { return target == ErrDuplicateTask }

// InputError lists every reason a task request was rejected: its context fails the template's
// input schema or cannot be stored (see ValueError for what PostgreSQL's jsonb refuses), or a
// text field (idempotency key, correlation ID, a tag) holds a NUL character or bytes that are not
// UTF-8.
type InputError struct {
	// Template is the template's key.
	Template string
	// Violations are human-readable, one per problem, each naming the JSON location or the
	// request's field.
	Violations []string
}

func (e *InputError) Error() string {
	return fmt.Sprintf("tasker: invalid input for %s: %s", e.Template, strings.Join(e.Violations, "; "))
}

// Is makes errors.Is(err, ErrInvalidInput) true.
func (e *InputError) Is(target error) bool { return target == ErrInvalidInput }

// ValueError reports a value that cannot be stored as JSON: it is not JSON-encodable, or it holds
// what PostgreSQL's jsonb refuses: the escape \u0000, bytes that are not UTF-8, an unpaired UTF-16
// surrogate escape (such as "\ud800"), a number outside the range of PostgreSQL's numeric (at most
// 131072 digits before the decimal point and 16383 after, such as 1e1000000), or nesting deeper
// than 10000 levels. Every store refuses the same values. For an operator's text (a reason, an
// operator's name), it reports a NUL character or bytes that are not UTF-8.
type ValueError struct {
	// Field names the value: "result", "checkpoint", "reason" or "operator".
	Field string
	// Path is the JSON Pointer of the offending part of the value; "" for the whole value.
	Path string
	// Offset is the byte offset of the offending part in the value's JSON encoding.
	Offset int
	// Reason says what is wrong.
	Reason string
	// Err is the encoding error, for a value that is not JSON-encodable.
	Err error
}

func (e *ValueError) Error() string {
	if e.Path != "" {
		return fmt.Sprintf("tasker: %s cannot be stored: at %s (byte %d): %s", e.Field, e.Path, e.Offset, e.Reason)
	}
	return fmt.Sprintf("tasker: %s cannot be stored: %s", e.Field, e.Reason)
}

// Is makes errors.Is(err, ErrInvalidValue) true.
func (e *ValueError) Is(target error) bool { return target == ErrInvalidValue }

// Unwrap returns the encoding error, if any.
func (e *ValueError) Unwrap() error { return e.Err }

// checkValue returns a *ValueError when the database cannot store raw as the named value.
func checkValue(field string, raw []byte) error {
	var je *jsonsafe.Error
	if err := jsonsafe.Check(raw); errors.As(err, &je) {
		return &ValueError{Field: field, Path: je.Path, Offset: je.Offset, Reason: je.Reason}
	}
	return nil
}

// MaxOperatorTextBytes bounds the operator's name and the reason given with an operator action
// (RetryStep, ResolveStep, CompleteStep) or with CancelTask; they are kept in the audit trail.
const MaxOperatorTextBytes = 16 << 10

// checkText returns a *ValueError when the database cannot store s as text (a NUL character,
// bytes that are not UTF-8) or when it is longer than MaxOperatorTextBytes.
func checkText(field, s string) error {
	if len(s) > MaxOperatorTextBytes {
		return &ValueError{Field: field, Reason: fmt.Sprintf("is %d bytes long; the limit is %d (MaxOperatorTextBytes)", len(s), MaxOperatorTextBytes)}
	}
	var je *jsonsafe.Error
	if err := jsonsafe.CheckText(s); errors.As(err, &je) {
		return &ValueError{Field: field, Offset: je.Offset, Reason: fmt.Sprintf("at byte %d: %s", je.Offset, je.Reason)}
	}
	return nil
}

// PermanentError marks a handler failure that must not be retried. Create one with Permanent.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return "permanent: " + e.Err.Error() }

// Unwrap returns the wrapped error.
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err so that the step fails for good, without further attempts; the task is then
// blocked until an operator acts.
func Permanent(err error) error {
	if err == nil {
		err = errors.New("permanent failure")
	}
	return &PermanentError{Err: err}
}

// RetryAfterError asks for the next attempt after a given delay rather than the step's backoff.
// Create one with RetryAfter.
type RetryAfterError struct {
	Delay time.Duration
	Err   error
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("retry after %s: %v", e.Delay, e.Err)
}

// Unwrap returns the wrapped error.
func (e *RetryAfterError) Unwrap() error { return e.Err }

// RetryAfter wraps err so that the next attempt (if the step has attempts left) waits d, as a
// Retry-After header asks.
func RetryAfter(d time.Duration, err error) error {
	if err == nil {
		err = errors.New("retry requested")
	}
	return &RetryAfterError{Delay: d, Err: err}
}

// Bounds of an attempt's error record (StepFailure), which is stored with the step and in its
// transition: a longer text is cut at a character boundary and ends with a note of its length.
const (
	// MaxErrorMessageBytes bounds StepFailure.Message.
	MaxErrorMessageBytes = 16 << 10
	// MaxErrorStackBytes bounds StepFailure.Stack.
	MaxErrorStackBytes = 64 << 10
)

// StepFailure is the error record of a failed attempt, as stored with the step and in its
// transition's metadata.
type StepFailure struct {
	// Message is the handler's error text, at most MaxErrorMessageBytes; NUL characters and
	// bytes that are not UTF-8 are replaced by U+FFFD, since the database cannot store them.
	Message string `json:"message"`
	// Kind is "retryable", "permanent", "exhausted", "timeout", "panic", "no_handler",
	// "invalid_result" (a result that is not JSON-encodable, over Config.MaxPayloadBytes or that
	// the database cannot store: see ValueError), "invalid_outcome" or "lease_expired".
	Kind string `json:"kind"`
	// Attempt is the attempt that failed.
	Attempt int `json:"attempt"`
	// Stack is the goroutine stack of a panic, at most MaxErrorStackBytes, sanitized as Message.
	Stack string `json:"stack,omitempty"`
}

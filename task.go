package tasker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/tasker-systems/tasker/internal/engine"
	"github.com/tasker-systems/tasker/internal/jsonsafe"
	"github.com/tasker-systems/tasker/queue"
	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

// TaskRequest asks for a task: one run of a template with a JSON context.
type TaskRequest struct {
	// Namespace and Name select the template; Version "" means the highest registered version.
	Namespace, Name, Version string
	// Context is the task's input: any value that encodes to a JSON object (a struct, a map, or
	// JSON bytes as json.RawMessage). nil means {}.
	Context any
	// IdempotencyKey, when set, is the task's identity: a second request with the same key for
	// the same template returns the first task. The caller_provided identity strategy requires it.
	IdempotencyKey string
	// Priority orders the task's ready steps in the queue: each point counts as Config.Priority's
	// Aging of waiting (a minute by default), up to its MaxCredit (an hour), so a higher priority
	// is taken first and a low one waits at most MaxCredit longer than it would without priorities
	// (see priority.go). 0 or less has no head start. It must fit in 32 bits (the column is an
	// integer).
	Priority int
	// CorrelationID ties the task to the caller's own records and is shown to handlers.
	CorrelationID string
	// Tags are free-form labels.
	Tags []string
	// Initiator, SourceSystem and Reason say who asked for the task (a user, a service), from
	// which system, and why, as Tasker Core's task request does. Each is optional, valid UTF-8
	// without NUL bytes, and at most MaxOriginBytes long.
	Initiator    string
	SourceSystem string
	Reason       string
	// RunAt, when set, schedules the task's start: its root steps become ready at that time, and
	// until then the task is scheduled (Task.RunAt, ListOptions.Scheduled). A time not in the
	// future means now; one more than MaxRunAtAhead ahead is refused (see schedule.go).
	RunAt time.Time
}

// MaxOriginBytes bounds TaskRequest.Initiator, SourceSystem and Reason, in bytes.
const MaxOriginBytes = 1024

// Task is a task and, from GetTask, WaitTask and CreateTask, its steps.
type Task struct {
	ID                       uuid.UUID
	Namespace, Name, Version string
	State                    TaskState
	Context                  json.RawMessage
	IdentityHash             string
	IdempotencyKey           string
	Priority                 int // as requested
	CorrelationID            string
	Tags                     []string
	Initiator                string // the request's; "" when it left it empty
	SourceSystem             string // the request's; "" when it left it empty
	Reason                   string // the request's; "" when it left it empty
	CreatedAt, UpdatedAt     time.Time
	CompletedAt              *time.Time
	// RunAt is the scheduled start of a task that has not started yet (TaskRequest.RunAt): its
	// roots wait in waiting_for_retry, and so does the task, with no attempt made. nil once the
	// task has started, for a task never scheduled, and from ListTasks, which reads no steps.
	RunAt *time.Time
	// Steps are filled by GetTask and WaitTask, and by CreateTask (and CreateTaskTx) with the
	// steps as the creation wrote them, in creation order. ListTasks leaves them empty.
	Steps []StepInfo
}

// StepInfo is a step as operators see it.
type StepInfo struct {
	ID          uuid.UUID
	Name        string
	Handler     string
	Type        StepType
	State       StepState
	Attempts    int
	MaxAttempts int
	// Result is the handler's result as JSON, once complete.
	Result json.RawMessage
	// LastError is the latest failure's record, if any.
	LastError   *StepFailure
	NextRetryAt *time.Time
	CreatedAt   time.Time
	StartedAt   *time.Time
	CompletedAt *time.Time
}

// Step returns the step with the given name.
func (t *Task) Step(name string) (*StepInfo, bool) {
	for i := range t.Steps {
		if t.Steps[i].Name == name {
			return &t.Steps[i], true
		}
	}
	return nil, false
}

// Result decodes the result of the named step into v.
func (t *Task) Result(step string, v any) error {
	s, ok := t.Step(step)
	if !ok {
		return fmt.Errorf("%w: %q in task %s", ErrStepNotFound, step, t.ID)
	}
	if s.Result == nil {
		return fmt.Errorf("tasker: step %q has no result (it is %s)", step, s.State)
	}
	return json.Unmarshal(s.Result, v)
}

// CreateTask validates the request against its template, then creates the task, its steps and
// the first transitions and enqueues the root steps, in one transaction. It returns the task as
// created, with its initial steps (roots enqueued, the others pending, no attempt made), taken
// from what the creating transaction wrote: workers may have moved them on since, which GetTask
// shows. Steps that the template creates at run time (decision branches, batch workers,
// convergence steps) are not among them. A request whose identity matches an existing task
// returns that task, with its steps as found, and a *DuplicateTaskError (errors.Is
// ErrDuplicateTask). A rejected request writes nothing.
func (e *Engine) CreateTask(ctx context.Context, req TaskRequest) (*Task, error) {
	return e.CreateTaskTx(ctx, nil, req)
}

// CreateTaskTx is CreateTask inside the caller's transaction: the task exists, and its steps
// run, only if tx commits. A failure inside CreateTaskTx rolls back to a savepoint, so tx stays
// usable. A nil tx means a transaction of its own. With a queue outside the database
// (queue.Publisher, such as RabbitMQ) the first steps are published once tx commits: the
// PostgreSQL store announces the commit to the engine elected for maintenance, and the sweeper
// publishes them after Config.RepublishAfter if that announcement is lost.
func (e *Engine) CreateTaskTx(ctx context.Context, tx pgx.Tx, req TaskRequest) (task *Task, err error) {
	r, err := e.template(req.Namespace, req.Name, req.Version)
	if err != nil {
		return nil, err
	}
	tel := e.core.Telemetry()
	ctx, span, traceParent := tel.StartCreate(ctx, r.t.Namespace, r.t.Name, r.t.Version)
	defer func() {
		failed := err
		if errors.Is(err, ErrDuplicateTask) {
			failed = nil // the creation span of a duplicate ends well: the existing task is returned
		}
		engine.EndSpan(span, failed)
	}()
	if err := validateOrigin(r.t.Key(), &req); err != nil {
		return nil, err
	}
	if err := e.core.CheckSchema(ctx); err != nil {
		return nil, err
	}
	ctxJSON, err := e.encodeContext(r, req.Context)
	if err != nil {
		return nil, err
	}
	if err := validateRequest(r, &req); err != nil {
		return nil, err
	}
	runAt, err := scheduledStart(r.t.Key(), req.RunAt, e.now())
	if err != nil {
		return nil, err
	}
	identity, err := identityHash(r.t, ctxJSON, req.IdempotencyKey)
	if err != nil {
		return nil, err
	}
	taskID, err := uuid.NewV7()
	if err != nil {
		return nil, err
	}
	// Steps created at run time (branches, batch workers, convergence) are left out; the
	// parents of a step created now are created now too.
	steps := make([]store.NewStep, 0, len(r.t.Steps))
	pos := make(map[int]int, len(r.t.Steps))
	for _, i := range r.compiled.Graph.TopoOrder() {
		s := &r.compiled.Steps[i]
		if r.compiled.Dynamic[s.Name] {
			continue
		}
		ns, err := s.NewStep(s.Name)
		if err != nil {
			return nil, err
		}
		for _, parent := range r.compiled.Graph.Parents(i) {
			ns.Parents = append(ns.Parents, pos[parent])
		}
		pos[i] = len(steps)
		steps = append(steps, ns)
	}
	enq := e.core.NewEnqueuer()
	_, publishes := e.queue.(queue.Publisher)
	// A worker of this engine with a slot free runs the first step at once: the store claims it in
	// the creation's transaction (engine.RootClaim). Not in the caller's transaction, whose commit
	// only the caller sees, nor for a scheduled start.
	var rc *engine.RootClaim
	if tx == nil && runAt.IsZero() {
		var roots []store.StepRef
		for _, st := range steps {
			if len(st.Parents) == 0 && !st.Held {
				roots = append(roots, store.StepRef{TaskID: taskID, StepID: st.StepID, TaskName: r.t.Name, Version: r.t.Version,
					Name: st.TemplateStep, Handler: st.Handler})
			}
		}
		rc = e.core.ReserveRoot(r.t.Namespace, roots)
	}
	defer rc.Start(nil) // gives the slot back unless the claimed step started
	res, err := e.store.CreateTask(ctx, tx, store.CreateTaskParams{
		TaskID: taskID, Namespace: r.t.Namespace, Name: r.t.Name, Version: r.t.Version,
		Context: ctxJSON, IdentityHash: identity, IdempotencyKey: req.IdempotencyKey,
		Priority: req.Priority, CorrelationID: req.CorrelationID, Tags: req.Tags,
		Initiator: req.Initiator, SourceSystem: req.SourceSystem, Reason: req.Reason, TraceParent: traceParent,
		Steps: steps, Enqueuer: enq, OwnedQueue: e.core.OwnsQueue(), Template: r.compiled.RegistryRow(),
		AnnounceCommit: tx != nil && publishes, RunAt: runAt, PriorityCredit: e.core.PriorityCredit(req.Priority),
		ClaimRoot: rc.Params(),
	})
	if err != nil {
		rc.Abandon(taskID)
		return nil, fmt.Errorf("create task %s: %w", r.t.Key(), err)
	}
	rc.Start(res.Claimed)
	if tx == nil {
		enq.Flush(ctx)
	}
	// With a queue outside the database and the caller's transaction, nothing may be published
	// before that transaction commits, which only the caller and the database see: a store that is
	// a store.CommitListener announces the commit to the elected engine, which publishes the first
	// steps then; otherwise (or if the announcement is lost) the sweeper publishes them once they
	// have waited Config.RepublishAfter.
	if tx == nil {
		r.compiled.MarkPersisted() // committed: later creations need not write the registry row
	}
	task = taskFromStore(&res.Task)
	task.Steps = stepsFromStore(res.Steps)
	task.RunAt = scheduledAt(task)
	if res.Duplicate {
		return task, &DuplicateTaskError{ExistingID: res.Task.ID, Identity: identity}
	}
	tel.TaskCreated(ctx, r.t.Namespace)
	if span != nil {
		span.SetAttributes(engine.AttrTaskID.String(task.ID.String()))
	}
	e.log.V(1).Info("task created", "task", task.ID, "template", r.t.Key(), "steps", len(steps))
	return task, nil
}

// validateOrigin checks the request's priority and its origin fields (Initiator, SourceSystem,
// Reason) against what every store can keep, so that a bad value is an *InputError before
// anything is written rather than a database error.
func validateOrigin(template string, req *TaskRequest) error {
	var violations []string
	for _, f := range []struct{ name, value string }{
		{"initiator", req.Initiator}, {"source_system", req.SourceSystem}, {"reason", req.Reason},
	} {
		switch {
		case len(f.value) > MaxOriginBytes:
			violations = append(violations, fmt.Sprintf("%s is %d bytes, limit %d", f.name, len(f.value), MaxOriginBytes))
		case !utf8.ValidString(f.value):
			violations = append(violations, f.name+" is not valid UTF-8")
		case strings.IndexByte(f.value, 0) >= 0:
			violations = append(violations, f.name+" holds a NUL byte")
		}
	}
	if req.Priority < math.MinInt32 || req.Priority > math.MaxInt32 {
		violations = append(violations, fmt.Sprintf("priority %d is outside [%d, %d]", req.Priority, math.MinInt32, math.MaxInt32))
	}
	if len(violations) > 0 {
		return &InputError{Template: template, Violations: violations}
	}
	return nil
}

// encodeContext turns the request's context into a JSON object and checks it against the size
// limit and the template's input schema.
func (e *Engine) encodeContext(r *registered, v any) (json.RawMessage, error) {
	var raw []byte
	switch c := v.(type) {
	case nil:
		raw = []byte("{}")
	case json.RawMessage:
		raw = c
	case []byte:
		raw = c
	default:
		var err error
		if raw, err = json.Marshal(v); err != nil {
			return nil, &InputError{Template: r.t.Key(), Violations: []string{"context is not JSON-encodable: " + err.Error()}}
		}
	}
	if len(raw) > e.cfg.MaxPayloadBytes {
		return nil, fmt.Errorf("%w: context of %d bytes, limit %d", ErrPayloadTooLarge, len(raw), e.cfg.MaxPayloadBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil || dec.More() {
		msg := "context is not valid JSON"
		if err != nil {
			msg += ": " + err.Error()
		}
		return nil, &InputError{Template: r.t.Key(), Violations: []string{msg}}
	}
	if _, ok := doc.(map[string]any); !ok {
		return nil, &InputError{Template: r.t.Key(), Violations: []string{"context must be a JSON object"}}
	}
	// What PostgreSQL's jsonb refuses (which encoding/json's decoder lets through or cannot tell),
	// before the schema, whose validator would work through a number of a million digits.
	if err := jsonsafe.Check(raw); err != nil {
		return nil, &InputError{Template: r.t.Key(), Violations: []string{"context cannot be stored: " + err.Error()}}
	}
	if r.schema != nil {
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			return nil, &InputError{Template: r.t.Key(), Violations: []string{err.Error()}}
		}
		if err := r.schema.Validate(inst); err != nil {
			return nil, &InputError{Template: r.t.Key(), Violations: schemaViolations(err)}
		}
	}
	return raw, nil
}

// MaxCorrelationIDBytes bounds TaskRequest.CorrelationID, which is indexed (a B-tree entry holds
// at most about 2.7 kB).
const MaxCorrelationIDBytes = 1024

// validateRequest checks the request's other text fields (validateOrigin checks Initiator,
// SourceSystem and Reason), which are stored as text: no NUL character, valid UTF-8, and a
// correlation ID that fits its index. Every problem is listed, each naming its field.
func validateRequest(r *registered, req *TaskRequest) error {
	var out []string
	text := func(field, v string) {
		if err := jsonsafe.CheckText(v); err != nil {
			out = append(out, field+": "+err.Error())
		}
	}
	text("idempotency_key", req.IdempotencyKey)
	text("correlation_id", req.CorrelationID)
	if len(req.CorrelationID) > MaxCorrelationIDBytes {
		out = append(out, fmt.Sprintf("correlation_id: %d bytes, over the limit of %d", len(req.CorrelationID), MaxCorrelationIDBytes))
	}
	for i, tag := range req.Tags {
		text(fmt.Sprintf("tags[%d]", i), tag)
	}
	if len(out) > 0 {
		return &InputError{Template: r.t.Key(), Violations: out}
	}
	return nil
}

// schemaViolations flattens a validation error into one line per failing location.
func schemaViolations(err error) []string {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return []string{err.Error()}
	}
	var out []string
	var walk func(*jsonschema.ValidationError)
	walk = func(v *jsonschema.ValidationError) {
		if len(v.Causes) == 0 {
			loc := "/" + strings.Join(v.InstanceLocation, "/")
			out = append(out, fmt.Sprintf("at %s: %s", loc, v.ErrorKind.LocalizedString(message.NewPrinter(language.English))))
			return
		}
		for _, c := range v.Causes {
			walk(c)
		}
	}
	walk(ve)
	return out
}

// identityHash computes the task's identity under the template's strategy.
func identityHash(t *Template, ctxJSON []byte, key string) (string, error) {
	h := sha256.New()
	h.Write([]byte(t.Key()))
	h.Write([]byte{0})
	switch {
	case key != "":
		h.Write([]byte("key:" + key))
	case t.Identity == IdentityCallerProvided:
		return "", &InputError{Template: t.Key(), Violations: []string{"the template's identity strategy is caller_provided: set TaskRequest.IdempotencyKey"}}
	case t.Identity == IdentityAlwaysUnique:
		return uuid.NewString(), nil
	default:
		canon, err := canonicalJSON(ctxJSON)
		if err != nil {
			return "", err
		}
		h.Write(canon)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// canonicalJSON re-encodes JSON with sorted object keys, no insignificant whitespace, and each
// number in one canonical form of its decimal value (canonicalNumber), so that {"amount":1} and
// {"amount":1.0} have one identity.
func canonicalJSON(raw []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return json.Marshal(canonicalNumbers(v)) // encoding/json sorts map keys
}

// canonicalNumbers replaces, in place, every number of a decoded document by its canonical form.
func canonicalNumbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		return json.Number(canonicalNumber(string(x)))
	case map[string]any:
		for k, e := range x {
			x[k] = canonicalNumbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = canonicalNumbers(e)
		}
	}
	return v
}

// Bounds of canonicalNumber's plain notation: an integer keeps up to plainMaxTrailingZeros zeros
// after its significant digits, and a fraction up to plainMaxLeadingZeros zeros after the point
// (down to 1e-6, as encoding/json writes a float64); beyond them, scientific notation keeps the
// form short whatever the exponent.
const (
	plainMaxTrailingZeros = 20
	plainMaxLeadingZeros  = 5
)

// canonicalNumber returns one form for every way of writing a JSON number's decimal value:
// 1, 1.0, 1.00, 1e0 and 10e-1 give "1"; 0, -0, 0.0 and 0e7 give "0"; 1.50 gives "1.5"; 1e2 gives
// "100"; 1e21 and 10e20 give "1e21". It works on the decimal literal (the exponent as a big
// integer), not on a float64, so it never overflows or rounds: 12345678901234567890 and
// 12345678901234567891 stay distinct, and 1e999999999999999999999 is kept exactly. Numbers
// written as plain integers or plain decimals in encoding/json's range keep their form, so their
// identity is unchanged. lit must be a valid JSON number (the decoder has checked it).
func canonicalNumber(lit string) string {
	neg := strings.HasPrefix(lit, "-")
	lit = strings.TrimPrefix(lit, "-")
	mant, expLit, hasExp := strings.Cut(strings.ToLower(lit), "e")
	intPart, frac, _ := strings.Cut(mant, ".")
	exp := new(big.Int)
	if hasExp {
		if _, ok := exp.SetString(strings.TrimPrefix(expLit, "+"), 10); !ok {
			return lit // not a JSON number; the decoder does not let one through
		}
	}
	// The value is digits × 10^exp.
	digits := strings.TrimLeft(intPart+frac, "0")
	exp.Sub(exp, big.NewInt(int64(len(frac))))
	if digits == "" {
		return "0"
	}
	trimmed := strings.TrimRight(digits, "0")
	exp.Add(exp, big.NewInt(int64(len(digits)-len(trimmed))))
	digits = trimmed
	n := len(digits)
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	// adj is the exponent of the leading digit: the value is d.ddd × 10^adj.
	adj := new(big.Int).Add(exp, big.NewInt(int64(n-1)))
	switch {
	case exp.Sign() >= 0 && exp.Cmp(big.NewInt(plainMaxTrailingZeros)) <= 0:
		b.WriteString(digits)
		b.WriteString(strings.Repeat("0", int(exp.Int64())))
	case exp.Sign() < 0 && adj.Cmp(big.NewInt(-plainMaxLeadingZeros-1)) >= 0:
		point := n + int(exp.Int64()) // digits before the point; exp >= -(n+plainMaxLeadingZeros)
		if point > 0 {
			b.WriteString(digits[:point])
			b.WriteByte('.')
			b.WriteString(digits[point:])
		} else {
			b.WriteString("0.")
			b.WriteString(strings.Repeat("0", -point))
			b.WriteString(digits)
		}
	default:
		b.WriteByte(digits[0])
		if n > 1 {
			b.WriteByte('.')
			b.WriteString(digits[1:])
		}
		b.WriteByte('e')
		b.WriteString(adj.String())
	}
	return b.String()
}

// GetTask returns a task with all its steps.
func (e *Engine) GetTask(ctx context.Context, id uuid.UUID) (*Task, error) {
	if r, ok := e.store.(store.TaskWithStepsReader); ok {
		t, steps, err := r.GetTaskWithSteps(ctx, id)
		if err != nil {
			return nil, mapStoreErr(err, id)
		}
		return e.taskWith(t, steps), nil
	}
	t, err := e.store.GetTask(ctx, id)
	if err != nil {
		return nil, mapStoreErr(err, id)
	}
	return e.withSteps(ctx, t)
}

// taskWith is the task t with its steps.
func (e *Engine) taskWith(t *store.Task, steps []store.Step) *Task {
	task := taskFromStore(t)
	task.Steps = stepsFromStore(steps)
	task.RunAt = scheduledAt(task)
	return task
}

// withSteps returns the task t with its steps, as read now.
func (e *Engine) withSteps(ctx context.Context, t *store.Task) (*Task, error) {
	steps, err := e.store.GetSteps(ctx, t.ID)
	if err != nil {
		return nil, err
	}
	return e.taskWith(t, steps), nil
}

// ListOptions filters and pages ListTasks. Zero fields do not filter.
type ListOptions struct {
	Namespace, Name string
	States          []TaskState
	CreatedAfter    time.Time
	CreatedBefore   time.Time
	// Limit caps the page (default 100).
	Limit int
	// After continues the listing after this task (the last one of the previous page).
	After uuid.UUID
	// Scheduled keeps only the tasks waiting for their scheduled start (TaskRequest.RunAt).
	Scheduled bool
}

// ListTasks returns tasks, newest first, without their steps.
func (e *Engine) ListTasks(ctx context.Context, o ListOptions) ([]Task, error) {
	ts, err := e.store.ListTasks(ctx, store.ListTasksParams{
		Namespace: o.Namespace, Name: o.Name, States: o.States, CreatedAfter: o.CreatedAfter,
		CreatedBefore: o.CreatedBefore, Limit: o.Limit, AfterID: o.After, Scheduled: o.Scheduled,
	})
	if err != nil {
		return nil, err
	}
	out := make([]Task, len(ts))
	for i := range ts {
		out[i] = *taskFromStore(&ts[i])
	}
	return out, nil
}

// Transition is one entry of a task's audit trail: a task's or a step's change of state.
type Transition struct {
	TaskID uuid.UUID
	// StepID and StepName are zero for the task's own transitions.
	StepID   uuid.UUID
	StepName string
	// From is "" for the first transition.
	From, To, Event string
	// Metadata holds the worker, the attempt, the error or the operator's reason.
	Metadata json.RawMessage
	At       time.Time
}

// Transitions returns the audit trail of a task and its steps, oldest first.
func (e *Engine) Transitions(ctx context.Context, taskID uuid.UUID) ([]Transition, error) {
	if _, err := e.store.GetTask(ctx, taskID); err != nil {
		return nil, mapStoreErr(err, taskID)
	}
	trs, err := e.store.Transitions(ctx, taskID)
	if err != nil {
		return nil, err
	}
	out := make([]Transition, len(trs))
	for i, t := range trs {
		out[i] = Transition{TaskID: t.TaskID, StepID: t.StepID, StepName: t.StepName, From: t.From, To: t.To,
			Event: t.Event, Metadata: t.Metadata, At: t.CreatedAt}
	}
	return out, nil
}

// WaitTask blocks until the task is settled, or ctx ends, and returns it with its steps. A task
// is settled when it is terminal (complete, error, cancelled, resolved_manually), or when it is
// blocked_by_failures with no step in flight: none enqueued, in_progress or
// enqueued_for_orchestration. Such steps still run in a blocked task and record their outcomes,
// so WaitTask waits for the last of them and returns their results. Steps waiting_for_retry and
// pending steps of a blocked task are not in flight: they stay as they are until an operator's fix
// (RetryStep, ResolveStep, CompleteStep) resumes the task, so WaitTask does not wait for them.
// An enqueued step whose handler no running engine has is in flight too: it waits for an engine
// with that handler (see Engine.Health), and so does WaitTask; give ctx a deadline when that can
// happen.
//
// A task settled by this engine (its workers, its operator calls, its cancellations, and a
// cancellation announced by another process) wakes WaitTask at once. One settled elsewhere is seen
// by polling: the task is read again after 25 ms, 75 ms, 175 ms and so on, the wait doubling up to
// half a second.
func (e *Engine) WaitTask(ctx context.Context, id uuid.UUID) (*Task, error) {
	ch := e.core.Waiters().Subscribe(id)
	defer e.core.Waiters().Unsubscribe(id, ch)
	delay := waitPollFirst
	both, _ := e.store.(store.TaskWithStepsReader)
	notified := false
	for {
		// After a notification the task has most likely settled: its steps are read with it, in
		// one round trip where the store can; a poll reads the task alone first.
		if notified && both != nil {
			t, steps, err := both.GetTaskWithSteps(ctx, id)
			if err != nil {
				return nil, mapStoreErr(err, id)
			}
			if statemachine.AtRest(t.State, t.StepsActive) {
				return e.taskWith(t, steps), nil
			}
		} else {
			t, err := e.store.GetTask(ctx, id)
			if err != nil {
				return nil, mapStoreErr(err, id)
			}
			if statemachine.AtRest(t.State, t.StepsActive) {
				return e.withSteps(ctx, t)
			}
		}
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-ch:
			timer.Stop()
			notified = true
		case <-timer.C:
			delay = min(delay*2, waitPollMax)
			notified = false
		}
	}
}

// WaitTask's polls for a settlement it is not told of: the first after waitPollFirst, then
// doubling up to waitPollMax. Each poll is a read of the task; this engine's own settlements wake
// the waiter without one, so the first poll is not hurried (at 5 ms, a diamond task's waiter read
// the task about six times, a sixth of the bench's server time).
const (
	waitPollFirst = 25 * time.Millisecond
	waitPollMax   = 500 * time.Millisecond
)

// CancelTask cancels a task: its unfinished steps are cancelled and handlers running them see
// their context cancelled, with the cause ErrTaskCancelled: at once in this process, and in other
// processes as soon as the store's announcement reaches them (store.EventListener), or at their
// next heartbeat if it is lost. It returns ErrNotAllowed for a task that already finished, and a
// *ValueError (errors.Is ErrInvalidValue) for a reason holding a NUL character or bytes that are
// not UTF-8.
func (e *Engine) CancelTask(ctx context.Context, id uuid.UUID, reason string) error {
	if err := checkText("reason", reason); err != nil {
		return err
	}
	res, err := e.store.CancelTask(ctx, store.CancelTaskParams{TaskID: id, Reason: reason})
	if err != nil {
		return mapStoreErr(err, id)
	}
	e.core.CancelRuns(id)
	e.core.Waiters().Notify(res.TaskID)
	e.core.WakeParent(ctx, res.TaskID) // a child task's parent sees the cancellation at once (child.go)
	e.core.Telemetry().TaskCancelled(ctx)
	return nil
}

// CancelTaskTx is CancelTask inside the caller's transaction: the task is cancelled only if tx
// commits, and its handlers, in this process as in others, are told once it has (the store's
// announcement, or their next heartbeat); so is a child task's parent (the announcement, heard by
// the elected engine, or its next poll). A refusal (ErrNotAllowed for a finished task, say)
// rolls back to a savepoint, so tx stays usable. A store that cannot join a transaction
// (store/memory) returns ErrNotTransactional.
func (e *Engine) CancelTaskTx(ctx context.Context, tx pgx.Tx, id uuid.UUID, reason string) error {
	if err := checkText("reason", reason); err != nil {
		return err
	}
	ts, ok := e.store.(store.Transactional)
	if !ok || tx == nil {
		return fmt.Errorf("cancel task %s: %w", id, ErrNotTransactional)
	}
	if _, err := ts.CancelTaskTx(ctx, tx, store.CancelTaskParams{TaskID: id, Reason: reason}); err != nil {
		return mapStoreErr(err, id)
	}
	return nil
}

func mapStoreErr(err error, id uuid.UUID) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("%w: %s", ErrTaskNotFound, id)
	case errors.Is(err, store.ErrConflict):
		return fmt.Errorf("%w: %v", ErrNotAllowed, err)
	}
	return err
}

func taskFromStore(t *store.Task) *Task {
	return &Task{ID: t.ID, Namespace: t.Namespace, Name: t.Name, Version: t.Version, State: t.State,
		Context: t.Context, IdentityHash: t.IdentityHash, IdempotencyKey: t.IdempotencyKey, Priority: t.Priority,
		CorrelationID: t.CorrelationID, Tags: t.Tags, Initiator: t.Initiator, SourceSystem: t.SourceSystem,
		Reason: t.Reason, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt, CompletedAt: t.CompletedAt}
}

func stepsFromStore(steps []store.Step) []StepInfo {
	out := make([]StepInfo, len(steps))
	for i := range steps {
		out[i] = stepFromStore(&steps[i])
	}
	return out
}

func stepFromStore(s *store.Step) StepInfo {
	info := StepInfo{ID: s.ID, Name: s.Name, Handler: s.Handler, Type: StepType(s.Type), State: s.State,
		Attempts: s.Attempts, MaxAttempts: s.MaxAttempts, Result: s.Result, NextRetryAt: s.NextRetryAt,
		CreatedAt: s.CreatedAt, StartedAt: s.StartedAt, CompletedAt: s.CompletedAt}
	if len(s.LastError) > 0 {
		var se StepFailure
		if json.Unmarshal(s.LastError, &se) == nil {
			info.LastError = &se
		}
	}
	return info
}

// Failure returns the attempt's error record carried by a failing step transition
// (fail_retryable, fail_permanent), or nil. Transition metadata holds, where they apply:
// worker_id, attempt, error (a StepFailure), retry_in_ms, reason and operator.
func (t *Transition) Failure() *StepFailure {
	var meta struct {
		Error *StepFailure `json:"error"`
	}
	if len(t.Metadata) == 0 || json.Unmarshal(t.Metadata, &meta) != nil {
		return nil
	}
	return meta.Error
}

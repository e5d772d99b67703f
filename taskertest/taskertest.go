// Package taskertest runs workflows in unit tests: a template with real or stub handlers on the
// in-memory backend (store/memory and queue/memqueue), with no database, in a few lines.
//
//	func TestOrder(t *testing.T) {
//		h := taskertest.New(t, taskertest.Template(t, orderYAML), taskertest.Handlers{
//			"validate_order": validateOrder, // the real handler
//			"charge_card":    taskertest.Return(map[string]any{"charged": true}), // a stub
//		})
//		task := h.Run(context.Background(), Order{ID: 7})
//		h.RequireState(task, tasker.TaskComplete)
//		h.RequireResult(task, "charge_card", map[string]any{"charged": true})
//	}
//
// New starts the engine's workers, which run until the test ends: in t.Cleanup they get
// StopGraceDefault to finish the steps already enqueued, then stop. The
// engine is the real one: states, transitions, retries with backoff, timeouts, decisions, batches,
// cancellation and operator actions behave as they do on PostgreSQL. WithFastRetries drops the
// backoff between attempts so that tests of retries do not wait; WithClock puts the harness on a
// clock the test moves by hand (NewClock), for scheduled starts, cron schedules (WithSchedules),
// durable sleeps, signals' timeouts and backoffs that take hours on the clock and milliseconds of
// real time.
package taskertest

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/uuid"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
	"github.com/tasker-systems/tasker/store/memory"
)

// WaitTimeoutDefault bounds Run and Wait when their context has no deadline.
const WaitTimeoutDefault = 30 * time.Second

// StopGraceDefault is how long the harness lets steps already enqueued or running finish when the
// test ends, before it stops the workers (which then cut off what still runs after the engine's
// ShutdownTimeout, one second by default here).
const StopGraceDefault = 2 * time.Second

// T is the part of testing.TB the harness uses; *testing.T and *testing.B satisfy it.
type T interface {
	Helper()
	Cleanup(func())
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// Handlers binds handler names (a template's handler.callable) to functions: real handlers, or
// stubs such as Return and FailTimes. A tasker.HandlerFunc fits, and so does a method value such
// as myHandler.Handle.
type Handlers map[string]func(ctx context.Context, s *tasker.Step) (any, error)

// Option configures New.
type Option func(*options)

type options struct {
	cfg         tasker.Config
	fastRetries bool
	templates   []*tasker.Template
	clock       *Clock
	schedules   []tasker.Schedule
}

// WithTemplates registers more templates before the workers start, so that their namespaces are
// served too (for example the templates a decision's branches belong to in another namespace).
func WithTemplates(tmpls ...*tasker.Template) Option {
	return func(o *options) { o.templates = append(o.templates, tmpls...) }
}

// WithConfig adjusts the engine's configuration (Store, Queue and Clock are the harness's own:
// see WithClock).
func WithConfig(fn func(*tasker.Config)) Option { return func(o *options) { fn(&o.cfg) } }

// WithLogger sends the engine's logs to l (they are discarded by default).
func WithLogger(l logr.Logger) Option { return func(o *options) { o.cfg.Logger = l } }

// WithEnvironment applies the templates' overrides for the named environment (such as "test").
func WithEnvironment(name string) Option { return func(o *options) { o.cfg.Environment = name } }

// WithClock runs the engine, the memory store and its queue on clk rather than the system clock:
// due times (a scheduled start, a retry's backoff, a parked step's wake-up, a cron run, a handler's
// timeout) and the times recorded are read from it, and clk.Advance moves them (see Clock); leases
// stay on the system clock. Harness.Clock is clk.
func WithClock(clk *Clock) Option { return func(o *options) { o.clock = clk } }

// WithSchedules adds cron schedules (Engine.AddSchedule) before the workers start, as the engine
// needs; New then waits for the scheduler's first pass, so that with WithClock the schedules count
// from the clock's time at New. An invalid schedule fails the test.
func WithSchedules(s ...tasker.Schedule) Option {
	return func(o *options) { o.schedules = append(o.schedules, s...) }
}

// WithFastRetries retries failed steps without their backoff (as with backoff: none), so that a
// test of retries does not wait; a handler's tasker.RetryAfter delay still applies, and the number
// of attempts is unchanged.
func WithFastRetries() Option { return func(o *options) { o.fastRetries = true } }

// Harness is an engine on a fresh memory store, with its workers running for the test's lifetime.
type Harness struct {
	// Engine is the engine under test: create tasks, cancel them, act as an operator.
	Engine *tasker.Engine
	// Store is its memory store.
	Store *memory.Store
	// Clock is the clock given with WithClock, or nil (the system clock).
	Clock *Clock

	t           T
	fastRetries bool
	mu          sync.Mutex
	calls       map[string]int // handler runs by step name
	templates   [][2]string    // the registered templates' namespaces and names
}

// New returns a harness running tmpl (and any template added with Register) with the given
// handlers; a nil tmpl registers nothing. The workers start at once and stop when the test ends.
// An invalid template or an engine that cannot start fails the test.
func New(t T, tmpl *tasker.Template, handlers Handlers, opts ...Option) *Harness {
	t.Helper()
	o := options{cfg: tasker.Config{Lease: 5 * time.Second, ShutdownTimeout: time.Second}}
	for _, opt := range opts {
		opt(&o)
	}
	var st *memory.Store
	if o.clock != nil {
		st = memory.New(memory.WithClock(o.clock))
		o.cfg.Clock = o.clock
	} else {
		st = memory.New()
		o.cfg.Clock = nil
	}
	o.cfg.Store, o.cfg.Queue = st, nil
	eng, err := tasker.NewEngine(o.cfg)
	if err != nil {
		t.Fatalf("taskertest: %v", err)
		return nil
	}
	h := &Harness{Engine: eng, Store: st, Clock: o.clock, t: t, fastRetries: o.fastRetries, calls: map[string]int{}}
	for _, r := range append([]*tasker.Template{tmpl}, o.templates...) {
		if r != nil {
			h.Register(r)
		}
	}
	for name, fn := range handlers {
		h.Handle(name, fn)
	}
	for _, s := range o.schedules {
		if err := eng.AddSchedule(s); err != nil {
			t.Fatalf("taskertest: add schedule %s: %v", s.Name, err)
			return nil
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.RunWorkers(ctx) }()
	t.Cleanup(func() {
		h.idle(StopGraceDefault)
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("taskertest: workers: %v", err)
			}
		case <-time.After(time.Minute):
			t.Errorf("taskertest: the workers did not stop within a minute of the test's end")
		}
	})
	if len(o.schedules) > 0 {
		h.awaitScheduler()
	}
	return h
}

// awaitScheduler waits until the scheduler has made its first pass (the engine leads and reads
// the schedules), up to WaitTimeoutDefault.
func (h *Harness) awaitScheduler() {
	h.t.Helper()
	ctx := context.Background()
	for deadline := time.Now().Add(WaitTimeoutDefault); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		health, err := h.Engine.Health(ctx)
		if err != nil {
			continue
		}
		for _, s := range health.Services {
			if s.Name == "scheduler" && s.Runs > 0 {
				return
			}
		}
	}
	h.t.Fatalf("taskertest: the scheduler made no pass within %s", WaitTimeoutDefault)
}

// idle waits, up to grace, until no step of an unfinished task is enqueued or in progress, so that
// the steps a test set going finish before the workers stop (rather than being given back).
func (h *Harness) idle(grace time.Duration) {
	ctx := context.Background()
	unfinished := []tasker.TaskState{statemachine.TaskPending, statemachine.TaskInitializing, statemachine.TaskEnqueuingSteps,
		statemachine.TaskStepsInProcess, statemachine.TaskEvaluatingResults, statemachine.TaskWaitingForDependencies,
		statemachine.TaskWaitingForRetry, statemachine.TaskBlockedByFailures}
	for deadline := time.Now().Add(grace); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		busy := false
		tasks, err := h.Store.ListTasks(ctx, store.ListTasksParams{States: unfinished, Limit: 1 << 30})
		if err != nil {
			return
		}
		for _, task := range tasks {
			steps, err := h.Store.GetSteps(ctx, task.ID)
			if err != nil {
				return
			}
			for _, s := range steps {
				busy = busy || s.State == statemachine.StepEnqueued || s.State == statemachine.StepInProgress
			}
		}
		if !busy {
			return
		}
	}
}

// Template parses a template in Tasker Core's YAML layout, failing the test when it is invalid.
func Template(t T, yaml string) *tasker.Template {
	t.Helper()
	tmpl, err := tasker.ParseTemplate([]byte(yaml))
	if err != nil {
		t.Fatalf("taskertest: %v", err)
		return nil
	}
	return tmpl
}

// Register adds a template (with WithFastRetries, without its backoff). The workers serve the
// namespaces registered when New returns: a template in another namespace goes in WithTemplates.
func (h *Harness) Register(tmpl *tasker.Template) {
	h.t.Helper()
	if h.fastRetries {
		tmpl = tmpl.WithDefaults()
		for i := range tmpl.Steps {
			tmpl.Steps[i].Retry.Backoff = tasker.BackoffNone
		}
		for _, env := range tmpl.Environments {
			for i := range env.Steps {
				env.Steps[i].Retry.Backoff = "" // keep none
			}
		}
	}
	if err := h.Engine.Register(tmpl); err != nil {
		h.t.Fatalf("taskertest: register %s: %v", tmpl.Key(), err)
		return
	}
	key := [2]string{tmpl.Namespace, tmpl.Name}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !slices.Contains(h.templates, key) {
		h.templates = append(h.templates, key)
	}
}

// Handle binds (or replaces) a handler; its runs are counted for Calls.
func (h *Harness) Handle(name string, fn func(ctx context.Context, s *tasker.Step) (any, error)) {
	h.Engine.HandleFunc(name, func(ctx context.Context, s *tasker.Step) (any, error) {
		h.mu.Lock()
		h.calls[s.Name]++
		h.mu.Unlock()
		return fn(ctx, s)
	})
}

// Calls returns how many times a handler ran for the named step, across every task of the
// harness.
func (h *Harness) Calls(step string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls[step]
}

// Run creates a task of the harness's only template (see RunRequest for several) with the given
// context, and waits until it settles: complete, error, cancelled, resolved_manually, or
// blocked_by_failures waiting for an operator. It returns the task with its steps; a failure to
// create it, or a task that does not settle in time, fails the test.
func (h *Harness) Run(ctx context.Context, input any) *tasker.Task {
	h.t.Helper()
	return h.Wait(ctx, h.Start(ctx, input).ID)
}

// RunRequest is Run for a full request: another template, a version, an idempotency key.
func (h *Harness) RunRequest(ctx context.Context, req tasker.TaskRequest) *tasker.Task {
	h.t.Helper()
	return h.Wait(ctx, h.StartRequest(ctx, req).ID)
}

// Start creates a task of the harness's only template without waiting for it, for tests that act
// while it runs (CancelTask, an operator's fix); Wait waits for it.
func (h *Harness) Start(ctx context.Context, input any) *tasker.Task {
	h.t.Helper()
	ns, name := h.only()
	return h.StartRequest(ctx, tasker.TaskRequest{Namespace: ns, Name: name, Context: input})
}

// StartRequest is Start for a full request.
func (h *Harness) StartRequest(ctx context.Context, req tasker.TaskRequest) *tasker.Task {
	h.t.Helper()
	task, err := h.Engine.CreateTask(ctx, req)
	if err != nil {
		h.t.Fatalf("taskertest: create task %s/%s: %v", req.Namespace, req.Name, err)
		return nil
	}
	return task
}

// only returns the key of the single registered template.
func (h *Harness) only() (string, string) {
	h.t.Helper()
	h.mu.Lock()
	keys := slices.Clone(h.templates)
	h.mu.Unlock()
	if len(keys) != 1 {
		h.t.Fatalf("taskertest: Run and Start need exactly one registered template, found %d %v; use RunRequest", len(keys), keys)
		return "", ""
	}
	return keys[0][0], keys[0][1]
}

// Wait waits until the task settles (see Run) and returns it with its steps. When ctx has no
// deadline, WaitTimeoutDefault applies; a task that does not settle fails the test with its steps'
// states.
func (h *Harness) Wait(ctx context.Context, id uuid.UUID) *tasker.Task {
	h.t.Helper()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, WaitTimeoutDefault)
		defer cancel()
	}
	task, err := h.Engine.WaitTask(ctx, id)
	if err != nil {
		msg := ""
		if got, gerr := h.Engine.GetTask(context.Background(), id); gerr == nil {
			msg = "\n" + Describe(got)
		}
		h.t.Fatalf("taskertest: wait for task %s: %v%s", id, err, msg)
		return nil
	}
	return task
}

// WaitStep waits until the task's named step is in one of the given states and returns the task
// with its steps: for example until a step has parked (StepWaitingForRetry: a durable sleep, a
// signal's wait, a retry's backoff), before a test moves its Clock. When ctx has no deadline,
// WaitTimeoutDefault applies; a step that does not get there fails the test with the task's
// steps.
func (h *Harness) WaitStep(ctx context.Context, id uuid.UUID, step string, states ...tasker.StepState) *tasker.Task {
	h.t.Helper()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, WaitTimeoutDefault)
		defer cancel()
	}
	var task *tasker.Task
	for {
		var err error
		task, err = h.Engine.GetTask(ctx, id)
		if err == nil {
			if s, ok := task.Step(step); ok && slices.Contains(states, s.State) {
				return task
			}
		}
		select {
		case <-ctx.Done():
			msg := ""
			if task != nil {
				msg = "\n" + Describe(task)
			}
			h.t.Fatalf("taskertest: wait for step %q of task %s to be %v: %v%s", step, id, states, ctx.Err(), msg)
			return nil
		case <-time.After(time.Millisecond):
		}
	}
}

// RequireState fails the test unless the task is in the given state.
func (h *Harness) RequireState(task *tasker.Task, want tasker.TaskState) {
	h.t.Helper()
	if task.State != want {
		h.t.Fatalf("taskertest: task %s/%s is %s, want %s\n%s", task.Namespace, task.Name, task.State, want, Describe(task))
	}
}

// RequireStep fails the test unless the task has the named step in the given state, and returns
// the step.
func (h *Harness) RequireStep(task *tasker.Task, name string, want tasker.StepState) *tasker.StepInfo {
	h.t.Helper()
	s, ok := task.Step(name)
	if !ok {
		h.t.Fatalf("taskertest: task %s/%s has no step %q\n%s", task.Namespace, task.Name, name, Describe(task))
		return nil
	}
	if s.State != want {
		h.t.Fatalf("taskertest: step %q is %s, want %s\n%s", name, s.State, want, Describe(task))
	}
	return s
}

// RequireResult fails the test unless the named step's result equals want once both are JSON:
// want may be any JSON-encodable value, such as a map, a struct or a number.
func (h *Harness) RequireResult(task *tasker.Task, step string, want any) {
	h.t.Helper()
	s, ok := task.Step(step)
	if !ok {
		h.t.Fatalf("taskertest: task %s/%s has no step %q\n%s", task.Namespace, task.Name, step, Describe(task))
		return
	}
	wantJSON, err := json.Marshal(want)
	if err != nil {
		h.t.Fatalf("taskertest: the expected result of %q is not JSON-encodable: %v", step, err)
		return
	}
	var got, exp any
	if len(s.Result) == 0 || json.Unmarshal(s.Result, &got) != nil {
		h.t.Fatalf("taskertest: step %q has no result (it is %s), want %s", step, s.State, wantJSON)
		return
	}
	_ = json.Unmarshal(wantJSON, &exp)
	if !reflect.DeepEqual(got, exp) {
		h.t.Fatalf("taskertest: result of %q is %s, want %s", step, s.Result, wantJSON)
	}
}

// Result decodes the named step's result into v, failing the test when there is none.
func (h *Harness) Result(task *tasker.Task, step string, v any) {
	h.t.Helper()
	if err := task.Result(step, v); err != nil {
		h.t.Fatalf("taskertest: %v", err)
	}
}

// Transitions returns the task's audit trail, oldest first, after checking that it is a legal
// path of the state machines for the task and every step.
func (h *Harness) Transitions(task *tasker.Task) []tasker.Transition {
	h.t.Helper()
	trs, err := h.Engine.Transitions(context.Background(), task.ID)
	if err != nil {
		h.t.Fatalf("taskertest: transitions of %s: %v", task.ID, err)
		return nil
	}
	if err := checkLegal(trs); err != nil {
		h.t.Fatalf("taskertest: task %s: %v", task.ID, err)
	}
	return trs
}

// History returns the events of the named step's transitions (of the task's own when step is
// ""), oldest first: for a step retried once, [create enqueue start fail_retryable enqueue start
// complete].
func (h *Harness) History(task *tasker.Task, step string) []string {
	h.t.Helper()
	var out []string
	for _, tr := range h.Transitions(task) {
		if tr.StepName == step {
			out = append(out, tr.Event)
		}
	}
	return out
}

// checkLegal checks that each entity's transitions chain and form a legal path.
func checkLegal(trs []tasker.Transition) error {
	var taskPath []statemachine.TaskState
	stepPaths := map[uuid.UUID][]statemachine.StepState{}
	names := map[uuid.UUID]string{}
	for _, tr := range trs {
		if tr.StepID == uuid.Nil {
			if n := len(taskPath); n > 0 && string(taskPath[n-1]) != tr.From {
				return fmt.Errorf("task transition %s starts from %q, not %q", tr.Event, tr.From, taskPath[n-1])
			}
			taskPath = append(taskPath, statemachine.TaskState(tr.To))
			continue
		}
		p := stepPaths[tr.StepID]
		if n := len(p); n > 0 && string(p[n-1]) != tr.From {
			return fmt.Errorf("step %s transition %s starts from %q, not %q", tr.StepName, tr.Event, tr.From, p[n-1])
		}
		stepPaths[tr.StepID], names[tr.StepID] = append(p, statemachine.StepState(tr.To)), tr.StepName
	}
	if err := statemachine.ValidateTaskPath(taskPath); err != nil {
		return fmt.Errorf("task: %w", err)
	}
	for id, p := range stepPaths {
		if err := statemachine.ValidateStepPath(p); err != nil {
			return fmt.Errorf("step %s: %w", names[id], err)
		}
	}
	return nil
}

// Describe renders a task and its steps, one line each, for failure messages.
func Describe(task *tasker.Task) string {
	var b strings.Builder
	fmt.Fprintf(&b, "task %s/%s %s: %s\n", task.Namespace, task.Name, task.ID, task.State)
	for _, s := range task.Steps {
		fmt.Fprintf(&b, "  %-24s %-18s attempts %d/%d", s.Name, s.State, s.Attempts, s.MaxAttempts)
		if s.Result != nil {
			fmt.Fprintf(&b, "  result %s", truncate(string(s.Result), 120))
		}
		if s.LastError != nil {
			fmt.Fprintf(&b, "  last error (%s) %s", s.LastError.Kind, truncate(s.LastError.Message, 120))
		}
		b.WriteByte('\n')
	}
	return b.String()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

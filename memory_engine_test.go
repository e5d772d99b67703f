package tasker_test

// The end-to-end scenarios of the PostgreSQL tests (engine_test.go, engine_ops_test.go,
// dynamic_test.go, rescue_test.go, engine_multi_test.go, publisher_test.go), run on store/memory
// and queue/memqueue: the same engine, no database.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/queue"
	"github.com/tasker-systems/tasker/queue/memqueue"
	"github.com/tasker-systems/tasker/store"
	"github.com/tasker-systems/tasker/store/memory"
)

// memBundle is a bundle on the memory store; its bundle has no database (db and store are nil),
// so only the bundle helpers that use the engine alone apply.
type memBundle struct {
	*bundle
	mem *memory.Store
}

// setupMemory returns an engine on a fresh memory store and its default queue; call b.start to
// run its workers (stopped at cleanup).
func setupMemory(t testing.TB, opts ...setupOpt) *memBundle {
	t.Helper()
	st := memory.New()
	cfg := tasker.Config{Store: st, Logger: testLogger(), Lease: 3 * time.Second, ShutdownTimeout: 2 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	eng, err := tasker.NewEngine(cfg)
	require.NoError(t, err)
	return &memBundle{bundle: &bundle{engine: eng}, mem: st}
}

// start runs the engine's workers until the test ends, letting the steps already enqueued finish
// first (see quiesce).
func (b *memBundle) start(t testing.TB) {
	t.Helper()
	b.bundle.start(t)
	t.Cleanup(func() { quiesce(t, b.engine) }) // runs before the stop registered by bundle.start
}

// quiesce waits (up to 5s) until no step of an unfinished task is enqueued or in progress. The
// engine's shutdown has a race (RunWorkers may call inflight.Wait while a fetch loop that has just
// read a message calls inflight.Add), which -race reports when a test ends with steps still
// flowing; waiting for them to settle first keeps these tests deterministic until it is fixed.
func quiesce(t testing.TB, eng *tasker.Engine) {
	ctx := context.Background()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		busy := false
		var after uuid.UUID
		for !busy {
			page, err := eng.ListTasks(ctx, tasker.ListOptions{After: after, Limit: 100})
			if err != nil {
				t.Errorf("quiesce: %v", err)
				return
			}
			for _, task := range page {
				if task.State.Terminal() {
					continue
				}
				got, err := eng.GetTask(ctx, task.ID)
				if err != nil {
					t.Errorf("quiesce: %v", err)
					return
				}
				for _, s := range got.Steps {
					busy = busy || s.State == tasker.StepEnqueued || s.State == tasker.StepInProgress
				}
			}
			if len(page) < 100 {
				break
			}
			after = page[len(page)-1].ID
		}
		if !busy {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// taskEvents lists the task's own transition events.
func taskEvents(trs []tasker.Transition) []string {
	var out []string
	for _, tr := range trs {
		if tr.StepName == "" {
			out = append(out, tr.Event)
		}
	}
	return out
}

func TestMemoryLinearTaskCompletes(t *testing.T) {
	t.Parallel()
	b := setupMemory(t)
	b.register(t, linearYAML)
	b.engine.HandleFunc("add_one", addOne)
	b.start(t)

	task := b.create(t, "test", "linear", map[string]any{"x": 1})
	require.Equal(t, tasker.TaskStepsInProcess, task.State)
	task = b.wait(t, task.ID)
	require.Equal(t, tasker.TaskComplete, task.State)
	require.NotNil(t, task.CompletedAt)
	require.JSONEq(t, `{"x": 1}`, string(task.Context))
	require.Len(t, task.Steps, 3)
	for i, name := range []string{"a", "b", "c"} {
		s, ok := task.Step(name)
		require.True(t, ok)
		require.Equal(t, name, task.Steps[i].Name, "steps in creation order")
		require.Equal(t, tasker.StepComplete, s.State)
		require.Equal(t, 1, s.Attempts)
		require.Equal(t, int64(i+1), jsonInt(t, s.Result))
	}
	trs := requireLegalTransitions(t, b.engine, task.ID)
	require.Equal(t, []string{"create", "start", "initialized", "steps_enqueued", "evaluate", "all_steps_complete"}, taskEvents(trs))
}

func TestMemoryDiamondCompletes(t *testing.T) {
	t.Parallel()
	b := setupMemory(t)
	b.register(t, diamondYAML)
	b.engine.HandleFunc("work", addOne)
	b.start(t)
	task := b.wait(t, b.create(t, "multi", "diamond", nil).ID)
	require.Equal(t, tasker.TaskComplete, task.State)
	for name, want := range map[string]int64{"a": 1, "b": 2, "c": 2, "d": 3} {
		s, _ := task.Step(name)
		require.Equal(t, want, jsonInt(t, s.Result), name)
	}
	requireLegalTransitions(t, b.engine, task.ID)
}

func TestMemoryStepOutcomes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		maxAttempts  int
		timeout      string
		handler      func(ctx context.Context, s *tasker.Step) (any, error)
		wantState    tasker.TaskState
		wantAttempts int
		wantKind     string
	}{
		{
			name: "success", maxAttempts: 3, timeout: "5",
			handler:   func(context.Context, *tasker.Step) (any, error) { return 41, nil },
			wantState: tasker.TaskComplete, wantAttempts: 1,
		},
		{
			name: "retryable then success", maxAttempts: 3, timeout: "5",
			handler: func(_ context.Context, s *tasker.Step) (any, error) {
				if s.Attempt < 3 {
					return nil, errors.New("flaky upstream")
				}
				return 41, nil
			},
			wantState: tasker.TaskComplete, wantAttempts: 3, wantKind: "retryable",
		},
		{
			name: "exhaustion", maxAttempts: 2, timeout: "5",
			handler:   func(context.Context, *tasker.Step) (any, error) { return nil, errors.New("always down") },
			wantState: tasker.TaskBlockedByFailures, wantAttempts: 2, wantKind: "exhausted",
		},
		{
			name: "permanent", maxAttempts: 5, timeout: "5",
			handler: func(context.Context, *tasker.Step) (any, error) {
				return nil, tasker.Permanent(errors.New("card declined"))
			},
			wantState: tasker.TaskBlockedByFailures, wantAttempts: 1, wantKind: "permanent",
		},
		{
			name: "panic", maxAttempts: 5, timeout: "5",
			handler:   func(context.Context, *tasker.Step) (any, error) { panic("nil map somewhere") },
			wantState: tasker.TaskBlockedByFailures, wantAttempts: 1, wantKind: "panic",
		},
		{
			name: "timeout then success", maxAttempts: 3, timeout: "0.2",
			handler: func(ctx context.Context, s *tasker.Step) (any, error) {
				if s.Attempt == 1 {
					<-ctx.Done()
					return nil, ctx.Err()
				}
				return 41, nil
			},
			wantState: tasker.TaskComplete, wantAttempts: 2, wantKind: "timeout",
		},
		{
			name: "result not JSON", maxAttempts: 3, timeout: "5",
			handler:   func(context.Context, *tasker.Step) (any, error) { return make(chan int), nil },
			wantState: tasker.TaskBlockedByFailures, wantAttempts: 1, wantKind: "invalid_result",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setupMemory(t)
			b.register(t, flakyTemplate(tc.maxAttempts, tc.timeout))
			b.engine.HandleFunc("flaky", tc.handler)
			b.engine.HandleFunc("add_one", addOne)
			b.start(t)

			task := b.wait(t, b.create(t, "test", "flaky", nil).ID)
			require.Equal(t, tc.wantState, task.State)
			first, _ := task.Step("first")
			after, _ := task.Step("after")
			require.Equal(t, tc.wantAttempts, first.Attempts)
			if tc.wantKind == "" {
				require.Nil(t, first.LastError)
			} else {
				require.NotNil(t, first.LastError)
				require.Equal(t, tc.wantKind, first.LastError.Kind, first.LastError.Message)
			}
			if tc.wantState == tasker.TaskComplete {
				require.Equal(t, tasker.StepComplete, first.State)
				require.Equal(t, int64(42), jsonInt(t, after.Result))
			} else {
				require.Equal(t, tasker.StepError, first.State)
				require.Equal(t, tasker.StepPending, after.State, "no new step starts once the task is blocked")
				require.Nil(t, task.CompletedAt)
			}
			if tc.wantKind == "panic" {
				require.Contains(t, first.LastError.Stack, "memory_engine_test.go")
			}
			trs := requireLegalTransitions(t, b.engine, task.ID)
			var failures int
			for _, tr := range trs {
				if tr.StepName == "first" && (tr.Event == "fail_retryable" || tr.Event == "fail_permanent") {
					failures++
					require.NotNil(t, tr.Failure(), "every failed attempt keeps its error in the audit trail")
				}
			}
			want := tc.wantAttempts - 1
			if tc.wantState != tasker.TaskComplete {
				want = tc.wantAttempts
			}
			require.Equal(t, want, failures)
		})
	}
}

func TestMemoryRetryAfterAndBackoffAreHonoured(t *testing.T) {
	t.Parallel()
	b := setupMemory(t)
	b.register(t, flakyTemplate(3, "5"))
	var failedAt, gap atomic.Int64
	b.engine.HandleFunc("flaky", func(_ context.Context, s *tasker.Step) (any, error) {
		now := time.Now().UnixNano()
		if s.Attempt == 1 {
			failedAt.Store(now)
			return nil, tasker.RetryAfter(400*time.Millisecond, errors.New("429 too many requests"))
		}
		gap.Store(now - failedAt.Load())
		return 1, nil
	})
	b.engine.HandleFunc("add_one", addOne)
	b.start(t)
	task := b.wait(t, b.create(t, "test", "flaky", nil).ID)
	require.Equal(t, tasker.TaskComplete, task.State)
	require.GreaterOrEqual(t, time.Duration(gap.Load()), 400*time.Millisecond, "the retry ran before RetryAfter's delay")

	trs := requireLegalTransitions(t, b.engine, task.ID)
	var found bool
	for _, tr := range trs {
		if tr.StepName == "first" && tr.Event == "fail_retryable" {
			var meta struct {
				RetryInMs int64 `json:"retry_in_ms"`
			}
			require.NoError(t, json.Unmarshal(tr.Metadata, &meta))
			require.Equal(t, int64(400), meta.RetryInMs)
			require.Contains(t, tr.Failure().Message, "429")
			found = true
		}
	}
	require.True(t, found, "the retryable failure is in the audit trail")
	require.Contains(t, taskEvents(trs), "awaiting_retry", "the task waited for the retry")
}

func TestMemoryUnknownHandlerFailsStepPermanently(t *testing.T) {
	t.Parallel()
	b := setupMemory(t)
	b.register(t, linearYAML) // add_one is never registered
	b.start(t)
	task := b.wait(t, b.create(t, "test", "linear", nil).ID)
	require.Equal(t, tasker.TaskBlockedByFailures, task.State)
	a, _ := task.Step("a")
	require.Equal(t, "no_handler", a.LastError.Kind)
	require.Contains(t, a.LastError.Message, `"add_one"`)
}

func TestMemoryCancelRunningTask(t *testing.T) {
	t.Parallel()
	b := setupMemory(t)
	b.register(t, linearYAML)
	started := make(chan struct{})
	sawCancel := make(chan error, 1)
	b.engine.HandleFunc("add_one", func(ctx context.Context, s *tasker.Step) (any, error) {
		close(started)
		<-ctx.Done()
		sawCancel <- context.Cause(ctx)
		return nil, ctx.Err()
	})
	b.start(t)
	task := b.create(t, "test", "linear", nil)
	<-started
	require.NoError(t, b.engine.CancelTask(context.Background(), task.ID, "customer changed their mind"))
	select {
	case cause := <-sawCancel:
		require.ErrorIs(t, cause, tasker.ErrTaskCancelled)
	case <-time.After(10 * time.Second):
		t.Fatal("the running handler never saw its context cancelled")
	}
	task = b.wait(t, task.ID)
	require.Equal(t, tasker.TaskCancelled, task.State)
	require.NotNil(t, task.CompletedAt)
	for _, s := range task.Steps {
		require.Equal(t, tasker.StepCancelled, s.State, s.Name)
	}
	require.ErrorIs(t, b.engine.CancelTask(context.Background(), task.ID, "again"), tasker.ErrNotAllowed)
	require.ErrorIs(t, b.engine.CancelTask(context.Background(), uuid.New(), "no such task"), tasker.ErrTaskNotFound)
	trs := requireLegalTransitions(t, b.engine, task.ID)
	last := trs[len(trs)-1]
	require.Equal(t, "cancel", last.Event)
	require.Contains(t, string(last.Metadata), `"reason": "customer changed their mind"`, "metadata reads as jsonb prints it")
}

func TestMemoryOperatorActionsResumeBlockedTask(t *testing.T) {
	t.Parallel()
	const diamond = `
name: diamond
namespace_name: ops
version: 1.0.0
steps:
  - {name: start, handler: {callable: add_one}}
  - {name: left, handler: {callable: fragile}, dependencies: [start], retry: {max_attempts: 1}}
  - {name: right, handler: {callable: add_one}, dependencies: [start]}
  - {name: join, handler: {callable: add_one}, dependencies: [left, right]}
`
	for _, action := range []string{"retry", "resolve", "complete"} {
		t.Run(action, func(t *testing.T) {
			t.Parallel()
			b := setupMemory(t)
			b.register(t, diamond)
			var healthy atomic.Bool
			b.engine.HandleFunc("add_one", addOne)
			b.engine.HandleFunc("fragile", func(ctx context.Context, s *tasker.Step) (any, error) {
				if !healthy.Load() {
					return nil, errors.New("dependency down")
				}
				return addOne(ctx, s)
			})
			b.start(t)
			ctx := context.Background()
			task := b.wait(t, b.create(t, "ops", "diamond", nil).ID)
			require.Equal(t, tasker.TaskBlockedByFailures, task.State)
			left, _ := task.Step("left")
			require.Equal(t, tasker.StepError, left.State)
			var right *tasker.StepInfo
			require.Eventually(t, func() bool {
				got, err := b.engine.GetTask(ctx, task.ID)
				require.NoError(t, err)
				task = got
				right, _ = task.Step("right")
				return right.State == tasker.StepComplete
			}, 10*time.Second, 10*time.Millisecond)
			require.Equal(t, tasker.TaskBlockedByFailures, task.State)
			join, _ := task.Step("join")
			require.Equal(t, tasker.StepPending, join.State, "released while blocked: it waits for the fix")

			require.ErrorIs(t, b.engine.RetryStep(ctx, right.ID, tasker.OperatorRequest{}), tasker.ErrNotAllowed)
			require.ErrorIs(t, b.engine.RetryStep(ctx, uuid.New(), tasker.OperatorRequest{}), tasker.ErrStepNotFound)

			op := tasker.OperatorRequest{Operator: "alice", Reason: "upstream fixed"}
			switch action {
			case "retry":
				healthy.Store(true)
				require.NoError(t, b.engine.RetryStep(ctx, left.ID, op))
			case "resolve":
				require.NoError(t, b.engine.ResolveStep(ctx, left.ID, op))
			case "complete":
				require.NoError(t, b.engine.CompleteStep(ctx, left.ID, 10, op))
			}
			task = b.wait(t, task.ID)
			require.Equal(t, tasker.TaskComplete, task.State, "the task resumes on its own after the fix")
			join, _ = task.Step("join")
			left, _ = task.Step("left")
			switch action {
			case "retry":
				require.Equal(t, tasker.StepComplete, left.State)
				require.Equal(t, 1, left.Attempts, "a fresh set of attempts")
				require.Equal(t, int64(3), jsonInt(t, join.Result))
			case "resolve":
				require.Equal(t, tasker.StepResolvedManually, left.State)
				require.Equal(t, int64(3), jsonInt(t, join.Result))
			case "complete":
				require.Equal(t, int64(11), jsonInt(t, join.Result))
			}
			require.ErrorIs(t, b.engine.ResolveStep(ctx, left.ID, op), tasker.ErrNotAllowed, "the task is finished")
			trs := requireLegalTransitions(t, b.engine, task.ID)
			var sawFix bool
			for _, tr := range trs {
				if tr.StepName == "" && tr.Event == "operator_fix" {
					sawFix = true
					require.Contains(t, string(tr.Metadata), `"operator": "alice"`)
				}
			}
			require.True(t, sawFix)
		})
	}
}

func TestMemoryDuplicateCreationPerIdentityStrategy(t *testing.T) {
	t.Parallel()
	tmpl := func(strategy string) string {
		return fmt.Sprintf(`
name: ident_%[1]s
namespace_name: ident
version: 1.0.0
identity_strategy: %[1]s
steps:
  - {name: a, handler: {callable: add_one}}
`, strategy)
	}
	b := setupMemory(t)
	for _, s := range []string{"strict", "caller_provided", "always_unique"} {
		b.register(t, tmpl(s))
	}
	ctx := context.Background()
	create := func(name, key string, input any) (*tasker.Task, error) {
		return b.engine.CreateTask(ctx, tasker.TaskRequest{Namespace: "ident", Name: name, Context: input, IdempotencyKey: key})
	}

	first, err := create("ident_strict", "", json.RawMessage(`{"a":1,"b":[1,2]}`))
	require.NoError(t, err)
	again, err := create("ident_strict", "", json.RawMessage(`{ "b":[1,2], "a":1 }`))
	require.ErrorIs(t, err, tasker.ErrDuplicateTask)
	var dup *tasker.DuplicateTaskError
	require.ErrorAs(t, err, &dup)
	require.Equal(t, first.ID, dup.ExistingID)
	require.Equal(t, first.ID, again.ID)
	other, err := create("ident_strict", "", map[string]any{"a": 2})
	require.NoError(t, err)
	require.NotEqual(t, first.ID, other.ID)

	_, err = create("ident_caller_provided", "", nil)
	require.ErrorIs(t, err, tasker.ErrInvalidInput)
	k1, err := create("ident_caller_provided", "order-17", map[string]any{"a": 1})
	require.NoError(t, err)
	k1b, err := create("ident_caller_provided", "order-17", map[string]any{"a": 999})
	require.ErrorIs(t, err, tasker.ErrDuplicateTask)
	require.Equal(t, k1.ID, k1b.ID)
	require.Equal(t, "order-17", k1b.IdempotencyKey)

	u1, err := create("ident_always_unique", "", map[string]any{"a": 1})
	require.NoError(t, err)
	u2, err := create("ident_always_unique", "", map[string]any{"a": 1})
	require.NoError(t, err)
	require.NotEqual(t, u1.ID, u2.ID)

	all, err := b.engine.ListTasks(ctx, tasker.ListOptions{Namespace: "ident"})
	require.NoError(t, err)
	require.Len(t, all, 5)
}

// fakeTx stands for a caller's pgx.Tx; the memory store must refuse it before using it.
type fakeTx struct{ pgx.Tx }

func TestMemoryCreateTaskTxRefusesACallersTransaction(t *testing.T) {
	t.Parallel()
	b := setupMemory(t)
	b.register(t, linearYAML)
	ctx := context.Background()
	_, err := b.engine.CreateTaskTx(ctx, fakeTx{}, tasker.TaskRequest{Namespace: "test", Name: "linear"})
	require.ErrorIs(t, err, memory.ErrNoTransactions)
	all, err := b.engine.ListTasks(ctx, tasker.ListOptions{})
	require.NoError(t, err)
	require.Empty(t, all)

	b.engine.HandleFunc("add_one", addOne)
	b.start(t)
	task, err := b.engine.CreateTaskTx(ctx, nil, tasker.TaskRequest{Namespace: "test", Name: "linear"})
	require.NoError(t, err, "a nil tx means a transaction of its own")
	require.Equal(t, tasker.TaskComplete, b.wait(t, task.ID).State)
}

func TestMemoryInputValidationWritesNothing(t *testing.T) {
	t.Parallel()
	b := setupMemory(t, func(c *tasker.Config) { c.MaxPayloadBytes = 4096 })
	b.register(t, `
name: validated
namespace_name: test
version: 1.0.0
input_schema:
  type: object
  required: [order_id, amount]
  properties:
    order_id: {type: integer}
    amount: {type: number, minimum: 1}
steps:
  - {name: a, handler: {callable: add_one}}
`)
	ctx := context.Background()
	cases := []struct {
		name  string
		input any
		want  error
	}{
		{"two violations", map[string]any{"order_id": "x", "amount": 0}, tasker.ErrInvalidInput},
		{"missing field", map[string]any{"order_id": 1}, tasker.ErrInvalidInput},
		{"not an object", json.RawMessage(`[1,2]`), tasker.ErrInvalidInput},
		{"invalid JSON", json.RawMessage(`{"order_id": 1,`), tasker.ErrInvalidInput},
		{"too large", map[string]any{"order_id": 1, "amount": 2, "pad": strings.Repeat("x", 5000)}, tasker.ErrPayloadTooLarge},
	}
	for _, tc := range cases {
		_, err := b.engine.CreateTask(ctx, tasker.TaskRequest{Namespace: "test", Name: "validated", Context: tc.input})
		require.ErrorIs(t, err, tc.want, tc.name)
	}
	_, err := b.engine.CreateTask(ctx, tasker.TaskRequest{Namespace: "test", Name: "validated", Version: "9.9.9"})
	require.ErrorIs(t, err, tasker.ErrTemplateNotFound)

	all, err := b.engine.ListTasks(ctx, tasker.ListOptions{})
	require.NoError(t, err)
	require.Empty(t, all)
	msgs, err := b.mem.DefaultQueue().Read(ctx, "test", 10, time.Minute)
	require.NoError(t, err)
	require.Empty(t, msgs, "nothing was enqueued")
}

func TestMemoryFanOutOf1000WithOneJoin(t *testing.T) {
	t.Parallel()
	const width = 1000
	var sb strings.Builder
	sb.WriteString("name: fan\nnamespace_name: big\nversion: 1.0.0\nsteps:\n  - {name: root, handler: {callable: one}}\n")
	deps := make([]string, width)
	for i := range width {
		deps[i] = fmt.Sprintf("w%04d", i)
		fmt.Fprintf(&sb, "  - {name: %s, handler: {callable: one}, dependencies: [root]}\n", deps[i])
	}
	fmt.Fprintf(&sb, "  - {name: join, handler: {callable: sum}, dependencies: [%s]}\n", strings.Join(deps, ", "))

	b := setupMemory(t, func(c *tasker.Config) { c.Concurrency = 32 })
	b.register(t, sb.String())
	b.engine.HandleFunc("one", func(context.Context, *tasker.Step) (any, error) { return 1, nil })
	b.engine.HandleFunc("sum", func(_ context.Context, s *tasker.Step) (any, error) {
		total := 0
		for _, raw := range s.DependencyResults() {
			var n int
			if err := json.Unmarshal(raw, &n); err != nil {
				return nil, err
			}
			total += n
		}
		return total, nil
	})
	b.start(t)
	task := b.wait(t, b.create(t, "big", "fan", nil).ID)
	require.Equal(t, tasker.TaskComplete, task.State)
	require.Len(t, task.Steps, width+2)
	join, _ := task.Step("join")
	require.Equal(t, int64(width+1), jsonInt(t, join.Result), "the join sees every ancestor's result")
	require.Equal(t, 1, join.Attempts)
	requireLegalTransitions(t, b.engine, task.ID)
}

func TestMemoryListTasks(t *testing.T) {
	t.Parallel()
	b := setupMemory(t)
	b.register(t, linearYAML)
	ctx := context.Background()
	var ids []uuid.UUID
	for i := range 5 {
		ids = append(ids, b.create(t, "test", "linear", map[string]any{"i": i}).ID)
	}
	page1, err := b.engine.ListTasks(ctx, tasker.ListOptions{Namespace: "test", Limit: 2})
	require.NoError(t, err)
	require.Len(t, page1, 2)
	require.Equal(t, ids[4], page1[0].ID, "newest first")
	page2, err := b.engine.ListTasks(ctx, tasker.ListOptions{Namespace: "test", Limit: 2, After: page1[1].ID})
	require.NoError(t, err)
	require.Len(t, page2, 2)
	require.Equal(t, ids[2], page2[0].ID)
	all, err := b.engine.ListTasks(ctx, tasker.ListOptions{States: []tasker.TaskState{tasker.TaskStepsInProcess}})
	require.NoError(t, err)
	require.Len(t, all, 5)
	none, err := b.engine.ListTasks(ctx, tasker.ListOptions{States: []tasker.TaskState{tasker.TaskComplete}})
	require.NoError(t, err)
	require.Empty(t, none)
	none, err = b.engine.ListTasks(ctx, tasker.ListOptions{Name: "other"})
	require.NoError(t, err)
	require.Empty(t, none)
	later, err := b.engine.ListTasks(ctx, tasker.ListOptions{CreatedAfter: time.Now().Add(time.Hour)})
	require.NoError(t, err)
	require.Empty(t, later)
}

func TestMemoryShutdownGivesStepsBackWithoutSpendingAttempts(t *testing.T) {
	t.Parallel()
	b := setupMemory(t, func(c *tasker.Config) { c.ShutdownTimeout = 200 * time.Millisecond })
	b.register(t, linearYAML)
	started := make(chan struct{}, 1)
	b.engine.HandleFunc("add_one", func(ctx context.Context, s *tasker.Step) (any, error) {
		started <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	})
	b.start(t)
	task := b.create(t, "test", "linear", nil)
	<-started
	b.stop()

	got, err := b.engine.GetTask(context.Background(), task.ID)
	require.NoError(t, err)
	a, _ := got.Step("a")
	require.Equal(t, tasker.StepEnqueued, a.State, "the step went back to the queue")
	require.Equal(t, 0, a.Attempts, "without spending its attempt")

	// A second engine on the same store (and so the same queue) picks it up.
	eng, err := tasker.NewEngine(tasker.Config{Store: b.mem, Logger: testLogger(), Lease: 3 * time.Second})
	require.NoError(t, err)
	b2 := &bundle{engine: eng}
	b2.register(t, linearYAML)
	eng.HandleFunc("add_one", addOne)
	b2.start(t)
	t.Cleanup(func() { quiesce(t, eng) })
	got = b2.wait(t, task.ID)
	require.Equal(t, tasker.TaskComplete, got.State)
	a, _ = got.Step("a")
	require.Equal(t, 1, a.Attempts)
	trs := requireLegalTransitions(t, eng, task.ID)
	var released bool
	for _, tr := range trs {
		if tr.StepName == "a" && tr.Event == "release" {
			released = true
			require.Contains(t, string(tr.Metadata), `"reason": "shutdown"`)
		}
	}
	require.True(t, released)
}

// TestMemorySeveralEnginesShareOneStore runs three engines on one memory store: every task
// completes and every step's handler runs exactly once.
func TestMemorySeveralEnginesShareOneStore(t *testing.T) {
	t.Parallel()
	st := memory.New()
	const engines, tasks = 3, 60
	var mu sync.Mutex
	runs := map[string]int{}
	byEngine := map[string]int{}
	var all []*bundle
	for i := range engines {
		eng, err := tasker.NewEngine(tasker.Config{Store: st, Logger: testLogger(), WorkerID: fmt.Sprintf("engine-%d", i), Concurrency: 4})
		require.NoError(t, err)
		eb := &bundle{engine: eng}
		eb.register(t, diamondYAML)
		id := eng.WorkerID()
		eng.HandleFunc("work", func(ctx context.Context, s *tasker.Step) (any, error) {
			mu.Lock()
			runs[s.ID.String()]++
			byEngine[id]++
			mu.Unlock()
			time.Sleep(2 * time.Millisecond)
			return addOne(ctx, s)
		})
		eb.start(t)
		t.Cleanup(func() { quiesce(t, eng) })
		all = append(all, eb)
	}
	var created []*tasker.Task
	for i := range tasks {
		created = append(created, all[i%engines].create(t, "multi", "diamond", map[string]any{"i": i}))
	}
	for _, task := range created {
		got := all[0].wait(t, task.ID)
		require.Equal(t, tasker.TaskComplete, got.State)
		d, _ := got.Step("d")
		require.Equal(t, int64(3), jsonInt(t, d.Result))
		requireLegalTransitions(t, all[0].engine, task.ID)
	}
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, runs, tasks*4)
	for id, n := range runs {
		require.Equal(t, 1, n, "step %s ran %d times", id, n)
	}
	for i := range engines {
		require.Positive(t, byEngine[fmt.Sprintf("engine-%d", i)], "every engine took work: %v", byEngine)
	}
}

// memApprovalBundle is approvalBundle on the memory store.
func memApprovalBundle(t *testing.T, route func(amount float64) any) *memBundle {
	b := setupMemory(t)
	b.register(t, approvalYAML)
	b.engine.HandleFunc("pass", func(context.Context, *tasker.Step) (any, error) { return "ok", nil })
	b.engine.HandleFunc("approve", func(_ context.Context, s *tasker.Step) (any, error) { return s.Name, nil })
	b.engine.HandleFunc("route", func(_ context.Context, s *tasker.Step) (any, error) {
		var in struct{ Amount float64 }
		if err := s.Input(&in); err != nil {
			return nil, tasker.Permanent(err)
		}
		return route(in.Amount), nil
	})
	b.engine.HandleFunc("finalize", func(_ context.Context, s *tasker.Step) (any, error) {
		return s.DependencyNames(), nil
	})
	b.start(t)
	return b
}

func TestMemoryDecisionCreatesOnlyTheChosenBranches(t *testing.T) {
	t.Parallel()
	b := memApprovalBundle(t, func(amount float64) any {
		if amount < 1000 {
			return tasker.CreateSteps("auto_approve")
		}
		return json.RawMessage(`{"decision_point_outcome": {"type": "create_steps", "step_names": ["manager_approval", "finance_review"]}}`)
	})
	small := b.wait(t, b.create(t, "dyn", "approval", map[string]any{"amount": 10}).ID)
	require.Equal(t, tasker.TaskComplete, small.State)
	require.ElementsMatch(t, []string{"validate", "route", "auto_approve", "finalize", "notify"}, stepNames(small))
	var saw []string
	require.NoError(t, small.Result("finalize", &saw))
	require.Contains(t, saw, "auto_approve")
	require.NotContains(t, saw, "manager_approval")

	large := b.wait(t, b.create(t, "dyn", "approval", map[string]any{"amount": 5000}).ID)
	require.Equal(t, tasker.TaskComplete, large.State)
	require.ElementsMatch(t, []string{"validate", "route", "manager_approval", "finance_review", "finalize", "notify"}, stepNames(large))
	require.NoError(t, large.Result("finalize", &saw))
	require.Subset(t, saw, []string{"manager_approval", "finance_review"})
	requireLegalTransitions(t, b.engine, small.ID)
	requireLegalTransitions(t, b.engine, large.ID)
}

func TestMemoryDecisionWithNoBranchesCompletes(t *testing.T) {
	t.Parallel()
	b := memApprovalBundle(t, func(float64) any { return tasker.NoBranches() })
	task := b.wait(t, b.create(t, "dyn", "approval", map[string]any{"amount": 1}).ID)
	require.Equal(t, tasker.TaskComplete, task.State)
	require.ElementsMatch(t, []string{"validate", "route"}, stepNames(task))
}

func TestMemoryInvalidDecisionOutcomes(t *testing.T) {
	t.Parallel()
	for name, outcome := range map[string]any{
		"not a descendant": tasker.CreateSteps("validate"),
		"unknown step":     tasker.CreateSteps("nope"),
		"convergence step": tasker.CreateSteps("finalize"),
		"not an outcome":   map[string]any{"approved": true},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := memApprovalBundle(t, func(float64) any { return outcome })
			task := b.wait(t, b.create(t, "dyn", "approval", map[string]any{"amount": 1}).ID)
			require.Equal(t, tasker.TaskBlockedByFailures, task.State)
			route, _ := task.Step("route")
			require.Equal(t, "invalid_outcome", route.LastError.Kind)
			require.ElementsMatch(t, []string{"validate", "route"}, stepNames(task), "nothing was created")
		})
	}
}

// TestMemoryDecisionReplayedAfterACrashCreatesStepsOnce: the decision's first attempt is claimed
// by a worker that vanishes; the rescued retry creates the branches, once.
func TestMemoryDecisionReplayedAfterACrashCreatesStepsOnce(t *testing.T) {
	t.Parallel()
	b := setupMemory(t, func(c *tasker.Config) { c.Lease = time.Second; c.RescueInterval = 100 * time.Millisecond })
	b.register(t, approvalYAML)
	var decisions atomic.Int32
	b.engine.HandleFunc("pass", func(context.Context, *tasker.Step) (any, error) { return "ok", nil })
	b.engine.HandleFunc("approve", func(_ context.Context, s *tasker.Step) (any, error) { return s.Name, nil })
	b.engine.HandleFunc("finalize", func(context.Context, *tasker.Step) (any, error) { return "done", nil })
	b.engine.HandleFunc("route", func(context.Context, *tasker.Step) (any, error) {
		decisions.Add(1)
		return tasker.CreateSteps("manager_approval", "finance_review"), nil
	})
	ctx := context.Background()
	task := b.create(t, "dyn", "approval", map[string]any{"amount": 5000})
	got, err := b.engine.GetTask(ctx, task.ID)
	require.NoError(t, err)
	validate, _ := got.Step("validate")
	claimed, err := b.mem.ClaimStep(ctx, store.ClaimStepParams{StepID: validate.ID, WorkerID: "first", Lease: time.Minute})
	require.NoError(t, err)
	_, err = b.mem.RecordOutcome(ctx, store.OutcomeParams{TaskID: task.ID, StepID: validate.ID, WorkerID: "first",
		Attempt: claimed.Step.Attempts, Kind: store.OutcomeSuccess, Result: json.RawMessage(`"ok"`), Namespace: "dyn"})
	require.NoError(t, err)
	got, err = b.engine.GetTask(ctx, task.ID)
	require.NoError(t, err)
	route, _ := got.Step("route")
	require.Equal(t, tasker.StepEnqueued, route.State)
	_, err = b.mem.ClaimStep(ctx, store.ClaimStepParams{StepID: route.ID, WorkerID: "dies-before-commit", Lease: 50 * time.Millisecond})
	require.NoError(t, err)

	b.start(t)
	got = b.wait(t, task.ID)
	require.Equal(t, tasker.TaskComplete, got.State)
	require.Equal(t, int32(1), decisions.Load(), "the rescued attempt ran the decision")
	route, _ = got.Step("route")
	require.Equal(t, 2, route.Attempts)
	counts := map[string]int{}
	for _, s := range got.Steps {
		counts[s.Name]++
	}
	require.Equal(t, map[string]int{"validate": 1, "route": 1, "manager_approval": 1, "finance_review": 1, "finalize": 1, "notify": 1}, counts)
	requireLegalTransitions(t, b.engine, task.ID)
}

// newMemBatchBundle is newBatchBundle on the memory store.
func newMemBatchBundle(t *testing.T, strategy string, items int64, work func(s *tasker.Step, in tasker.BatchInputs) (any, error)) *batchBundle {
	bb := &batchBundle{bundle: setupMemory(t).bundle, workRun: work}
	bb.register(t, fmtBatch(strategy))
	bb.engine.HandleFunc("analyze", func(context.Context, *tasker.Step) (any, error) {
		if items == 0 {
			return tasker.NoBatches(), nil
		}
		return tasker.CreateBatches("work", tasker.Cursors(0, items, 200)...), nil
	})
	bb.engine.HandleFunc("work", func(_ context.Context, s *tasker.Step) (any, error) {
		in, ok := s.Batch()
		if !ok {
			return nil, tasker.Permanent(errors.New("no cursor"))
		}
		bb.mu.Lock()
		bb.cur++
		bb.peak = max(bb.peak, bb.cur)
		bb.mu.Unlock()
		defer func() { bb.mu.Lock(); bb.cur--; bb.mu.Unlock() }()
		time.Sleep(20 * time.Millisecond)
		if _, ok := s.Config()["cursor"]; !ok {
			return nil, tasker.Permanent(errors.New("the cursor is missing from the worker's initialization"))
		}
		return bb.workRun(s, in)
	})
	bb.engine.HandleFunc("total", func(_ context.Context, s *tasker.Step) (any, error) {
		var sum int64
		failed, workers := 0, 0
		for name, raw := range s.DependencyResults() {
			if !strings.HasPrefix(name, "work_") {
				continue
			}
			workers++
			var r struct {
				Count  int64 `json:"count"`
				Failed bool  `json:"failed"`
			}
			if err := json.Unmarshal(raw, &r); err != nil {
				return nil, err
			}
			sum += r.Count
			if r.Failed {
				failed++
			}
		}
		return map[string]any{"count": sum, "failed": failed, "workers": workers}, nil
	})
	bb.start(t)
	t.Cleanup(func() { quiesce(t, bb.engine) })
	return bb
}

func TestMemoryBatchWorkersFanOutAndConverge(t *testing.T) {
	t.Parallel()
	bb := newMemBatchBundle(t, "fail_fast", 1000, countItems)
	task := bb.wait(t, bb.create(t, "dyn", "batch", nil).ID)
	require.Equal(t, tasker.TaskComplete, task.State)
	require.ElementsMatch(t, []string{"analyze", "work_001", "work_002", "work_003", "work_004", "work_005", "total"}, stepNames(task))
	var total batchTotal
	require.NoError(t, task.Result("total", &total))
	require.Equal(t, batchTotal{Count: 1000, Workers: 5}, total)
	bb.mu.Lock()
	require.LessOrEqual(t, bb.peak, 2, "parallelism: at most 2 workers of the batch at once")
	require.Positive(t, bb.peak)
	bb.mu.Unlock()
	requireLegalTransitions(t, bb.engine, task.ID)
}

func TestMemoryBatchWithNoBatchesKeepsItsShape(t *testing.T) {
	t.Parallel()
	bb := newMemBatchBundle(t, "fail_fast", 0, countItems)
	task := bb.wait(t, bb.create(t, "dyn", "batch", nil).ID)
	require.Equal(t, tasker.TaskComplete, task.State)
	require.ElementsMatch(t, []string{"analyze", "work_000", "total"}, stepNames(task))
	noop, _ := task.Step("work_000")
	require.Equal(t, `{"no_op": true}`, string(noop.Result), "as jsonb prints it")
	bb.mu.Lock()
	require.Zero(t, bb.peak, "the no-op worker's handler never runs")
	bb.mu.Unlock()
}

func TestMemoryBatchWorkerResumesFromItsCheckpoint(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	starts := map[string][]int64{}
	bb := newMemBatchBundle(t, "fail_fast", 400, func(s *tasker.Step, in tasker.BatchInputs) (any, error) {
		var cp struct{ Next int64 }
		from := in.Cursor.Start
		if ok, err := s.LoadCheckpoint(&cp); err != nil {
			return nil, err
		} else if ok {
			from = cp.Next
		}
		mu.Lock()
		starts[s.Name] = append(starts[s.Name], from)
		mu.Unlock()
		mid := in.Cursor.Start + (in.Cursor.End-in.Cursor.Start)/2
		if s.Attempt == 1 && s.Name == "work_002" {
			if err := s.Checkpoint(context.Background(), map[string]int64{"Next": mid}); err != nil {
				return nil, err
			}
			return nil, errors.New("connection reset halfway")
		}
		return map[string]any{"count": in.Cursor.End - from + (from - in.Cursor.Start)}, nil
	})
	task := bb.wait(t, bb.create(t, "dyn", "batch", nil).ID)
	require.Equal(t, tasker.TaskComplete, task.State)
	mu.Lock()
	require.Equal(t, []int64{200, 300}, starts["work_002"], "the retry resumed at the checkpoint")
	require.Equal(t, []int64{0}, starts["work_001"])
	mu.Unlock()
	w2, _ := task.Step("work_002")
	require.Equal(t, 2, w2.Attempts)
	var total batchTotal
	require.NoError(t, task.Result("total", &total))
	require.Equal(t, int64(400), total.Count)
}

func TestMemoryBatchFailureStrategies(t *testing.T) {
	t.Parallel()
	t.Run("continue_on_failure", func(t *testing.T) {
		t.Parallel()
		bb := newMemBatchBundle(t, "continue_on_failure", 600, failSecond)
		task := bb.wait(t, bb.create(t, "dyn", "batch", nil).ID)
		require.Equal(t, tasker.TaskComplete, task.State)
		var total batchTotal
		require.NoError(t, task.Result("total", &total))
		require.Equal(t, batchTotal{Count: 400, Failed: 1, Workers: 3}, total, "the convergence sees the failure")
		w2, _ := task.Step("work_002")
		require.Equal(t, tasker.StepComplete, w2.State)
		require.Contains(t, string(w2.Result), "corrupt rows")
		requireLegalTransitions(t, bb.engine, task.ID)
	})
	t.Run("fail_fast", func(t *testing.T) {
		t.Parallel()
		bb := newMemBatchBundle(t, "fail_fast", 600, failSecond)
		task := bb.wait(t, bb.create(t, "dyn", "batch", nil).ID)
		require.Equal(t, tasker.TaskBlockedByFailures, task.State)
		w2, _ := task.Step("work_002")
		require.Equal(t, tasker.StepError, w2.State)
		total, _ := task.Step("total")
		require.Equal(t, tasker.StepPending, total.State)
		requireLegalTransitions(t, bb.engine, task.ID)
	})
	t.Run("isolate", func(t *testing.T) {
		t.Parallel()
		bb := newMemBatchBundle(t, "isolate", 600, failSecond)
		task := bb.wait(t, bb.create(t, "dyn", "batch", nil).ID)
		require.Equal(t, tasker.TaskBlockedByFailures, task.State)
		for _, name := range []string{"work_001", "work_003"} {
			w, _ := task.Step(name)
			require.Equal(t, tasker.StepComplete, w.State, "%s still ran: the failure is isolated", name)
		}
		w2, _ := task.Step("work_002")
		require.Equal(t, tasker.StepError, w2.State)
		require.NoError(t, bb.engine.ResolveStep(context.Background(), w2.ID, tasker.OperatorRequest{Operator: "ops", Reason: "rows skipped"}))
		task = bb.wait(t, task.ID)
		require.Equal(t, tasker.TaskComplete, task.State)
		var total batchTotal
		require.NoError(t, task.Result("total", &total))
		require.Equal(t, int64(400), total.Count)
		requireLegalTransitions(t, bb.engine, task.ID)
	})
}

// memClaimAsDeadWorker claims a step for a worker that then vanishes: its lease runs out unrenewed.
func memClaimAsDeadWorker(t *testing.T, b *memBundle, task *tasker.Task, step string) {
	t.Helper()
	got, err := b.engine.GetTask(context.Background(), task.ID)
	require.NoError(t, err)
	s, ok := got.Step(step)
	require.True(t, ok)
	_, err = b.mem.ClaimStep(context.Background(), store.ClaimStepParams{StepID: s.ID, WorkerID: "dead-worker", Lease: 50 * time.Millisecond})
	require.NoError(t, err)
}

func TestMemoryRescuerRetriesAStepWhoseWorkerDied(t *testing.T) {
	t.Parallel()
	b := setupMemory(t, func(c *tasker.Config) { c.Lease = time.Second; c.RescueInterval = 100 * time.Millisecond })
	b.register(t, linearYAML)
	b.engine.HandleFunc("add_one", addOne)
	task := b.create(t, "test", "linear", nil)
	memClaimAsDeadWorker(t, b, task, "a")
	b.start(t)

	got := b.wait(t, task.ID)
	require.Equal(t, tasker.TaskComplete, got.State)
	a, _ := got.Step("a")
	require.Equal(t, 2, a.Attempts, "the dead worker's attempt counts")
	require.Equal(t, "lease_expired", a.LastError.Kind)
	require.Contains(t, a.LastError.Message, "dead-worker")
	trs := requireLegalTransitions(t, b.engine, task.ID)
	var failure *tasker.StepFailure
	for _, tr := range trs {
		if tr.StepName == "a" && tr.Event == "fail_retryable" {
			failure = tr.Failure()
			require.Contains(t, string(tr.Metadata), `"worker_id": "dead-worker"`)
		}
	}
	require.NotNil(t, failure, "the crash is in the step's error history")
	require.Equal(t, 1, failure.Attempt)
}

func TestMemoryRescuerFailsAStepWithNoAttemptLeft(t *testing.T) {
	t.Parallel()
	b := setupMemory(t, func(c *tasker.Config) { c.Lease = time.Second; c.RescueInterval = 100 * time.Millisecond })
	b.register(t, flakyTemplate(1, "5"))
	b.engine.HandleFunc("flaky", addOne)
	b.engine.HandleFunc("add_one", addOne)
	task := b.create(t, "test", "flaky", nil)
	memClaimAsDeadWorker(t, b, task, "first")
	b.start(t)

	got := b.wait(t, task.ID)
	require.Equal(t, tasker.TaskBlockedByFailures, got.State)
	first, _ := got.Step("first")
	require.Equal(t, tasker.StepError, first.State)
	require.Equal(t, 1, first.Attempts)
	require.Equal(t, "lease_expired", first.LastError.Kind)
	requireLegalTransitions(t, b.engine, task.ID)
}

func TestMemoryLongHandlerKeepsItsLease(t *testing.T) {
	t.Parallel()
	b := setupMemory(t, func(c *tasker.Config) { c.Lease = 600 * time.Millisecond; c.RescueInterval = 100 * time.Millisecond })
	b.register(t, flakyTemplate(3, "10"))
	b.engine.HandleFunc("flaky", func(ctx context.Context, s *tasker.Step) (any, error) {
		select {
		case <-time.After(2 * time.Second):
			return 41, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	b.engine.HandleFunc("add_one", addOne)
	b.start(t)
	got := b.wait(t, b.create(t, "test", "flaky", nil).ID)
	require.Equal(t, tasker.TaskComplete, got.State)
	first, _ := got.Step("first")
	require.Equal(t, 1, first.Attempts, "no rescue of a live handler")
	require.Nil(t, first.LastError)
}

// losingPublisher is the memory queue behind a publish-after-commit seam, as a broker outside the
// store would be; it loses the first publish of the steps named in lose.
type losingPublisher struct {
	*memqueue.Queue
	mu   sync.Mutex
	lose map[string]bool
	lost []string
}

var _ queue.Publisher = (*losingPublisher)(nil)

func (q *losingPublisher) SendTx(context.Context, pgx.Tx, string, [][]byte, time.Duration) error {
	return queue.ErrNotTransactional
}

func (q *losingPublisher) Publish(ctx context.Context, name string, payloads [][]byte, delay time.Duration) error {
	var keep [][]byte
	q.mu.Lock()
	for _, p := range payloads {
		var m struct {
			Step string `json:"step"`
		}
		_ = json.Unmarshal(p, &m)
		if q.lose[m.Step] {
			delete(q.lose, m.Step)
			q.lost = append(q.lost, m.Step)
			continue
		}
		keep = append(keep, p)
	}
	q.mu.Unlock()
	return q.Queue.SendTx(ctx, nil, name, keep, delay)
}

// TestMemoryPublishAfterCommitAndSweeper: the sweeper finds, in the memory store, the step whose
// message was lost and publishes it again.
func TestMemoryPublishAfterCommitAndSweeper(t *testing.T) {
	t.Parallel()
	q := &losingPublisher{Queue: memqueue.New(memqueue.WithPollInterval(50 * time.Millisecond)), lose: map[string]bool{"b": true}}
	b := setupMemory(t, func(c *tasker.Config) {
		c.Queue = q
		c.RepublishAfter = 300 * time.Millisecond
		c.RescueInterval = 100 * time.Millisecond
	})
	b.register(t, linearYAML)
	b.engine.HandleFunc("add_one", addOne)
	b.start(t)
	task := b.wait(t, b.create(t, "test", "linear", nil).ID)
	require.Equal(t, tasker.TaskComplete, task.State)
	c, _ := task.Step("c")
	require.Equal(t, int64(3), jsonInt(t, c.Result))
	q.mu.Lock()
	require.Equal(t, []string{"b"}, q.lost, "b's first message was lost, and the task still completed")
	q.mu.Unlock()
	bStep, _ := task.Step("b")
	require.Equal(t, 1, bStep.Attempts)
	requireLegalTransitions(t, b.engine, task.ID)
}

// runMemFlow is runFlow on the memory store.
func runMemFlow(t *testing.T, spec flowSpec) (*memBundle, *tasker.Template, *tasker.Task, *sync.Map) {
	t.Helper()
	tmpl, _ := loadFixture(t, spec.file)
	registered := tmpl
	if spec.rawTemplate {
		var err error
		registered, err = tasker.ParseTemplateFile(fixturePath(t, spec.file))
		require.NoError(t, err)
	}
	b := setupMemory(t, spec.opts...)
	require.NoError(t, b.engine.Register(registered))
	calls := &sync.Map{}
	h := flowHandler(tmpl, spec.steps, calls)
	for _, st := range tmpl.Steps {
		b.engine.Handle(st.Handler.Callable, h)
	}
	b.start(t)
	task := b.wait(t, b.create(t, tmpl.Namespace, tmpl.Name, spec.input).ID)
	return b, tmpl, task, calls
}

// TestMemoryFixtureBusinessWorkflows runs Tasker Core's business fixtures on the memory store.
func TestMemoryFixtureBusinessWorkflows(t *testing.T) {
	t.Parallel()
	for _, spec := range []flowSpec{
		ecommerceSpec(), customerSuccessSpec(), paymentsSpec(), dataPipelineSpec(), microservicesSpec(),
		businessWorkflowSpec(), domainEventsSpec(false), dlqStalenessSpec(),
	} {
		t.Run(spec.file, func(t *testing.T) {
			t.Parallel()
			b, tmpl, task, calls := runMemFlow(t, spec)
			requireFlow(t, spec, tmpl, task, calls)
			requireLegalTransitions(t, b.engine, task.ID)
		})
	}
}

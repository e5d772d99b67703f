package tasker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
)

// handleUntilCancelled binds callable to a handler that blocks until its context ends: started is
// closed when it starts, and sawCancel receives its context's cause.
func handleUntilCancelled(b *bundle, callable string) (started <-chan struct{}, sawCancel <-chan error) {
	st, saw := make(chan struct{}), make(chan error, 1)
	b.engine.HandleFunc(callable, func(ctx context.Context, s *tasker.Step) (any, error) {
		close(st)
		<-ctx.Done()
		saw <- context.Cause(ctx)
		return nil, ctx.Err()
	})
	return st, saw
}

func TestCancelRunningTask(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		b := setup(t)
		b.register(t, linearYAML)
		started, sawCancel := handleUntilCancelled(b, "add_one")
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
		for _, s := range task.Steps {
			require.Equal(t, tasker.StepCancelled, s.State, s.Name)
		}
		require.ErrorIs(t, b.engine.CancelTask(context.Background(), task.ID, "again"), tasker.ErrNotAllowed)
		trs := requireLegalTransitions(t, b.engine, task.ID)
		last := trs[len(trs)-1]
		require.Equal(t, "cancel", last.Event)
		require.Contains(t, string(last.Metadata), `"reason": "customer changed their mind"`, "metadata reads as jsonb prints it")
		require.ErrorIs(t, b.engine.CancelTask(context.Background(), uuid.New(), "no such task"), tasker.ErrTaskNotFound)
	})
}

func TestOperatorActionsResumeBlockedTask(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
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
				b := setup(t)
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
				task := b.wait(t, b.create(t, "ops", "diamond", nil).ID)
				require.Equal(t, tasker.TaskBlockedByFailures, task.State)
				left, _ := task.Step("left")
				require.Equal(t, tasker.StepError, left.State)
				// The task settles as soon as left fails; right, already enqueued, still finishes.
				var right *tasker.StepInfo
				require.Eventually(t, func() bool {
					got, err := b.engine.GetTask(context.Background(), task.ID)
					require.NoError(t, err)
					task = got
					right, _ = task.Step("right")
					return right.State == tasker.StepComplete
				}, 10*time.Second, 10*time.Millisecond)
				require.Equal(t, tasker.TaskBlockedByFailures, task.State)
				join, _ := task.Step("join")
				require.Equal(t, tasker.StepPending, join.State)

				// Only a step in error accepts an operator action.
				require.ErrorIs(t, b.engine.RetryStep(context.Background(), right.ID, tasker.OperatorRequest{}), tasker.ErrNotAllowed)
				require.ErrorIs(t, b.engine.RetryStep(context.Background(), uuid.New(), tasker.OperatorRequest{}), tasker.ErrStepNotFound)

				op := tasker.OperatorRequest{Operator: "alice", Reason: "upstream fixed"}
				switch action {
				case "retry":
					healthy.Store(true)
					require.NoError(t, b.engine.RetryStep(context.Background(), left.ID, op))
				case "resolve":
					require.NoError(t, b.engine.ResolveStep(context.Background(), left.ID, op))
				case "complete":
					require.NoError(t, b.engine.CompleteStep(context.Background(), left.ID, 10, op))
				}
				task = b.wait(t, task.ID)
				if task.State != tasker.TaskComplete {
					trs, _ := b.engine.Transitions(context.Background(), task.ID)
					for _, tr := range trs {
						t.Logf("%s %s: %s -> %s (%s) %s", tr.At.Format("15:04:05.000000"), tr.StepName, tr.From, tr.To, tr.Event, tr.Metadata)
					}
				}
				require.Equal(t, tasker.TaskComplete, task.State, "the task resumes on its own after the fix")
				join, _ = task.Step("join")
				require.Equal(t, tasker.StepComplete, join.State)
				left, _ = task.Step("left")
				switch action {
				case "retry":
					require.Equal(t, tasker.StepComplete, left.State)
					require.Equal(t, 1, left.Attempts, "a fresh set of attempts")
					require.Equal(t, int64(3), jsonInt(t, join.Result))
				case "resolve":
					require.Equal(t, tasker.StepResolvedManually, left.State)
					require.Equal(t, int64(3), jsonInt(t, join.Result)) // right's 2 + 1
				case "complete":
					require.Equal(t, int64(11), jsonInt(t, join.Result)) // the operator's 10 + 1
				}
				require.ErrorIs(t, b.engine.ResolveStep(context.Background(), left.ID, op), tasker.ErrNotAllowed, "the task is finished")
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
	})
}

func TestDuplicateCreationPerIdentityStrategy(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
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
		b := setup(t)
		for _, s := range []string{"strict", "caller_provided", "always_unique"} {
			b.register(t, tmpl(s))
		}
		ctx := context.Background()
		create := func(name, key string, input any) (*tasker.Task, error) {
			return b.engine.CreateTask(ctx, tasker.TaskRequest{Namespace: "ident", Name: name, Context: input, IdempotencyKey: key})
		}

		// strict: the same context (keys in any order) is the same task; another context is not.
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

		// caller_provided: the key decides, the context does not; no key is an input error.
		_, err = create("ident_caller_provided", "", nil)
		require.ErrorIs(t, err, tasker.ErrInvalidInput)
		k1, err := create("ident_caller_provided", "order-17", map[string]any{"a": 1})
		require.NoError(t, err)
		k1b, err := create("ident_caller_provided", "order-17", map[string]any{"a": 999})
		require.ErrorIs(t, err, tasker.ErrDuplicateTask)
		require.Equal(t, k1.ID, k1b.ID)

		// always_unique: identical requests make distinct tasks.
		u1, err := create("ident_always_unique", "", map[string]any{"a": 1})
		require.NoError(t, err)
		u2, err := create("ident_always_unique", "", map[string]any{"a": 1})
		require.NoError(t, err)
		require.NotEqual(t, u1.ID, u2.ID)

		require.Equal(t, "order-17", k1b.IdempotencyKey)
		all, err := b.engine.ListTasks(ctx, tasker.ListOptions{Namespace: "ident"})
		require.NoError(t, err)
		require.Len(t, all, 5)
	})
}

func TestCreateTaskTx(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.register(t, linearYAML)
	var runs atomic.Int32
	b.engine.HandleFunc("add_one", func(ctx context.Context, s *tasker.Step) (any, error) {
		runs.Add(1)
		return addOne(ctx, s)
	})
	b.start(t)
	ctx := context.Background()

	// Rolled back: nothing exists and nothing runs.
	tx, err := b.db.Pool.Begin(ctx)
	require.NoError(t, err)
	ghost, err := b.engine.CreateTaskTx(ctx, tx, tasker.TaskRequest{Namespace: "test", Name: "linear", Context: map[string]any{"n": 1}})
	require.NoError(t, err)
	require.NoError(t, tx.Rollback(ctx))
	_, err = b.engine.GetTask(ctx, ghost.ID)
	require.ErrorIs(t, err, tasker.ErrTaskNotFound)

	// A rejected request inside the caller's transaction leaves the transaction usable.
	tx, err = b.db.Pool.Begin(ctx)
	require.NoError(t, err)
	_, err = b.engine.CreateTaskTx(ctx, tx, tasker.TaskRequest{Namespace: "test", Name: "nope"})
	require.ErrorIs(t, err, tasker.ErrTemplateNotFound)
	task, err := b.engine.CreateTaskTx(ctx, tx, tasker.TaskRequest{Namespace: "test", Name: "linear", Context: map[string]any{"n": 2}})
	require.NoError(t, err)
	// A duplicate inside the transaction does not poison it either.
	_, err = b.engine.CreateTaskTx(ctx, tx, tasker.TaskRequest{Namespace: "test", Name: "linear", Context: map[string]any{"n": 2}})
	require.ErrorIs(t, err, tasker.ErrDuplicateTask)
	var one int
	require.NoError(t, tx.QueryRow(ctx, "SELECT 1").Scan(&one))
	require.NoError(t, tx.Commit(ctx))
	task = b.wait(t, task.ID)
	require.Equal(t, tasker.TaskComplete, task.State)
	require.Equal(t, int32(3), runs.Load(), "only the committed task's three steps ran")

	var n int
	require.NoError(t, b.db.Pool.QueryRow(ctx, `SELECT count(*) FROM `+b.db.Schema+`.tasks`).Scan(&n))
	require.Equal(t, 1, n)
}

func TestInputValidationWritesNothing(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		b := setup(t, func(c *tasker.Config) { c.MaxPayloadBytes = 4096 })
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
			parts []string
		}{
			{"two violations", map[string]any{"order_id": "x", "amount": 0}, tasker.ErrInvalidInput, []string{"/order_id", "/amount"}},
			{"missing field", map[string]any{"order_id": 1}, tasker.ErrInvalidInput, []string{"amount"}},
			{"not an object", json.RawMessage(`[1,2]`), tasker.ErrInvalidInput, []string{"JSON object"}},
			{"invalid JSON", json.RawMessage(`{"order_id": 1,`), tasker.ErrInvalidInput, []string{"not valid JSON"}},
			{"not encodable", map[string]any{"f": func() {}}, tasker.ErrInvalidInput, []string{"JSON-encodable"}},
			{"too large", map[string]any{"order_id": 1, "amount": 2, "pad": strings.Repeat("x", 5000)}, tasker.ErrPayloadTooLarge, nil},
		}
		for _, tc := range cases {
			_, err := b.engine.CreateTask(ctx, tasker.TaskRequest{Namespace: "test", Name: "validated", Context: tc.input})
			require.ErrorIs(t, err, tc.want, tc.name)
			for _, p := range tc.parts {
				require.Contains(t, err.Error(), p, tc.name)
			}
		}
		var ie *tasker.InputError
		_, err := b.engine.CreateTask(ctx, tasker.TaskRequest{Namespace: "test", Name: "validated", Context: map[string]any{"order_id": "x", "amount": 0}})
		require.ErrorAs(t, err, &ie)
		require.Len(t, ie.Violations, 2)

		_, err = b.engine.CreateTask(ctx, tasker.TaskRequest{Namespace: "test", Name: "validated", Version: "9.9.9"})
		require.ErrorIs(t, err, tasker.ErrTemplateNotFound)

		all, err := b.engine.ListTasks(ctx, tasker.ListOptions{})
		require.NoError(t, err)
		require.Empty(t, all)
		if b.db != nil {
			for _, table := range []string{"tasks", "steps", "edges", "task_transitions", "step_transitions", "queue_messages"} {
				var n int
				require.NoError(t, b.db.Pool.QueryRow(ctx, `SELECT count(*) FROM `+b.db.Schema+`.`+table).Scan(&n))
				require.Zero(t, n, table)
			}
		} else {
			msgs, err := b.memStore(t).DefaultQueue().Read(ctx, "test", 10, time.Minute)
			require.NoError(t, err)
			require.Empty(t, msgs, "nothing was enqueued")
		}
	})
}

func TestFanOutOf1000WithOneJoin(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		const width = 1000
		var sb strings.Builder
		sb.WriteString("name: fan\nnamespace_name: big\nversion: 1.0.0\nsteps:\n  - {name: root, handler: {callable: one}}\n")
		deps := make([]string, width)
		for i := range width {
			deps[i] = fmt.Sprintf("w%04d", i)
			fmt.Fprintf(&sb, "  - {name: %s, handler: {callable: one}, dependencies: [root]}\n", deps[i])
		}
		fmt.Fprintf(&sb, "  - {name: join, handler: {callable: sum}, dependencies: [%s]}\n", strings.Join(deps, ", "))

		b := setup(t, func(c *tasker.Config) { c.Concurrency = 32 })
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
	})
}

func TestListTasks(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		b := setup(t)
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
	})
}

func TestShutdownGivesStepsBackWithoutSpendingAttempts(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		b := setup(t, func(c *tasker.Config) { c.ShutdownTimeout = 200 * time.Millisecond })
		b.register(t, linearYAML)
		started := make(chan struct{}, 1)
		b.engine.HandleFunc("add_one", func(ctx context.Context, s *tasker.Step) (any, error) {
			started <- struct{}{}
			<-ctx.Done() // a handler that needs longer than the shutdown allows
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

		// A second engine on the same store and queue picks it up and finishes the task.
		b2 := b.sibling(t)
		eng := b2.engine
		b2.register(t, linearYAML)
		eng.HandleFunc("add_one", addOne)
		b2.start(t)
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
		require.True(t, released, "the give-back is in the audit trail")
	})
}

// TestCancellationReachesOtherEnginesAtOnce: a task cancelled through one engine stops its handler
// running in another engine at once (the store announces the cancellation), not at the handler's
// next heartbeat, which the 30-second lease puts 10 seconds away.
func TestCancellationReachesOtherEnginesAtOnce(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		worker := setup(t, func(c *tasker.Config) { c.Lease = 30 * time.Second })
		worker.register(t, linearYAML)
		started := make(chan struct{})
		sawCancel := make(chan error, 1)
		worker.engine.HandleFunc("add_one", func(ctx context.Context, s *tasker.Step) (any, error) {
			close(started)
			<-ctx.Done()
			sawCancel <- context.Cause(ctx)
			return nil, ctx.Err()
		})
		worker.start(t)
		other := worker.sibling(t) // runs no workers: the handler is not here
		other.register(t, linearYAML)
		task := other.create(t, "test", "linear", nil)
		<-started
		// RunWorkers starts handlers only once its event listener is in place: no wait is needed.
		cancelledAt := time.Now()
		require.NoError(t, other.engine.CancelTask(context.Background(), task.ID, "stop"))
		select {
		case cause := <-sawCancel:
			require.ErrorIs(t, cause, tasker.ErrTaskCancelled)
			require.Less(t, time.Since(cancelledAt), 5*time.Second, "well before the next heartbeat")
		case <-time.After(8 * time.Second):
			t.Fatal("the handler in the other engine was not cancelled before its next heartbeat")
		}
		require.Equal(t, tasker.TaskCancelled, worker.wait(t, task.ID).State)
	})
}

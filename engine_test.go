package tasker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
)

const linearYAML = `
name: linear
namespace_name: test
version: 1.0.0
steps:
  - name: a
    handler: {callable: add_one}
  - name: b
    handler: {callable: add_one}
    dependencies: [a]
  - name: c
    handler: {callable: add_one}
    dependencies: [b]
`

// addOne returns 1 + the largest ancestor result (0 for a root).
func addOne(_ context.Context, s *tasker.Step) (any, error) {
	var best int64
	for _, raw := range s.DependencyResults() {
		var n int64
		if err := json.Unmarshal(raw, &n); err != nil {
			return nil, tasker.Permanent(err)
		}
		best = max(best, n)
	}
	return best + 1, nil
}

func TestLinearTaskCompletes(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		b := setup(t)
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
		// The task's own trail: created, started, steps enqueued, then evaluated to complete.
		require.Equal(t, []string{"create", "start", "initialized", "steps_enqueued", "evaluate", "all_steps_complete"}, taskEvents(trs))
	})
}

const flakyYAML = `
name: flaky
namespace_name: test
version: 1.0.0
steps:
  - name: first
    handler: {callable: flaky}
    retry: {retryable: true, max_attempts: %d, backoff: exponential, backoff_base_ms: 20, max_backoff_ms: 100}
    timeout_seconds: %s
  - name: after
    handler: {callable: add_one}
    dependencies: [first]
`

func flakyTemplate(maxAttempts int, timeout string) string {
	return fmt.Sprintf(flakyYAML, maxAttempts, timeout)
}

func TestStepOutcomes(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		tests := []struct {
			name         string
			maxAttempts  int
			timeout      string
			handler      func(ctx context.Context, s *tasker.Step) (any, error)
			wantState    tasker.TaskState
			wantAttempts int
			wantKind     string // the first step's last error kind
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
				b := setup(t)
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
					require.Contains(t, first.LastError.Stack, "engine_test.go")
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
	})
}

func TestRetryAfterAndBackoffAreHonoured(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		b := setup(t)
		b.register(t, flakyTemplate(3, "5"))
		var failedAt atomic.Int64
		var gap atomic.Int64
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
					Error     struct {
						Message string `json:"message"`
					} `json:"error"`
				}
				require.NoError(t, json.Unmarshal(tr.Metadata, &meta))
				require.Equal(t, int64(400), meta.RetryInMs)
				require.Contains(t, meta.Error.Message, "429")
				found = true
			}
		}
		require.True(t, found, "the retryable failure is in the audit trail")
		require.Contains(t, taskEvents(trs), "awaiting_retry", "the task waited for the retry")
	})
}

// TestUnknownHandlerStepWaits: a step whose handler this engine lacks is not failed (another
// engine may have the handler): it waits enqueued, with no attempt spent, Health lists it, and it
// runs once the handler is registered.
func TestUnknownHandlerStepWaits(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		b := setup(t)
		b.register(t, linearYAML) // add_one is not registered yet
		b.start(t)
		ctx := context.Background()
		created := b.create(t, "test", "linear", nil)
		require.Eventually(t, func() bool {
			h, err := b.engine.Health(ctx)
			require.NoError(t, err)
			return len(h.WaitingForHandler) == 1 && h.WaitingForHandler[0].Callable == "add_one"
		}, 30*time.Second, 20*time.Millisecond, "Health lists the step waiting for add_one")
		task, err := b.engine.GetTask(ctx, created.ID)
		require.NoError(t, err)
		a, _ := task.Step("a")
		require.Equal(t, tasker.StepEnqueued, a.State)
		require.Zero(t, a.Attempts)
		require.Nil(t, a.LastError)

		b.engine.HandleFunc("add_one", addOne)
		task = b.wait(t, created.ID)
		require.Equal(t, tasker.TaskComplete, task.State)
		c, _ := task.Step("c")
		require.Equal(t, int64(3), jsonInt(t, c.Result))
		h, err := b.engine.Health(ctx)
		require.NoError(t, err)
		require.Empty(t, h.WaitingForHandler)
	})
}

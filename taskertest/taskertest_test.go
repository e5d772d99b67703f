package taskertest_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/taskertest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeT records what the harness reports; Fatalf ends the goroutine as testing.T's does.
type fakeT struct {
	mu       sync.Mutex
	fatal    []string
	errors   []string
	cleanups []func()
}

func (f *fakeT) Helper()           {}
func (f *fakeT) Cleanup(fn func()) { f.mu.Lock(); f.cleanups = append(f.cleanups, fn); f.mu.Unlock() }
func (f *fakeT) Errorf(format string, args ...any) {
	f.mu.Lock()
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
	f.mu.Unlock()
}
func (f *fakeT) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.fatal = append(f.fatal, fmt.Sprintf(format, args...))
	f.mu.Unlock()
	runtime.Goexit()
}

// run calls fn in a goroutine of its own (Fatalf ends it) and returns the fatal message, if any.
func (f *fakeT) run(fn func()) string {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	<-done
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.fatal) == 0 {
		return ""
	}
	msg := f.fatal[0]
	f.fatal = nil
	return msg
}

func (f *fakeT) finish() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

const pairYAML = `
name: pair
namespace_name: test
version: 1.0.0
steps:
  - {name: first, handler: {callable: first}, retry: {max_attempts: 4, backoff_base_ms: 60000}}
  - {name: second, handler: {callable: second}, dependencies: [first]}
`

func TestRunWithStubs(t *testing.T) {
	t.Parallel()
	h := taskertest.New(t, taskertest.Template(t, pairYAML), taskertest.Handlers{
		"first": taskertest.FailTimes(3, errors.New("flaky"), 20),
		"second": func(_ context.Context, s *tasker.Step) (any, error) {
			var n int
			err := s.DependencyResult("first", &n)
			return n + 1, err
		},
	}, taskertest.WithFastRetries())
	start := time.Now()
	task := h.Run(context.Background(), nil)
	require.Less(t, time.Since(start), 10*time.Second, "no minute-long backoff with WithFastRetries")
	h.RequireState(task, tasker.TaskComplete)
	first := h.RequireStep(task, "first", tasker.StepComplete)
	require.Equal(t, 4, first.Attempts)
	require.Equal(t, 4, h.Calls("first"))
	h.RequireResult(task, "second", 21)
	var n int
	h.Result(task, "second", &n)
	require.Equal(t, 21, n)
	require.Equal(t, []string{"create", "enqueue", "start", "complete"}, h.History(task, "second"))
	require.NotEmpty(t, h.Transitions(task))
}

func TestFastRetriesLeaveTheCallersTemplateAlone(t *testing.T) {
	t.Parallel()
	tmpl := taskertest.Template(t, pairYAML)
	taskertest.New(t, tmpl, nil, taskertest.WithFastRetries())
	first, _ := tmpl.Step("first")
	require.NotEqual(t, tasker.BackoffNone, first.Retry.Backoff)
	require.Equal(t, time.Minute, first.Retry.BackoffBase)
}

func TestRetryBackoffAppliesWithoutFastRetries(t *testing.T) {
	t.Parallel()
	h := taskertest.New(t, taskertest.Template(t, pairYAML), taskertest.Handlers{
		"first":  taskertest.FailTimes(1, errors.New("flaky"), 1),
		"second": taskertest.Return(2),
	})
	ctx := context.Background()
	task := h.Start(ctx, nil)
	require.Eventually(t, func() bool {
		got, err := h.Engine.GetTask(ctx, task.ID)
		require.NoError(t, err)
		first, _ := got.Step("first")
		return first.State == tasker.StepWaitingForRetry && got.State == tasker.TaskWaitingForRetry
	}, 10*time.Second, 10*time.Millisecond, "the retry waits for its minute of backoff")
	require.NoError(t, h.Engine.CancelTask(ctx, task.ID, "enough"))
	h.RequireState(h.Wait(ctx, task.ID), tasker.TaskCancelled)
}

func TestCancelABlockedHandler(t *testing.T) {
	t.Parallel()
	started := make(chan *tasker.Step, 1)
	h := taskertest.New(t, taskertest.Template(t, pairYAML), taskertest.Handlers{
		"first":  taskertest.Block(started),
		"second": taskertest.Return(2),
	})
	ctx := context.Background()
	task := h.Start(ctx, nil)
	s := <-started
	require.Equal(t, "first", s.Name)
	require.NoError(t, h.Engine.CancelTask(ctx, task.ID, "customer left"))
	task = h.Wait(ctx, task.ID)
	h.RequireState(task, tasker.TaskCancelled)
	h.RequireStep(task, "second", tasker.StepCancelled)
}

func TestSeveralTemplates(t *testing.T) {
	t.Parallel()
	other := taskertest.Template(t, strings.ReplaceAll(strings.ReplaceAll(pairYAML, "name: pair", "name: other"), "namespace_name: test", "namespace_name: elsewhere"))
	h := taskertest.New(t, taskertest.Template(t, pairYAML), taskertest.Handlers{
		"first": taskertest.Return(1), "second": taskertest.Return(2),
	}, taskertest.WithTemplates(other))
	task := h.RunRequest(context.Background(), tasker.TaskRequest{Namespace: "elsewhere", Name: "other"})
	h.RequireState(task, tasker.TaskComplete)

	f := &fakeT{}
	defer f.finish()
	msg := f.run(func() {
		h2 := taskertest.New(f, nil, nil, taskertest.WithTemplates(other, taskertest.Template(t, pairYAML)))
		h2.Run(context.Background(), nil)
	})
	require.Contains(t, msg, "exactly one registered template")
}

func TestFailuresAreReportedWithTheTask(t *testing.T) {
	t.Parallel()
	f := &fakeT{}
	defer f.finish()
	h := taskertest.New(f, taskertest.Template(t, pairYAML), taskertest.Handlers{
		"first":  taskertest.Fail(tasker.Permanent(errors.New("card declined"))),
		"second": taskertest.Return(2),
	})
	var task *tasker.Task
	require.Empty(t, f.run(func() { task = h.Run(context.Background(), nil) }))
	h.RequireState(task, tasker.TaskBlockedByFailures)

	msg := f.run(func() { h.RequireState(task, tasker.TaskComplete) })
	require.Contains(t, msg, "is blocked_by_failures, want complete")
	require.Contains(t, msg, "card declined", "the description names the failure")
	require.Contains(t, f.run(func() { h.RequireStep(task, "first", tasker.StepComplete) }), `step "first" is error, want complete`)
	require.Contains(t, f.run(func() { h.RequireStep(task, "nope", tasker.StepComplete) }), `no step "nope"`)
	require.Contains(t, f.run(func() { h.RequireResult(task, "first", 1) }), `has no result`)
	require.Contains(t, f.run(func() { var v int; h.Result(task, "second", &v) }), `has no result`)
	require.Contains(t, f.run(func() { h.RequireResult(task, "nope", 1) }), `no step "nope"`)
	require.Contains(t, f.run(func() { h.RequireResult(task, "first", make(chan int)) }), "not JSON-encodable")

	ok := taskertest.New(f, taskertest.Template(t, pairYAML), taskertest.Handlers{"first": taskertest.Return(map[string]any{"a": 1}), "second": taskertest.Return(2)})
	done := ok.Run(context.Background(), nil)
	require.Contains(t, f.run(func() { ok.RequireResult(done, "first", map[string]any{"a": 2}) }), `result of "first" is {"a": 1}, want {"a":2}`)
	require.Empty(t, f.run(func() {
		ok.RequireResult(done, "first", struct {
			A int `json:"a"`
		}{1})
	}), "a struct compares as its JSON")
}

func TestWaitTimesOutWithTheStepsStates(t *testing.T) {
	t.Parallel()
	f := &fakeT{}
	defer f.finish()
	h := taskertest.New(f, taskertest.Template(t, pairYAML), taskertest.Handlers{
		"first": taskertest.Block(nil), "second": taskertest.Return(2),
	}, taskertest.WithConfig(func(c *tasker.Config) { c.ShutdownTimeout = 100 * time.Millisecond }))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	msg := f.run(func() { h.Run(ctx, nil) })
	require.Contains(t, msg, "context deadline exceeded")
	require.Contains(t, msg, "first")
	require.Contains(t, msg, "in_progress")
}

func TestInvalidTemplateFailsTheTest(t *testing.T) {
	t.Parallel()
	f := &fakeT{}
	defer f.finish()
	msg := f.run(func() { taskertest.Template(f, "name: x\nsteps: []\nbogus: 1\n") })
	require.NotEmpty(t, msg)
	msg = f.run(func() { h := taskertest.New(f, nil, nil); h.Run(context.Background(), nil) })
	require.Contains(t, msg, "found 0")
}

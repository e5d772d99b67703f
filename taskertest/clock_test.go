package taskertest_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/taskertest"
)

// clockStart is the controlled clock's time at the start of each test: years from the real one,
// so that a reading of the system clock where the controlled one belongs shows.
var clockStart = time.Date(2030, 1, 1, 0, 30, 0, 0, time.UTC)

// The templates of the clock tests, all in namespace "clock": a probe, run to completion as a
// barrier, proves that the workers have read the namespace's queue after the clock moved.
const (
	clockOnceYAML = `
name: once
namespace_name: clock
version: 1.0.0
steps:
  - {name: tick, handler: {callable: tick}}
`
	clockProbeYAML = `
name: probe
namespace_name: clock
version: 1.0.0
steps:
  - {name: probe, handler: {callable: probe}}
`
	clockSleepYAML = `
name: nap
namespace_name: clock
version: 1.0.0
steps:
  - name: nap
    handler: {callable: tasker.sleep, initialization: {seconds: 3600}}
  - {name: after, handler: {callable: tick}, dependencies: [nap]}
`
	clockRetryYAML = `
name: flaky
namespace_name: clock
version: 1.0.0
steps:
  - name: tick
    handler: {callable: tick}
    retry: {max_attempts: 2, backoff: exponential, backoff_base_ms: 600000, max_backoff_ms: 600000}
`
)

// clockSignalYAML waits 30 minutes for a signal, with the given on_timeout policy.
func clockSignalYAML(name, onTimeout string) string {
	return `
name: ` + name + `
namespace_name: clock
version: 1.0.0
steps:
  - name: wait
    handler:
      callable: tasker.wait_for_signal
      initialization: {timeout_seconds: 1800, on_timeout: ` + onTimeout + `, default_result: {approved: false}}
  - {name: after, handler: {callable: pass_on}, dependencies: [wait]}
`
}

// newClockHarness is a harness on a controlled clock with the probe and the given templates.
func newClockHarness(t *testing.T, handlers taskertest.Handlers, yamls []string, opts ...taskertest.Option) (*taskertest.Harness, *taskertest.Clock) {
	t.Helper()
	clk := taskertest.NewClock(clockStart)
	tmpls := []*tasker.Template{taskertest.Template(t, clockProbeYAML)}
	for _, y := range yamls {
		tmpls = append(tmpls, taskertest.Template(t, y))
	}
	handlers["probe"] = taskertest.Return("ok")
	opts = append([]taskertest.Option{taskertest.WithClock(clk), taskertest.WithTemplates(tmpls...)}, opts...)
	return taskertest.New(t, nil, handlers, opts...), clk
}

// probe runs a probe task to completion: the workers have been through the queue since.
func probe(t *testing.T, h *taskertest.Harness) {
	t.Helper()
	got := h.RunRequest(context.Background(), tasker.TaskRequest{Namespace: "clock", Name: "probe", IdempotencyKey: uuid.NewString()})
	h.RequireState(got, tasker.TaskComplete)
}

// requireWaiting fails unless the task's step still waits, with attempts made.
func requireWaiting(t *testing.T, h *taskertest.Harness, task *tasker.Task, step string, attempts int) *tasker.Task {
	t.Helper()
	got, err := h.Engine.GetTask(context.Background(), task.ID)
	require.NoError(t, err)
	s := h.RequireStep(got, step, tasker.StepWaitingForRetry)
	require.Equal(t, attempts, s.Attempts, "attempts of %s\n%s", step, taskertest.Describe(got))
	return got
}

// TestClockRunAt: a task scheduled an hour ahead has not started 59 minutes on, and runs once the
// clock passes its start.
func TestClockRunAt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	realStart := time.Now()
	h, clk := newClockHarness(t, taskertest.Handlers{"tick": taskertest.Return("ran")}, []string{clockOnceYAML})

	task := h.StartRequest(ctx, tasker.TaskRequest{Namespace: "clock", Name: "once", RunAt: clk.Now().Add(time.Hour)})
	require.NotNil(t, task.RunAt)
	require.Equal(t, clockStart.Add(time.Hour), task.RunAt.UTC())

	clk.Advance(59 * time.Minute)
	probe(t, h)
	got := requireWaiting(t, h, task, "tick", 0)
	require.NotNil(t, got.RunAt, "still scheduled")
	require.Zero(t, h.Calls("tick"))

	clk.Advance(2 * time.Minute)
	got = h.Wait(ctx, task.ID)
	h.RequireState(got, tasker.TaskComplete)
	tick := h.RequireStep(got, "tick", tasker.StepComplete)
	require.Equal(t, 1, h.Calls("tick"))
	require.Equal(t, 1, tick.Attempts)
	require.False(t, tick.StartedAt.Before(clockStart.Add(time.Hour)), "started at %s, not before its start", tick.StartedAt)
	require.Equal(t, clockStart.Add(61*time.Minute), tick.StartedAt.UTC(), "started at the clock's time")
	t.Logf("real time taken: %s", time.Since(realStart))
}

// TestClockCron: an hourly schedule creates exactly one run per hour of the clock, three over
// three hours, each with its scheduled time, and none before the clock moves.
func TestClockCron(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	realStart := time.Now()
	var (
		mu  sync.Mutex
		ran []time.Time // the runs' scheduled times, as their handlers saw them
	)
	tick := func(_ context.Context, s *tasker.Step) (any, error) {
		var in struct {
			ScheduledAt time.Time `json:"scheduled_at"`
		}
		if err := s.Input(&in); err != nil {
			return nil, tasker.Permanent(err)
		}
		mu.Lock()
		ran = append(ran, in.ScheduledAt)
		mu.Unlock()
		return "ran", nil
	}
	h, clk := newClockHarness(t, taskertest.Handlers{"tick": tick}, []string{clockOnceYAML},
		taskertest.WithSchedules(tasker.Schedule{Name: "hourly", Namespace: "clock", TaskName: "once", Cron: "@hourly"}))

	list := func() []tasker.Task {
		tasks, err := h.Engine.ListTasks(ctx, tasker.ListOptions{Namespace: "clock", Name: "once"})
		require.NoError(t, err)
		return tasks
	}
	probe(t, h)
	require.Empty(t, list(), "no run before the clock moves")

	clk.Advance(3 * time.Hour)
	var tasks []tasker.Task
	require.Eventually(t, func() bool { tasks = list(); return len(tasks) >= 3 }, 10*time.Second, time.Millisecond)
	for _, task := range tasks {
		h.RequireState(h.Wait(ctx, task.ID), tasker.TaskComplete)
	}
	probe(t, h) // a pass after the runs finds nothing more due
	require.Len(t, list(), 3)
	mu.Lock()
	got := slices.Clone(ran)
	mu.Unlock()
	slices.SortFunc(got, time.Time.Compare)
	want := []time.Time{clockStart.Add(30 * time.Minute), clockStart.Add(90 * time.Minute), clockStart.Add(150 * time.Minute)}
	require.Len(t, got, 3)
	for i := range want {
		require.True(t, want[i].Equal(got[i]), "run %d scheduled at %s, want %s", i, got[i], want[i])
	}

	clk.Advance(29 * time.Minute) // 03:59: the next run is at 04:00
	probe(t, h)
	require.Len(t, list(), 3, "no run before its time")
	clk.Advance(time.Minute)
	require.Eventually(t, func() bool { return len(list()) == 4 }, 10*time.Second, time.Millisecond)
	t.Logf("real time taken: %s", time.Since(realStart))
}

// TestClockDurableSleep: an hour's sleep parks, wakes when the clock has moved an hour on, and not
// before.
func TestClockDurableSleep(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	realStart := time.Now()
	h, clk := newClockHarness(t, taskertest.Handlers{"tick": taskertest.Return("awake")}, []string{clockSleepYAML})

	task := h.StartRequest(ctx, tasker.TaskRequest{Namespace: "clock", Name: "nap"})
	h.WaitStep(ctx, task.ID, "nap", tasker.StepWaitingForRetry)
	clk.Advance(59 * time.Minute)
	probe(t, h)
	requireWaiting(t, h, task, "nap", 1)
	require.Zero(t, h.Calls("after"))

	clk.Advance(time.Minute)
	got := h.Wait(ctx, task.ID)
	h.RequireState(got, tasker.TaskComplete)
	var res map[string]time.Time
	h.Result(got, "nap", &res)
	require.Equal(t, clockStart.Add(time.Hour), res["slept_until"].UTC())
	nap := h.RequireStep(got, "nap", tasker.StepComplete)
	require.Equal(t, clockStart.Add(time.Hour), nap.CompletedAt.UTC())
	require.Equal(t, 1, h.Calls("after"))
	t.Logf("real time taken: %s", time.Since(realStart))
}

// passOnWait returns the wait step's result.
func passOnWait(_ context.Context, s *tasker.Step) (any, error) {
	var v any
	if err := s.DependencyResult("wait", &v); err != nil {
		return nil, tasker.Permanent(err)
	}
	return v, nil
}

// TestClockSignalTimeout: a 30-minute wait for a signal times out when the clock passes it, and
// not before: on_timeout default completes it with its default result, on_timeout fail fails it
// for good; a signal within the 30 minutes completes its wait with the payload, at the clock's
// time.
func TestClockSignalTimeout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	realStart := time.Now()
	h, clk := newClockHarness(t, taskertest.Handlers{"pass_on": passOnWait},
		[]string{clockSignalYAML("lenient", "default"), clockSignalYAML("strict", "fail")})

	lenient := h.StartRequest(ctx, tasker.TaskRequest{Namespace: "clock", Name: "lenient"})
	strict := h.StartRequest(ctx, tasker.TaskRequest{Namespace: "clock", Name: "strict"})
	signalled := h.StartRequest(ctx, tasker.TaskRequest{Namespace: "clock", Name: "strict", IdempotencyKey: "signalled"})
	for _, task := range []*tasker.Task{lenient, strict, signalled} {
		h.WaitStep(ctx, task.ID, "wait", tasker.StepWaitingForRetry)
	}
	clk.Advance(29 * time.Minute)
	probe(t, h)
	requireWaiting(t, h, lenient, "wait", 1)
	requireWaiting(t, h, strict, "wait", 1)

	require.NoError(t, h.Engine.Signal(ctx, signalled.ID, "wait", map[string]any{"approved": true}))
	got := h.Wait(ctx, signalled.ID)
	h.RequireState(got, tasker.TaskComplete)
	h.RequireResult(got, "after", map[string]any{"approved": true})
	require.Equal(t, clockStart.Add(29*time.Minute), h.RequireStep(got, "wait", tasker.StepComplete).CompletedAt.UTC())

	clk.Advance(time.Minute)
	got = h.Wait(ctx, lenient.ID)
	h.RequireState(got, tasker.TaskComplete)
	h.RequireResult(got, "after", map[string]any{"approved": false})
	w := h.RequireStep(got, "wait", tasker.StepComplete)
	require.Equal(t, clockStart.Add(30*time.Minute), w.CompletedAt.UTC())

	got = h.Wait(ctx, strict.ID)
	h.RequireState(got, tasker.TaskBlockedByFailures)
	w = h.RequireStep(got, "wait", tasker.StepError)
	require.Contains(t, w.LastError.Message, "no signal before the timeout")
	h.RequireStep(got, "after", tasker.StepPending)
	t.Logf("real time taken: %s", time.Since(realStart))
}

// TestClockRetryBackoff: a failed attempt waits its backoff (8 to 10 minutes: 10 minutes,
// jittered within the cap) on the clock, and the retry runs once the clock passes it.
func TestClockRetryBackoff(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	realStart := time.Now()
	h, clk := newClockHarness(t, taskertest.Handlers{"tick": taskertest.FailTimes(1, errors.New("flaky"), "ran")},
		[]string{clockRetryYAML})

	task := h.StartRequest(ctx, tasker.TaskRequest{Namespace: "clock", Name: "flaky"})
	got := h.WaitStep(ctx, task.ID, "tick", tasker.StepWaitingForRetry)
	s := h.RequireStep(got, "tick", tasker.StepWaitingForRetry)
	require.NotNil(t, s.NextRetryAt)
	wait := s.NextRetryAt.Sub(clockStart)
	require.GreaterOrEqual(t, wait, 8*time.Minute)
	require.LessOrEqual(t, wait, 10*time.Minute)

	clk.Advance(wait - time.Second)
	probe(t, h)
	requireWaiting(t, h, task, "tick", 1)
	require.Equal(t, 1, h.Calls("tick"))

	clk.Advance(time.Second)
	got = h.Wait(ctx, task.ID)
	h.RequireState(got, tasker.TaskComplete)
	s = h.RequireStep(got, "tick", tasker.StepComplete)
	require.Equal(t, 2, s.Attempts)
	require.Equal(t, 2, h.Calls("tick"))
	require.Equal(t, clockStart.Add(wait), s.StartedAt.UTC())
	require.Equal(t, []string{"create", "enqueue", "start", "fail_retryable", "enqueue", "start", "complete"}, h.History(got, "tick"))
	t.Logf("real time taken: %s", time.Since(realStart))
}

// TestClockStepTimeout: a handler that runs past its step's timeout_seconds on the clock is timed
// out when the clock passes it, and not before.
func TestClockStepTimeout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	started := make(chan struct{})
	returned := make(chan error, 1)
	hang := func(ctx context.Context, _ *tasker.Step) (any, error) {
		close(started)
		<-ctx.Done()
		returned <- context.Cause(ctx)
		return nil, ctx.Err()
	}
	h, clk := newClockHarness(t, taskertest.Handlers{"hang": hang}, []string{`
name: slow
namespace_name: clock
version: 1.0.0
steps:
  - {name: hang, handler: {callable: hang}, timeout_seconds: 600, retry: {max_attempts: 1}}
`})
	task := h.StartRequest(ctx, tasker.TaskRequest{Namespace: "clock", Name: "slow"})
	<-started
	clk.Advance(9 * time.Minute)
	probe(t, h)
	select {
	case err := <-returned:
		t.Fatalf("the handler's context ended before its timeout: %v", err)
	default:
	}

	clk.Advance(time.Minute)
	select {
	case err := <-returned:
		require.ErrorContains(t, err, "timed out", "the context ended with the step's timeout")
	case <-time.After(10 * time.Second):
		t.Fatal("the handler's context did not end once the clock passed its timeout")
	}
	got := h.Wait(ctx, task.ID)
	h.RequireState(got, tasker.TaskBlockedByFailures)
	s := h.RequireStep(got, "hang", tasker.StepError)
	require.Equal(t, "timeout", s.LastError.Kind)
}

// TestClockTimers: Advance runs the timers it makes due before it returns, earliest deadline
// first (arming order between equal ones), and no other; a stopped timer does not run; a timer for
// a time already reached runs at once, in a goroutine of its own.
func TestClockTimers(t *testing.T) {
	t.Parallel()
	clk := taskertest.NewClock(clockStart)
	var (
		mu    sync.Mutex
		order []string
	)
	record := func(name string) func() {
		return func() { mu.Lock(); order = append(order, name); mu.Unlock() }
	}
	fired := func() []string { mu.Lock(); defer mu.Unlock(); return slices.Clone(order) }

	clk.At(clockStart.Add(3*time.Minute), record("3m"))
	clk.At(clockStart.Add(time.Minute), record("1m"))
	clk.At(clockStart.Add(time.Minute), record("1m again"))
	stop := clk.At(clockStart.Add(2*time.Minute), record("2m stopped"))
	clk.At(clockStart.Add(time.Hour), record("1h"))
	require.True(t, stop(), "stopped before it ran")
	require.False(t, stop(), "stopped once")

	clk.Advance(59 * time.Second)
	require.Empty(t, fired())
	clk.Advance(3 * time.Minute)
	require.Equal(t, []string{"1m", "1m again", "3m"}, fired())
	require.Equal(t, clockStart.Add(59*time.Second+3*time.Minute), clk.Now())

	done := make(chan struct{})
	require.False(t, clk.At(clockStart, func() { close(done) })(), "a timer due already runs, it cannot be stopped")
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a timer for a time already reached did not run")
	}
	require.Panics(t, func() { clk.Advance(-time.Second) })
	require.Equal(t, []string{"1m", "1m again", "3m"}, fired(), "the 1h timer waits")
}

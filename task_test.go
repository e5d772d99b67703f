package tasker_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
)

const createDiamondYAML = `
name: created
namespace_name: create
version: 1.0.0
steps:
  - {name: start, handler: {callable: add_one}}
  - {name: left, handler: {callable: add_one}, dependencies: [start]}
  - {name: right, handler: {callable: add_one}, dependencies: [start]}
  - {name: join, handler: {callable: add_one}, dependencies: [left, right]}
`

// requireAsCreated checks that a task returned by CreateTask carries every step of the diamond as
// its creation wrote it, whatever the workers did since.
func requireAsCreated(t *testing.T, task *tasker.Task) {
	t.Helper()
	require.Len(t, task.Steps, 4, "CreateTask returns the task's steps")
	want := map[string]tasker.StepState{"start": tasker.StepEnqueued, "left": tasker.StepPending, "right": tasker.StepPending, "join": tasker.StepPending}
	for i, name := range []string{"start", "left", "right", "join"} {
		s := task.Steps[i]
		require.Equal(t, name, s.Name, "steps in creation order")
		require.Equal(t, want[name], s.State, "step %s as created", name)
		require.Equal(t, "add_one", s.Handler)
		require.Zero(t, s.Attempts, "step %s: no attempt at creation", name)
		require.Nil(t, s.Result)
		require.Nil(t, s.StartedAt)
		require.NotEqual(t, uuid.Nil, s.ID)
	}
	require.Equal(t, tasker.TaskStepsInProcess, task.State)
}

func TestCreateTaskReturnsInitialSteps(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		b := setup(t)
		b.register(t, createDiamondYAML)
		b.engine.HandleFunc("add_one", addOne)
		b.start(t)
		ctx := context.Background()

		for i := range 5 {
			task, err := b.engine.CreateTask(ctx, tasker.TaskRequest{Namespace: "create", Name: "created", Context: map[string]int{"n": i}})
			require.NoError(t, err)
			requireAsCreated(t, task)
			done := b.wait(t, task.ID)
			require.Equal(t, tasker.TaskComplete, done.State)
			for j := range done.Steps {
				require.Equal(t, task.Steps[j].ID, done.Steps[j].ID, "the same steps")
			}

			// A duplicate returns the existing task with its steps as found: complete now.
			dup, err := b.engine.CreateTask(ctx, tasker.TaskRequest{Namespace: "create", Name: "created", Context: map[string]int{"n": i}})
			require.ErrorIs(t, err, tasker.ErrDuplicateTask)
			require.Equal(t, task.ID, dup.ID)
			require.Len(t, dup.Steps, 4)
			for _, s := range dup.Steps {
				require.Equal(t, tasker.StepComplete, s.State, "duplicate's step %s as found", s.Name)
			}
		}

		if b.db == nil {
			return
		}
		// In the caller's transaction: the steps as written, before the commit makes them visible.
		tx, err := b.db.Pool.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(ctx) }()
		task, err := b.engine.CreateTaskTx(ctx, tx, tasker.TaskRequest{Namespace: "create", Name: "created", Context: map[string]string{"in": "tx"}})
		require.NoError(t, err)
		requireAsCreated(t, task)
		require.NoError(t, tx.Commit(ctx))
		require.Equal(t, tasker.TaskComplete, b.wait(t, task.ID).State)
	})
}

const blockedDiamondYAML = `
name: blocked
namespace_name: wait
version: 1.0.0
steps:
  - {name: start, handler: {callable: add_one}}
  - {name: fails, handler: {callable: fail_now}, dependencies: [start]}
  - {name: slow, handler: {callable: held}, dependencies: [start]}
  - {name: join, handler: {callable: add_one}, dependencies: [fails, slow]}
`

func TestWaitTaskWaitsForStepsInFlight(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		b := setup(t)
		b.register(t, blockedDiamondYAML)
		started, release := make(chan struct{}), make(chan struct{})
		b.engine.HandleFunc("add_one", addOne)
		b.engine.HandleFunc("fail_now", func(context.Context, *tasker.Step) (any, error) {
			return nil, tasker.Permanent(errors.New("declined"))
		})
		b.engine.HandleFunc("held", func(ctx context.Context, _ *tasker.Step) (any, error) {
			close(started)
			select {
			case <-release:
				return "slow done", nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		})
		b.start(t)
		ctx := context.Background()
		task := b.create(t, "wait", "blocked", nil)

		<-started
		// The failure blocks the task while slow still runs.
		require.Eventually(t, func() bool {
			got, err := b.engine.GetTask(ctx, task.ID)
			require.NoError(t, err)
			return got.State == tasker.TaskBlockedByFailures
		}, 30*time.Second, 10*time.Millisecond)

		type waited struct {
			task *tasker.Task
			err  error
		}
		done := make(chan waited, 1)
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		go func() {
			got, err := b.engine.WaitTask(wctx, task.ID)
			done <- waited{got, err}
		}()
		select {
		case w := <-done:
			var states []string
			if w.task != nil {
				for _, s := range w.task.Steps {
					states = append(states, s.Name+"="+string(s.State))
				}
			}
			t.Fatalf("WaitTask returned while slow was still running: %v %v %v", w.err, w.task.State, states)
		case <-time.After(500 * time.Millisecond):
		}

		close(release)
		w := <-done
		require.NoError(t, w.err)
		require.Equal(t, tasker.TaskBlockedByFailures, w.task.State)
		states := map[string]tasker.StepState{}
		for _, s := range w.task.Steps {
			states[s.Name] = s.State
		}
		require.Equal(t, map[string]tasker.StepState{"start": tasker.StepComplete, "fails": tasker.StepError,
			"slow": tasker.StepComplete, "join": tasker.StepPending}, states)
		var res string
		require.NoError(t, w.task.Result("slow", &res))
		require.Equal(t, "slow done", res)

		// Settled now: another wait returns at once.
		again := b.wait(t, task.ID)
		require.Equal(t, tasker.TaskBlockedByFailures, again.State)
	})
}

func TestStrictIdentityCanonicalNumbers(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		b := setup(t)
		b.register(t, `
name: payment
namespace_name: ident
version: 1.0.0
identity_strategy: strict
steps:
  - {name: a, handler: {callable: add_one}}
`)
		ctx := context.Background()
		create := func(raw string) (*tasker.Task, error) {
			return b.engine.CreateTask(ctx, tasker.TaskRequest{Namespace: "ident", Name: "payment", Context: json.RawMessage(raw)})
		}
		first, err := create(`{"amount":1}`)
		require.NoError(t, err)
		for _, same := range []string{`{"amount":1.0}`, `{"amount":1e0}`, `{"amount": 10e-1}`, `{"amount":1.00}`} {
			again, err := create(same)
			require.ErrorIs(t, err, tasker.ErrDuplicateTask, same)
			var dup *tasker.DuplicateTaskError
			require.ErrorAs(t, err, &dup)
			require.Equal(t, first.ID, dup.ExistingID, same)
			require.Equal(t, first.ID, again.ID, same)
			require.Equal(t, first.IdentityHash, dup.Identity)
		}

		other, err := create(`{"amount":1.5}`)
		require.NoError(t, err)
		require.NotEqual(t, first.ID, other.ID)
		big1, err := create(`{"amount":12345678901234567890}`)
		require.NoError(t, err)
		big2, err := create(`{"amount":12345678901234567891}`)
		require.NoError(t, err, "numbers equal as float64 are distinct values")
		require.NotEqual(t, big1.ID, big2.ID)
		_, err = create(`{"amount":-0}`)
		require.NoError(t, err)
		_, err = create(`{"amount":0.0}`)
		require.ErrorIs(t, err, tasker.ErrDuplicateTask, "-0 and 0.0 are one value")
	})
}

func TestTaskOriginRoundTrip(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		b := setup(t)
		b.register(t, linearYAML)
		ctx := context.Background()
		req := tasker.TaskRequest{Namespace: "test", Name: "linear", Context: map[string]int{"x": 1},
			Initiator: "ana@example.com", SourceSystem: "billing-api", Reason: "monthly invoice run — résumé ✓",
			Priority: -7, CorrelationID: "corr-9", Tags: []string{"invoice"}}
		created, err := b.engine.CreateTask(ctx, req)
		require.NoError(t, err)
		check := func(got *tasker.Task, from string) {
			t.Helper()
			require.Equal(t, []any{"ana@example.com", "billing-api", "monthly invoice run — résumé ✓", -7, "corr-9"},
				[]any{got.Initiator, got.SourceSystem, got.Reason, got.Priority, got.CorrelationID}, from)
		}
		check(created, "CreateTask")
		got, err := b.engine.GetTask(ctx, created.ID)
		require.NoError(t, err)
		check(got, "GetTask")
		listed, err := b.engine.ListTasks(ctx, tasker.ListOptions{Namespace: "test"})
		require.NoError(t, err)
		require.Len(t, listed, 1)
		check(&listed[0], "ListTasks")

		// Left empty, they read back empty.
		bare, err := b.engine.CreateTask(ctx, tasker.TaskRequest{Namespace: "test", Name: "linear", Context: map[string]int{"x": 2}})
		require.NoError(t, err)
		got, err = b.engine.GetTask(ctx, bare.ID)
		require.NoError(t, err)
		require.Equal(t, []any{"", "", "", 0}, []any{got.Initiator, got.SourceSystem, got.Reason, got.Priority})

		// Values no store can keep are rejected, typed, and nothing is written.
		long := strings.Repeat("x", tasker.MaxOriginBytes+1)
		for name, bad := range map[string]tasker.TaskRequest{
			"initiator NUL":         {Initiator: "ana\x00"},
			"source_system UTF-8":   {SourceSystem: "billing\xff"},
			"reason lone surrogate": {Reason: "\xed\xa0\x80"},
			"reason too long":       {Reason: long},
			"initiator too long":    {Initiator: long},
			"priority out of range": {Priority: 1 << 40},
		} {
			bad.Namespace, bad.Name, bad.Context = "test", "linear", map[string]string{"case": name}
			_, err := b.engine.CreateTask(ctx, bad)
			require.ErrorIs(t, err, tasker.ErrInvalidInput, name)
			var ie *tasker.InputError
			require.ErrorAs(t, err, &ie, name)
			require.Len(t, ie.Violations, 1, name)
		}
		all, err := b.engine.ListTasks(ctx, tasker.ListOptions{})
		require.NoError(t, err)
		require.Len(t, all, 2, "no rejected request wrote a task")

		// The bound itself is accepted.
		edge := strings.Repeat("é", tasker.MaxOriginBytes/2)
		_, err = b.engine.CreateTask(ctx, tasker.TaskRequest{Namespace: "test", Name: "linear", Context: map[string]int{"x": 3}, Reason: edge})
		require.NoError(t, err)
	})
}

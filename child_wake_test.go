package tasker_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
)

// The parent of the wake-up tests: one step that runs a child and fails for good when the child
// fails (max_attempts 1: the parks do not count).
const parentOnceYAML = `
name: parent_once
namespace_name: family
version: 1.0.0
steps:
  - name: spawn
    handler: {callable: spawn_once}
    retry: {max_attempts: 1, backoff: none}
`

// The child of the wake-up tests: its one step runs the handler "child_step", which each test
// binds (or leaves unbound, so that the step waits in the queue), with one attempt.
const wakeChildYAML = `
name: wake_child
namespace_name: test
version: 1.0.0
steps:
  - name: work
    handler: {callable: child_step}
    retry: {max_attempts: 1}
`

// childWakeWithin bounds how long a parent may take to see its child's end: well under
// tasker.ChildPollInterval, so that only a wake-up passes.
const childWakeWithin = 10 * time.Second

// onPostgresAndMemory runs f as a parallel subtest on PostgreSQL (with its own queue) and on the
// memory store.
func onPostgresAndMemory(t *testing.T, f func(t *testing.T, setup setupFunc)) {
	t.Helper()
	for _, be := range []string{backendPostgres, backendMemory} {
		t.Run(be, func(t *testing.T) {
			t.Parallel()
			f(t, func(t testing.TB, opts ...setupOpt) *bundle { return setupOn(t, be, opts...) })
		})
	}
}

// wireWakeParent registers the wake-up tests' templates and the parent's handler; childStep,
// when not nil, is the child's handler.
func wireWakeParent(t testing.TB, b *bundle, childStep tasker.HandlerFunc) {
	b.register(t, parentOnceYAML)
	b.register(t, wakeChildYAML)
	b.engine.HandleFunc("spawn_once", func(ctx context.Context, s *tasker.Step) (any, error) {
		child, err := s.Child(ctx, tasker.TaskRequest{Namespace: "test", Name: "wake_child"})
		if err != nil {
			return nil, err
		}
		return child.State, nil
	})
	if childStep != nil {
		b.engine.Handle("child_step", childStep)
	}
}

// hangUntilCancelled is a child's handler that runs until its context ends.
func hangUntilCancelled(ctx context.Context, _ *tasker.Step) (any, error) {
	<-ctx.Done()
	return nil, context.Cause(ctx)
}

// parkedChild starts a parent and waits until its step has parked on its child, which it returns.
func parkedChild(t *testing.T, b *bundle) (parent, child *tasker.Task) {
	t.Helper()
	parent = b.create(t, "family", "parent_once", nil)
	waitParked(t, b, "spawn", parent.ID)
	var id uuid.UUID
	require.Eventually(t, func() bool {
		children, err := b.engine.ListTasks(context.Background(), tasker.ListOptions{Namespace: "test", Name: "wake_child"})
		require.NoError(t, err)
		if len(children) == 0 {
			return false
		}
		id = children[0].ID
		return true
	}, 10*time.Second, 5*time.Millisecond, "the child exists")
	child, err := b.engine.GetTask(context.Background(), id)
	require.NoError(t, err)
	return parent, child
}

// requireWokenByFailedChild waits for the parent to fail on its child's end, within
// childWakeWithin of since.
func requireWokenByFailedChild(t *testing.T, b *bundle, parent uuid.UUID, since time.Time, childState tasker.TaskState) {
	t.Helper()
	done := b.waitWithin(t, parent, childWakeWithin)
	took := time.Since(since)
	require.Less(t, took, childWakeWithin, "the child's end woke the parent (no poll)")
	require.Equal(t, tasker.TaskBlockedByFailures, done.State)
	sp, _ := done.Step("spawn")
	require.Equal(t, tasker.StepError, sp.State)
	require.Contains(t, sp.LastError.Message, "ended "+string(childState))
	t.Logf("the parent saw its child %s %v after the child's end", childState, took.Round(time.Millisecond))
}

// TestChildCancelledWakesParent: a child task cancelled with CancelTask wakes its parked parent
// at once, which fails with the child's ChildFailedError rather than at its next poll.
func TestChildCancelledWakesParent(t *testing.T) {
	t.Parallel()
	onPostgresAndMemory(t, func(t *testing.T, setup setupFunc) {
		b := setup(t)
		wireWakeParent(t, b, hangUntilCancelled)
		b.start(t)
		parent, child := parkedChild(t, b)
		start := time.Now()
		require.NoError(t, b.engine.CancelTask(context.Background(), child.ID, "not needed"))
		requireWokenByFailedChild(t, b, parent.ID, start, tasker.TaskCancelled)
	})
}

// TestChildCancelledElsewhereWakesParent: a child cancelled by another engine, one that runs no
// workers (an API process), wakes the parent as well.
func TestChildCancelledElsewhereWakesParent(t *testing.T) {
	t.Parallel()
	onPostgresAndMemory(t, func(t *testing.T, setup setupFunc) {
		b := setup(t)
		wireWakeParent(t, b, hangUntilCancelled)
		b.start(t)
		parent, child := parkedChild(t, b)
		api := b.sibling(t)
		start := time.Now()
		require.NoError(t, api.engine.CancelTask(context.Background(), child.ID, "not needed"))
		requireWokenByFailedChild(t, b, parent.ID, start, tasker.TaskCancelled)
	})
}

// TestChildCancelledInTxWakesParent: a child cancelled in the caller's transaction
// (CancelTaskTx) wakes the parent once the transaction commits, through the store's announcement
// (PostgreSQL only: the memory store has no transactions).
func TestChildCancelledInTxWakesParent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	wireWakeParent(t, b, hangUntilCancelled)
	b.start(t)
	parent, child := parkedChild(t, b)
	ctx := context.Background()
	tx, err := b.db.Pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, b.engine.CancelTaskTx(ctx, tx, child.ID, "not needed"))
	start := time.Now()
	require.NoError(t, tx.Commit(ctx))
	requireWokenByFailedChild(t, b, parent.ID, start, tasker.TaskCancelled)
}

// TestChildDeadLetteredWakesParent: an operator who dead-letters a running child and moves it to
// error (DeadLetterTask with MoveToError) wakes its parent at once.
func TestChildDeadLetteredWakesParent(t *testing.T) {
	t.Parallel()
	onPostgresAndMemory(t, func(t *testing.T, setup setupFunc) {
		b := setup(t)
		wireWakeParent(t, b, hangUntilCancelled)
		b.start(t)
		parent, child := parkedChild(t, b)
		start := time.Now()
		_, err := b.engine.DeadLetterTask(context.Background(), child.ID, tasker.DeadLetterRequest{By: "alice", Reason: "stuck", MoveToError: true})
		require.NoError(t, err)
		requireWokenByFailedChild(t, b, parent.ID, start, tasker.TaskError)
	})
}

// TestChildRescuedToFailureWakesParent: the child's step is held by a worker that died; the
// lease rescuer fails it (no attempt left), which brings the child to rest in
// blocked_by_failures and wakes the parent at once.
func TestChildRescuedToFailureWakesParent(t *testing.T) {
	t.Parallel()
	onPostgresAndMemory(t, func(t *testing.T, setup setupFunc) {
		b := setup(t, func(c *tasker.Config) { c.Lease = time.Second; c.RescueInterval = 100 * time.Millisecond })
		wireWakeParent(t, b, nil) // nobody here runs the child's step: it waits in the queue
		b.start(t)
		parent, child := parkedChild(t, b)
		start := time.Now()
		claimAsDeadWorker(t, b, child, "work")
		requireWokenByFailedChild(t, b, parent.ID, start, tasker.TaskBlockedByFailures)
		got, err := b.engine.GetTask(context.Background(), child.ID)
		require.NoError(t, err)
		w, _ := got.Step("work")
		require.Equal(t, "lease_expired", w.LastError.Kind)
	})
}

// TestChildCompletedInTxWakesParent: a child whose last step completes in its handler's own
// transaction (Step.CompleteTx) wakes its parent at once, which completes (PostgreSQL only).
func TestChildCompletedInTxWakesParent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var finished time.Time
	done := make(chan struct{})
	wireWakeParent(t, b, func(ctx context.Context, s *tasker.Step) (any, error) {
		tx, err := b.db.Pool.Begin(ctx)
		if err != nil {
			return nil, err
		}
		defer func() { _ = tx.Rollback(ctx) }()
		if err := s.CompleteTx(ctx, tx, 7); err != nil {
			return nil, err
		}
		if err := tx.Commit(ctx); err != nil {
			return nil, err
		}
		finished = time.Now()
		close(done)
		return 7, nil
	})
	b.start(t)
	parent := b.create(t, "family", "parent_once", nil)
	got := b.waitWithin(t, parent.ID, childWakeWithin)
	<-done
	require.Equal(t, tasker.TaskComplete, got.State)
	sp, _ := got.Step("spawn")
	require.Equal(t, tasker.StepComplete, sp.State)
	t.Logf("the parent completed %v after its child's transaction committed", time.Since(finished).Round(time.Millisecond))
}

// TestChildEndedBeforeParentParksWakesParent: the child ends while its parent's handler still
// runs, after the handler read it and before its park commits; the wake-up waits for the park
// and wakes it then, rather than leaving the parent to its poll.
func TestChildEndedBeforeParentParksWakesParent(t *testing.T) {
	t.Parallel()
	onPostgresAndMemory(t, func(t *testing.T, setup setupFunc) {
		b := setup(t)
		wireWakeParent(t, b, hangUntilCancelled)
		var first atomic.Bool
		var ended atomic.Int64 // the child's cancellation, in Unix nanoseconds
		b.engine.HandleFunc("spawn_once", func(ctx context.Context, s *tasker.Step) (any, error) {
			child, err := s.Child(ctx, tasker.TaskRequest{Namespace: "test", Name: "wake_child"})
			var failed *tasker.ChildFailedError
			if err == nil || errors.As(err, &failed) || !first.CompareAndSwap(false, true) {
				return child, err
			}
			// Child parks this step: end the child before the park commits.
			children, lerr := b.engine.ListTasks(ctx, tasker.ListOptions{Namespace: "test", Name: "wake_child"})
			if lerr != nil || len(children) != 1 {
				return nil, tasker.Permanent(errors.Join(lerr, errors.New("no child")))
			}
			if cerr := b.engine.CancelTask(ctx, children[0].ID, "ended early"); cerr != nil {
				return nil, tasker.Permanent(cerr)
			}
			ended.Store(time.Now().UnixNano())
			time.Sleep(500 * time.Millisecond) // the wake-up finds this step in progress meanwhile
			return nil, err
		})
		b.start(t)
		parent := b.create(t, "family", "parent_once", nil)
		require.Eventually(t, func() bool { return ended.Load() != 0 }, 10*time.Second, 5*time.Millisecond, "the child is cancelled")
		requireWokenByFailedChild(t, b, parent.ID, time.Unix(0, ended.Load()), tasker.TaskCancelled)
		got, err := b.engine.GetTask(context.Background(), parent.ID)
		require.NoError(t, err)
		sp, _ := got.Step("spawn")
		require.Equal(t, 2, sp.Attempts, "one park, then the run that found the child cancelled")
	})
}

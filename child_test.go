package tasker_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
)

const parentYAML = `
name: parent
namespace_name: family
version: 1.0.0
steps:
  - name: spawn
    handler: {callable: spawn_child}
    retry: {max_attempts: 2, backoff: none}
  - name: after
    handler: {callable: after_child}
    dependencies: [spawn]
`

const failingChildYAML = `
name: failing
namespace_name: test
version: 1.0.0
steps:
  - name: boom
    handler: {callable: boom}
    retry: {max_attempts: 1}
`

// TestChildTaskResultReachesParent: a step runs a linear task as its child and completes with
// the child's last result, which the next step sees; the parent's engine stops while the child
// runs, and another engine finishes both, losing nothing of the child's result.
func TestChildTaskResultReachesParent(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		b := setup(t)
		gate := make(chan struct{})
		var gated atomic.Bool
		wire := func(b *bundle) {
			b.register(t, parentYAML)
			b.register(t, linearYAML)
			b.engine.HandleFunc("add_one", func(ctx context.Context, s *tasker.Step) (any, error) {
				if s.Name == "c" && gated.CompareAndSwap(false, true) {
					<-gate // the child's last step waits while the parent's engine goes away
				}
				return addOne(ctx, s)
			})
			b.engine.HandleFunc("spawn_child", func(ctx context.Context, s *tasker.Step) (any, error) {
				child, err := s.Child(ctx, tasker.TaskRequest{Namespace: "test", Name: "linear", Context: map[string]any{"parent": s.TaskID}})
				if err != nil {
					return nil, err
				}
				var n int64
				if err := child.Result("c", &n); err != nil {
					return nil, tasker.Permanent(err)
				}
				return n, nil
			})
			b.engine.HandleFunc("after_child", func(_ context.Context, s *tasker.Step) (any, error) {
				var n int64
				if err := s.DependencyResult("spawn", &n); err != nil {
					return nil, tasker.Permanent(err)
				}
				return n * 10, nil
			})
		}
		wire(b)
		b.start(t)
		parent := b.create(t, "family", "parent", nil)
		waitParked(t, b, "spawn", parent.ID)
		b.stop() // the parent's process goes away while its child runs
		close(gate)

		next := b.sibling(t)
		wire(next)
		next.start(t)
		done := next.wait(t, parent.ID)
		require.Equal(t, tasker.TaskComplete, done.State)
		var n int64
		require.NoError(t, done.Result("after", &n))
		require.Equal(t, int64(30), n, "the child's result (3) reached the parent step")
		children, err := next.engine.ListTasks(context.Background(), tasker.ListOptions{Namespace: "test", Name: "linear"})
		require.NoError(t, err)
		require.Len(t, children, 1, "one child, however often the parent step ran")
		require.Contains(t, children[0].Tags, "tasker:parent="+parent.ID.String()+"/spawn")
	})
}

// TestChildFailurePropagatesThroughRetryPolicy: a child that fails makes its parent step fail
// retryably; the retry runs a new child; with its attempts used, the parent fails for good.
func TestChildFailurePropagatesThroughRetryPolicy(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		b := setup(t)
		b.register(t, parentYAML)
		b.register(t, failingChildYAML)
		var seen atomic.Int32
		b.engine.HandleFunc("boom", func(context.Context, *tasker.Step) (any, error) {
			seen.Add(1)
			return nil, tasker.Permanent(errors.New("boom"))
		})
		b.engine.HandleFunc("spawn_child", func(ctx context.Context, s *tasker.Step) (any, error) {
			_, err := s.Child(ctx, tasker.TaskRequest{Namespace: "test", Name: "failing"})
			return nil, err
		})
		b.engine.HandleFunc("after_child", func(context.Context, *tasker.Step) (any, error) { return nil, nil })
		b.start(t)
		start := time.Now()
		parent := b.create(t, "family", "parent", nil)
		done := b.waitWithin(t, parent.ID, 30*time.Second)
		require.Less(t, time.Since(start), 10*time.Second, "the children's ends woke the parent (no poll)")
		require.Equal(t, tasker.TaskBlockedByFailures, done.State)
		sp, _ := done.Step("spawn")
		require.Equal(t, tasker.StepError, sp.State)
		require.Contains(t, sp.LastError.Message, "child task")
		require.Equal(t, int32(2), seen.Load(), "max_attempts 2: two children ran")
		children, err := b.engine.ListTasks(context.Background(), tasker.ListOptions{Namespace: "test", Name: "failing"})
		require.NoError(t, err)
		require.Len(t, children, 2)
	})
}

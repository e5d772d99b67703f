// This file is the regression test of a bug the chaos test found: a retry promoted by a worker
// that died before claiming the step was lost (its redelivered message was acked as a duplicate).

package chaos_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/store"
	"github.com/tasker-systems/tasker/store/postgres"
)

// TestReproLostRetry: a worker that promotes a retry (PromoteRetry commits: waiting_for_retry ->
// enqueued) and dies before ClaimStep leaves its retry message unacked; the redelivery's
// PromoteRetry then conflicts, the message is acked and dropped, and the step stays enqueued with
// no message: the task never finishes.
func TestReproLostRetry(t *testing.T) {
	db := testdb.New(t)
	st := postgres.New(db.Pool, postgres.WithSchema(db.Schema))
	var calls atomic.Int32
	newEngine := func() *tasker.Engine {
		e, err := tasker.NewEngine(tasker.Config{Store: st, Lease: 2 * time.Second})
		require.NoError(t, err)
		tmpl, err := tasker.ParseTemplate([]byte(`
name: one
namespace_name: repro
version: 1.0.0
steps:
  - {name: s, handler: {callable: flaky}}
`))
		require.NoError(t, err)
		require.NoError(t, e.Register(tmpl))
		e.HandleFunc("flaky", func(ctx context.Context, s *tasker.Step) (any, error) {
			if calls.Add(1) == 1 {
				return nil, tasker.RetryAfter(500*time.Millisecond, errors.New("first attempt fails"))
			}
			return "ok", nil
		})
		return e
	}
	run := func(e *tasker.Engine) (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- e.RunWorkers(ctx) }()
		return func() { cancel(); require.NoError(t, <-done) }
	}
	ctx := context.Background()

	a := newEngine()
	task, err := a.CreateTask(ctx, tasker.TaskRequest{Namespace: "repro", Name: "one"})
	require.NoError(t, err)
	stopA := run(a)
	require.Eventually(t, func() bool {
		got, err := a.GetTask(ctx, task.ID)
		require.NoError(t, err)
		return got.Steps[0].State == tasker.StepWaitingForRetry
	}, 10*time.Second, 10*time.Millisecond)
	stopA() // the retry message (delay 500ms) stays in the queue
	time.Sleep(700 * time.Millisecond)

	// What a worker does with the retry message before it dies: PromoteRetry commits, then
	// SIGKILL before ClaimStep (the message is neither claimed nor acked).
	got, _ := a.GetTask(ctx, task.ID)
	require.NoError(t, st.PromoteRetry(ctx, store.PromoteRetryParams{StepID: got.Steps[0].ID}))

	b := newEngine()
	stopB := run(b)
	defer stopB()
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	final, err := b.WaitTask(wctx, task.ID)
	var n int
	_ = db.Pool.QueryRow(ctx, `SELECT count(*) FROM `+db.Schema+`.queue_messages`).Scan(&n)
	cur, _ := b.GetTask(ctx, task.ID)
	t.Logf("after 15s: task %s, step %s (attempts %d), queue messages left %d, handler calls %d",
		cur.State, cur.Steps[0].State, cur.Steps[0].Attempts, n, calls.Load())
	require.NoError(t, err, "the task never finishes")
	require.Equal(t, tasker.TaskComplete, final.State)
}

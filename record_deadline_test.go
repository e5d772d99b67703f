package tasker_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
)

// TestOutcomeCallEndsWithItsLease: recording an outcome against a database that hangs (here the
// task's row is locked elsewhere, so the outcome's transaction waits) gives up when the step's
// lease ends, so that nothing of a stopped engine writes after RunWorkers has returned. Before, the
// call waited for the lock for as long as it was held, and committed the outcome of an engine that
// had stopped long before.
func TestOutcomeCallEndsWithItsLease(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *tasker.Config) {
		c.Lease = time.Second
		c.ShutdownTimeout = 200 * time.Millisecond
		c.DisableMaintenance = true // no rescuer: the step stays as the stopped engine left it
	})
	b.register(t, `
name: hang
namespace_name: hang
version: 1.0.0
steps:
  - {name: only, handler: {callable: only}}
`)
	running, release := make(chan struct{}), make(chan struct{})
	b.engine.HandleFunc("only", func(context.Context, *tasker.Step) (any, error) {
		close(running)
		<-release
		return map[string]bool{"done": true}, nil
	})
	b.start(t)
	task := b.create(t, "hang", "hang", map[string]any{})
	<-running

	ctx := context.Background()
	tx, err := b.db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = tx.Exec(ctx, `SELECT 1 FROM `+b.db.Schema+`.tasks WHERE task_id = $1 FOR UPDATE`, task.ID)
	require.NoError(t, err)

	close(release) // the outcome is ready; its transaction waits for the lock
	time.Sleep(300 * time.Millisecond)
	b.stop()                             // RunWorkers returns (its drain is bounded)
	time.Sleep(2 * time.Second)          // past the step's lease
	require.NoError(t, tx.Rollback(ctx)) // the database answers again

	time.Sleep(time.Second)
	got, err := b.engine.GetTask(ctx, task.ID)
	require.NoError(t, err)
	st, _ := got.Step("only")
	require.Equal(t, tasker.StepInProgress, st.State, "no outcome written by an engine that had stopped")
}

package tasker_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
)

// TestCancelTaskTx cancels a running task inside the caller's transaction on both PostgreSQL
// backends: rolled back, nothing changes and the handler runs on; a refusal leaves the
// transaction usable; committed, the task is cancelled with the caller's own row, and the running
// handler sees ErrTaskCancelled once the commit is announced.
func TestCancelTaskTx(t *testing.T) {
	t.Parallel()
	for _, be := range []string{backendPostgres, backendRabbitMQ} {
		t.Run(be, func(t *testing.T) {
			t.Parallel()
			b := setupOn(t, be)
			b.register(t, linearYAML)
			started, sawCancel := handleUntilCancelled(b, "add_one")
			b.start(t)
			ctx := context.Background()
			task := b.create(t, "test", "linear", nil)
			<-started
			_, err := b.db.Pool.Exec(ctx, `CREATE TABLE `+b.db.Schema+`.audit (note text)`)
			require.NoError(t, err)

			tx, err := b.db.Pool.Begin(ctx)
			require.NoError(t, err)
			require.NoError(t, b.engine.CancelTaskTx(ctx, tx, task.ID, "rolled back"))
			require.NoError(t, tx.Rollback(ctx))
			got, err := b.engine.GetTask(ctx, task.ID)
			require.NoError(t, err)
			require.NotEqual(t, tasker.TaskCancelled, got.State, "a rolled-back cancellation changes nothing")
			select {
			case cause := <-sawCancel:
				t.Fatalf("a rolled-back cancellation stopped the handler: %v", cause)
			case <-time.After(300 * time.Millisecond):
			}

			tx, err = b.db.Pool.Begin(ctx)
			require.NoError(t, err)
			defer func() { _ = tx.Rollback(ctx) }()
			require.ErrorIs(t, b.engine.CancelTaskTx(ctx, tx, task.ID, "bad\x00reason"), tasker.ErrInvalidValue)
			_, err = tx.Exec(ctx, `INSERT INTO `+b.db.Schema+`.audit VALUES ('cancelled by support')`)
			require.NoError(t, err)
			require.NoError(t, b.engine.CancelTaskTx(ctx, tx, task.ID, "customer changed their mind"))
			got, err = b.engine.GetTask(ctx, task.ID)
			require.NoError(t, err)
			require.NotEqual(t, tasker.TaskCancelled, got.State, "not seen before the commit")
			require.NoError(t, tx.Commit(ctx))

			select {
			case cause := <-sawCancel:
				require.ErrorIs(t, cause, tasker.ErrTaskCancelled)
			case <-time.After(10 * time.Second):
				t.Fatal("the running handler never saw its context cancelled")
			}
			task = b.wait(t, task.ID)
			require.Equal(t, tasker.TaskCancelled, task.State)
			var notes int
			require.NoError(t, b.db.Pool.QueryRow(ctx, `SELECT count(*) FROM `+b.db.Schema+`.audit`).Scan(&notes))
			require.Equal(t, 1, notes, "the caller's row committed with the cancellation")

			// A refusal inside the transaction rolls back to its savepoint only.
			tx2, err := b.db.Pool.Begin(ctx)
			require.NoError(t, err)
			defer func() { _ = tx2.Rollback(ctx) }()
			require.ErrorIs(t, b.engine.CancelTaskTx(ctx, tx2, task.ID, "again"), tasker.ErrNotAllowed)
			var one int
			require.NoError(t, tx2.QueryRow(ctx, "SELECT 1").Scan(&one), "the caller's transaction is still usable")
		})
	}
}

// TestOperatorActionsTx fixes a failed step inside the caller's transaction, on both PostgreSQL
// backends: a rolled-back retry leaves the task blocked; RetryStepTx, ResolveStepTx and
// CompleteStepTx resume it once committed (on RabbitMQ the released steps are published when the
// commit is announced, well before the sweeper would).
func TestOperatorActionsTx(t *testing.T) {
	t.Parallel()
	const diamond = `
name: diamond
namespace_name: opstx
version: 1.0.0
steps:
  - {name: start, handler: {callable: add_one}}
  - {name: left, handler: {callable: fragile}, dependencies: [start], retry: {max_attempts: 1}}
  - {name: right, handler: {callable: add_one}, dependencies: [start]}
  - {name: join, handler: {callable: add_one}, dependencies: [left, right]}
`
	for _, be := range []string{backendPostgres, backendRabbitMQ} {
		for _, action := range []string{"retry", "resolve", "complete"} {
			t.Run(be+"/"+action, func(t *testing.T) {
				t.Parallel()
				b := setupOn(t, be, func(c *tasker.Config) { c.RepublishAfter = time.Hour })
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
				task := b.wait(t, b.create(t, "opstx", "diamond", nil).ID)
				require.Equal(t, tasker.TaskBlockedByFailures, task.State)
				left, _ := task.Step("left")
				op := tasker.OperatorRequest{Operator: "alice", Reason: "upstream fixed"}
				healthy.Store(true)

				tx, err := b.db.Pool.Begin(ctx)
				require.NoError(t, err)
				require.NoError(t, b.engine.RetryStepTx(ctx, tx, left.ID, op))
				require.NoError(t, tx.Rollback(ctx))
				got, err := b.engine.GetTask(ctx, task.ID)
				require.NoError(t, err)
				require.Equal(t, tasker.TaskBlockedByFailures, got.State, "a rolled-back fix changes nothing")
				l, _ := got.Step("left")
				require.Equal(t, tasker.StepError, l.State)

				tx, err = b.db.Pool.Begin(ctx)
				require.NoError(t, err)
				defer func() { _ = tx.Rollback(ctx) }()
				right, _ := got.Step("right")
				require.ErrorIs(t, b.engine.ResolveStepTx(ctx, tx, right.ID, op), tasker.ErrNotAllowed, "right is not in error")
				switch action {
				case "retry":
					require.NoError(t, b.engine.RetryStepTx(ctx, tx, left.ID, op))
				case "resolve":
					require.NoError(t, b.engine.ResolveStepTx(ctx, tx, left.ID, op))
				case "complete":
					require.NoError(t, b.engine.CompleteStepTx(ctx, tx, left.ID, 10, op))
				}
				require.NoError(t, tx.Commit(ctx))
				task = b.waitWithin(t, task.ID, 30*time.Second)
				require.Equal(t, tasker.TaskComplete, task.State, "the task resumes once the fix commits")
				join, _ := task.Step("join")
				want := map[string]int64{"retry": 3, "resolve": 3, "complete": 11}[action]
				require.Equal(t, want, jsonInt(t, join.Result))
				requireLegalTransitions(t, b.engine, task.ID)
			})
		}
	}
}

// TestTxTwinsNeedATransactionalStore: on store/memory, which cannot join a caller's
// transaction, every …Tx twin says so with ErrNotTransactional and changes nothing.
func TestTxTwinsNeedATransactionalStore(t *testing.T) {
	t.Parallel()
	b := setupOn(t, backendMemory)
	b.register(t, linearYAML)
	ctx := context.Background()
	task := b.create(t, "test", "linear", nil)
	first := task.Steps[0].ID
	require.ErrorIs(t, b.engine.CancelTaskTx(ctx, nil, task.ID, "no"), tasker.ErrNotTransactional)
	require.ErrorIs(t, b.engine.RetryStepTx(ctx, nil, first, tasker.OperatorRequest{}), tasker.ErrNotTransactional)
	require.ErrorIs(t, b.engine.ResolveStepTx(ctx, nil, first, tasker.OperatorRequest{}), tasker.ErrNotTransactional)
	require.ErrorIs(t, b.engine.CompleteStepTx(ctx, nil, first, 1, tasker.OperatorRequest{}), tasker.ErrNotTransactional)
	got, err := b.engine.GetTask(ctx, task.ID)
	require.NoError(t, err)
	require.NotEqual(t, tasker.TaskCancelled, got.State)
}

// TestStepCompleteTx: a handler writes its own row and completes its step in one transaction of
// its own, on both PostgreSQL backends. Committed, the row and the completion land together, the
// dependent runs once with the result (on RabbitMQ, published when the commit is announced), and
// the step has one completion in its audit trail although the handler then returns as usual.
// Rolled back, the row is gone and the engine records the handler's outcome itself. A result the
// database cannot store is refused before anything is written, and the transaction stays usable.
func TestStepCompleteTx(t *testing.T) {
	t.Parallel()
	const tmpl = `
name: txwrite
namespace_name: txw
version: 1.0.0
steps:
  - {name: write, handler: {callable: write}}
  - {name: after, handler: {callable: after}, dependencies: [write]}
`
	for _, be := range []string{backendPostgres, backendRabbitMQ} {
		for _, commit := range []bool{true, false} {
			name := be + "/rollback"
			if commit {
				name = be + "/commit"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				b := setupOn(t, be, func(c *tasker.Config) { c.RepublishAfter = time.Hour })
				b.register(t, tmpl)
				ctx := context.Background()
				_, err := b.db.Pool.Exec(ctx, `CREATE TABLE `+b.db.Schema+`.orders (id int)`)
				require.NoError(t, err)
				var afterRuns atomic.Int32
				var seen atomic.Int64
				b.engine.HandleFunc("write", func(ctx context.Context, s *tasker.Step) (any, error) {
					tx, err := b.db.Pool.Begin(ctx)
					if err != nil {
						return nil, err
					}
					defer func() { _ = tx.Rollback(ctx) }()
					if _, err := tx.Exec(ctx, `INSERT INTO `+b.db.Schema+`.orders VALUES (42)`); err != nil {
						return nil, err
					}
					bad := s.CompleteTx(ctx, tx, map[string]any{"bad": "\x00"})
					if !errors.Is(bad, tasker.ErrInvalidValue) {
						return nil, tasker.Permanent(fmt.Errorf("an unstorable result: %v, want ErrInvalidValue", bad))
					}
					result := map[string]any{"order": 42}
					if err := s.CompleteTx(ctx, tx, result); err != nil {
						return nil, tasker.Permanent(err)
					}
					if commit {
						if err := tx.Commit(ctx); err != nil {
							return nil, err
						}
					}
					return result, nil
				})
				b.engine.HandleFunc("after", func(ctx context.Context, s *tasker.Step) (any, error) {
					afterRuns.Add(1)
					var r struct{ Order int64 }
					if err := s.DependencyResult("write", &r); err != nil {
						return nil, tasker.Permanent(err)
					}
					seen.Store(r.Order)
					return nil, nil
				})
				b.start(t)
				task := b.waitWithin(t, b.create(t, "txw", "txwrite", nil).ID, 30*time.Second)
				require.Equal(t, tasker.TaskComplete, task.State)
				require.Equal(t, int32(1), afterRuns.Load())
				require.Equal(t, int64(42), seen.Load(), "the dependent saw the result")
				var rows int
				require.NoError(t, b.db.Pool.QueryRow(ctx, `SELECT count(*) FROM `+b.db.Schema+`.orders`).Scan(&rows))
				if commit {
					require.Equal(t, 1, rows, "the handler's row committed with the completion")
				} else {
					require.Equal(t, 0, rows, "the handler's row rolled back")
				}
				trs := requireLegalTransitions(t, b.engine, task.ID)
				completions := 0
				for _, tr := range trs {
					if tr.StepName == "write" && tr.To == string(tasker.StepComplete) {
						completions++
					}
				}
				require.Equal(t, 1, completions, "one completion of the step in its audit trail")
			})
		}
	}
}

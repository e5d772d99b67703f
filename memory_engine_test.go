package tasker_test

// What only the memory backend does. Everything else the engine does is tested on the memory
// backend too, by the tests written with eachBackend (engine_test.go, engine_ops_test.go,
// dynamic_test.go, rescue_test.go, engine_multi_test.go, publisher_test.go, fixtures_run_test.go).

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/store/memory"
)

// fakeTx stands for a caller's pgx.Tx; the memory store must refuse it before using it.
type fakeTx struct{ pgx.Tx }

func TestMemoryCreateTaskTxRefusesACallersTransaction(t *testing.T) {
	t.Parallel()
	b := setupOn(t, backendMemory)
	b.register(t, linearYAML)
	ctx := context.Background()
	_, err := b.engine.CreateTaskTx(ctx, fakeTx{}, tasker.TaskRequest{Namespace: "test", Name: "linear"})
	require.ErrorIs(t, err, memory.ErrNoTransactions)
	all, err := b.engine.ListTasks(ctx, tasker.ListOptions{})
	require.NoError(t, err)
	require.Empty(t, all)

	b.engine.HandleFunc("add_one", addOne)
	b.start(t)
	task, err := b.engine.CreateTaskTx(ctx, nil, tasker.TaskRequest{Namespace: "test", Name: "linear"})
	require.NoError(t, err, "a nil tx means a transaction of its own")
	require.Equal(t, tasker.TaskComplete, b.wait(t, task.ID).State)
}

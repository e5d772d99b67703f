package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

func testCancelTask(t *testing.T, h Harness) {
	t.Run("CancelsTheTaskAndItsUnfinishedSteps", func(t *testing.T) {
		t.Parallel()
		testCancelMixed(t, setup(t, h))
	})

	parallelTest(t, h, "CancelsABlockedTask", testCancelCancelsABlockedTask)
	parallelTest(t, h, "AFinishedTaskCannotBeCancelled", testCancelAFinishedTaskCannotBeCancelled)
	parallelTest(t, h, "UnknownTask", testCancelUnknownTask)
}

// testCancelMixed cancels a task with a step of each kind: complete, in progress, enqueued,
// pending and waiting for a retry.
func testCancelMixed(t *testing.T, b *bundle) {
	ctx := context.Background()
	g := b.createGraph(t, b.newStep("start"), b.newStep("left", 0), b.newStep("right", 0), b.newStep("join", 1, 2), b.newStep("r"))
	b.run(t, g.id["start"])
	left := b.claim(t, g.id["left"])
	retry := b.outcomeParams(b.claim(t, g.id["r"]), store.OutcomeRetry)
	retry.RetryDelay = time.Minute
	_, err := b.Store.RecordOutcome(ctx, retry)
	require.NoError(t, err)
	b.sent(t)

	res, err := b.Store.CancelTask(ctx, store.CancelTaskParams{TaskID: g.task, Reason: "stop"})
	require.NoError(t, err)
	require.Equal(t, statemachine.TaskCancelled, res.TaskState)
	require.True(t, res.Settled)
	require.Equal(t, map[string]statemachine.StepState{"start": "complete", "left": "cancelled", "right": "cancelled", "join": "cancelled", "r": "cancelled"},
		b.states(t, g.task))
	task := b.task(t, g.task)
	require.Equal(t, statemachine.TaskCancelled, task.State)
	require.NotNil(t, task.CompletedAt)
	require.Equal(t, [3]int{0, 0, 0}, [3]int{task.StepsUnfinished, task.StepsActive, task.StepsFailed})
	for _, name := range []string{"left", "right", "join", "r"} {
		last := lastTransition(t, b, g.task, g.id[name])
		require.Equal(t, []string{"cancelled", "cancel"}, []string{last.To, last.Event}, name)
		require.JSONEq(t, `{"reason": "stop"}`, string(last.Metadata), name)
		st := b.step(t, g.task, g.id[name])
		require.Empty(t, st.LeaseOwner, name)
		require.Nil(t, st.NextRetryAt, name)
	}
	require.Equal(t, statemachine.TaskCancelled, taskPath(t, b, g.task)[len(taskPath(t, b, g.task))-1])
	b.requireSent(t)

	_, err = b.Store.ClaimStep(ctx, store.ClaimStepParams{StepID: g.id["right"], WorkerID: worker, Lease: time.Minute})
	require.ErrorIs(t, err, store.ErrConflict, "a cancelled step is not claimed")
	_, err = b.Store.RecordOutcome(ctx, b.outcomeParams(left, store.OutcomeSuccess))
	require.ErrorIs(t, err, store.ErrConflict, "a cancelled attempt records nothing")
	require.ErrorIs(t, b.Store.PromoteRetry(ctx, store.PromoteRetryParams{StepID: g.id["r"]}), store.ErrConflict)
	_, err = b.Store.CancelTask(ctx, store.CancelTaskParams{TaskID: g.task})
	require.ErrorIs(t, err, store.ErrConflict, "cancelled already")
	require.Equal(t, statemachine.StepCancelled, b.step(t, g.task, g.id["left"]).State)
}

func testCancelCancelsABlockedTask(t *testing.T, b *bundle) {
	ctx := context.Background()
	group := uuid.Must(uuid.NewV7())
	w1, w2 := b.newStep("w1"), b.newStep("w2")
	for _, w := range []*store.NewStep{&w1, &w2} {
		w.Type, w.BatchGroup, w.FailureStrategy = "batch_worker", group, "isolate"
	}
	g := b.createGraph(t, w1, w2, b.newStep("x"))
	p := b.outcomeParams(b.claim(t, g.id["w1"]), store.OutcomePermanent)
	p.Isolated = true
	_, err := b.Store.RecordOutcome(ctx, p)
	require.NoError(t, err)
	_, err = b.Store.RecordOutcome(ctx, b.outcomeParams(b.claim(t, g.id["x"]), store.OutcomePermanent))
	require.NoError(t, err)
	require.Equal(t, statemachine.TaskBlockedByFailures, b.task(t, g.task).State)

	res, err := b.Store.CancelTask(ctx, store.CancelTaskParams{TaskID: g.task, Reason: "give up"})
	require.NoError(t, err)
	require.Equal(t, statemachine.TaskCancelled, res.TaskState)
	task := b.task(t, g.task)
	require.Equal(t, statemachine.TaskCancelled, task.State)
	require.Equal(t, [3]int{0, 0, 0}, [3]int{task.StepsUnfinished, task.StepsActive, task.StepsFailed})
	require.Equal(t, map[string]statemachine.StepState{"w1": "cancelled", "w2": "cancelled", "x": "cancelled"}, b.states(t, g.task))
}

func testCancelAFinishedTaskCannotBeCancelled(t *testing.T, b *bundle) {
	g := b.createGraph(t, b.newStep("a"))
	require.True(t, b.run(t, g.id["a"]).Settled)
	before := b.snapshot(t, g.task)
	_, err := b.Store.CancelTask(context.Background(), store.CancelTaskParams{TaskID: g.task, Reason: "late"})
	require.ErrorIs(t, err, store.ErrConflict)
	require.Equal(t, before, b.snapshot(t, g.task))
}

func testCancelUnknownTask(t *testing.T, b *bundle) {
	_, err := b.Store.CancelTask(context.Background(), store.CancelTaskParams{TaskID: uuid.New()})
	require.ErrorIs(t, err, store.ErrNotFound)
}

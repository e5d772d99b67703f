package engine

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

// TestRescueSettlesExpiredLeases claims three steps for a worker that then vanishes: two with a
// lease that runs out (one with an attempt left, one on its last) and one whose lease lives. One
// rescue retries the first with a lease_expired failure recorded under the vanished worker's ID,
// fails the second for good, and leaves the third alone.
func TestRescueSettlesExpiredLeases(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e, w, _ := testEngine(t, nil, nil)
	retryTask, retryStep := createOneStep(t, e, 2)
	lastTask, lastStep := createOneStep(t, e, 1)
	liveTask, liveStep := createOneStep(t, e, 2)
	for _, c := range []struct {
		step  [16]byte
		lease time.Duration
	}{{retryStep, 20 * time.Millisecond}, {lastStep, 20 * time.Millisecond}, {liveStep, time.Minute}} {
		_, err := e.store.ClaimStep(ctx, store.ClaimStepParams{StepID: c.step, WorkerID: "vanished", Lease: c.lease})
		require.NoError(t, err)
	}
	time.Sleep(50 * time.Millisecond)

	w.rescue(ctx)

	retried := stepOf(t, e, retryTask, retryStep)
	require.Equal(t, statemachine.StepWaitingForRetry, retried.State)
	var f Failure
	require.NoError(t, json.Unmarshal(retried.LastError, &f))
	require.Equal(t, "lease_expired", f.Kind)
	require.Contains(t, f.Message, "worker vanished stopped renewing its lease")
	trs, err := e.store.Transitions(ctx, retryTask)
	require.NoError(t, err)
	last := trs[len(trs)-1]
	require.Equal(t, string(statemachine.StepWaitingForRetry), last.To, "the rescue is in the audit trail")
	require.Contains(t, string(last.Metadata), "vanished", "recorded under the vanished worker's ID")

	failed := stepOf(t, e, lastTask, lastStep)
	require.Equal(t, statemachine.StepError, failed.State, "no attempt left: it fails for good")
	task, err := e.store.GetTask(ctx, lastTask)
	require.NoError(t, err)
	require.Equal(t, statemachine.TaskBlockedByFailures, task.State, "its task waits for an operator")

	live := stepOf(t, e, liveTask, liveStep)
	require.Equal(t, statemachine.StepInProgress, live.State, "a live lease is not rescued")
	require.Equal(t, "vanished", live.LeaseOwner)

	w.rescue(ctx) // nothing left to rescue: the settled steps are not settled twice
	require.Equal(t, statemachine.StepWaitingForRetry, stepOf(t, e, retryTask, retryStep).State)
	trs2, err := e.store.Transitions(ctx, retryTask)
	require.NoError(t, err)
	require.Len(t, trs2, len(trs))
}

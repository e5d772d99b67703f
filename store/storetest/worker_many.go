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

func testHeartbeatMany(t *testing.T, h Harness) {
	parallelTest(t, h, "ExtendsTheHeldAndReportsTheRest", testHeartbeatManyReports)
	parallelTest(t, h, "KeepsAHeldStepsMessageHidden", testHeartbeatManyMessages)
}

func (b *bundle) heartbeatMany(t *testing.T, lease time.Duration, steps ...store.StepAttempt) []store.HeartbeatRecord {
	t.Helper()
	res, err := b.batch(t).HeartbeatMany(context.Background(), store.HeartbeatManyParams{WorkerID: worker, Lease: lease, Steps: steps})
	require.NoError(t, err)
	require.Len(t, res, len(steps))
	for i, st := range steps {
		require.Equal(t, st.StepID, res[i].StepID, "record %d is in the steps' order", i)
	}
	return res
}

// testHeartbeatManyReports: one call for a worker's steps: the held one's lease is extended; a
// step of another worker, a stale attempt, a finished step, a cancelled one and an unknown one are
// reported as such and left alone.
func testHeartbeatManyReports(t *testing.T, b *bundle) {
	ctx := context.Background()
	g := b.createGraph(t, b.newStep("a"), b.newStep("b"), b.newStep("c"))
	x := b.createGraph(t, b.newStep("x"))
	b.requireSent(t, "a", "b", "c", "x")
	b.claimAs(t, g.id["a"], worker, 200*time.Millisecond)
	cb := b.claimAs(t, g.id["b"], "w2", time.Minute)
	b.run(t, g.id["c"])
	b.claim(t, x.id["x"])
	_, err := b.Store.CancelTask(ctx, store.CancelTaskParams{TaskID: x.task, Reason: "test"})
	require.NoError(t, err)
	unknown := uuid.New()

	before := time.Now()
	res := b.heartbeatMany(t, time.Minute,
		store.StepAttempt{StepID: g.id["a"], Attempt: 1},
		store.StepAttempt{StepID: g.id["b"], Attempt: 1},
		store.StepAttempt{StepID: g.id["c"], Attempt: 1},
		store.StepAttempt{StepID: x.id["x"], Attempt: 1},
		store.StepAttempt{StepID: unknown},
		store.StepAttempt{StepID: g.id["a"], Attempt: 2},
		store.StepAttempt{StepID: g.id["a"]}, // any attempt
	)
	type rec struct {
		State statemachine.StepState
		Held  bool
	}
	got := make([]rec, len(res))
	for i, r := range res {
		got[i] = rec{r.State, r.Held}
	}
	require.Equal(t, []rec{
		{statemachine.StepInProgress, true},
		{statemachine.StepInProgress, false},
		{statemachine.StepComplete, false},
		{statemachine.StepCancelled, false},
		{"", false},
		{statemachine.StepInProgress, false},
		{statemachine.StepInProgress, true},
	}, got)
	a := b.step(t, g.task, g.id["a"])
	requireBetween(t, *a.LeaseExpiresAt, before.Add(time.Minute), time.Now().Add(time.Minute))
	require.Equal(t, cb.Step.LeaseExpiresAt, b.step(t, g.task, g.id["b"]).LeaseExpiresAt, "another worker's lease is its own")
	require.Empty(t, b.heartbeatMany(t, time.Minute))
}

// testHeartbeatManyMessages: a store that owns its queue keeps a held step's message hidden for
// the new lease; a step the worker does not hold keeps its message's visibility.
func testHeartbeatManyMessages(t *testing.T, b *bundle) {
	if !b.caps.OwnsQueue {
		t.Skip("the store does not own its queue: the caller extends its messages")
	}
	g := b.createGraph(t, b.newStep("a"), b.newStep("b"))
	const vt = 300 * time.Millisecond
	ids := b.readIDs(t, vt)
	require.Len(t, ids, 2)
	b.claim(t, g.id["a"])
	b.claimAs(t, g.id["b"], "w2", time.Minute)
	res := b.heartbeatMany(t, time.Minute,
		store.StepAttempt{StepID: g.id["a"], Attempt: 1, MessageID: ids["a"]},
		store.StepAttempt{StepID: g.id["b"], Attempt: 1, MessageID: ids["b"]})
	require.True(t, res[0].Held)
	require.False(t, res[1].Held)
	time.Sleep(vt + 100*time.Millisecond)
	b.requireSent(t, "b")
}

func testReleaseSteps(t *testing.T, h Harness) {
	parallelTest(t, h, "GivesTheHeldBackAndSkipsTheRest", testReleaseStepsSkipsTheRest)
}

// testReleaseStepsSkipsTheRest: a shutdown gives back its worker's steps in one call: the held
// ones are enqueued again without spending their attempt; another worker's, a stale attempt, a
// cancelled one and an unknown one are reported and left alone.
func testReleaseStepsSkipsTheRest(t *testing.T, b *bundle) {
	ctx := context.Background()
	g := b.createGraph(t, b.newStep("a"), b.newStep("b"), b.newStep("c"), b.newStep("d"))
	x := b.createGraph(t, b.newStep("x"))
	b.requireSent(t, "a", "b", "c", "d", "x")
	b.claim(t, g.id["a"])
	b.claimAs(t, g.id["b"], "w2", time.Minute)
	b.claim(t, g.id["c"])
	b.claim(t, g.id["d"])
	b.claim(t, x.id["x"])
	_, err := b.Store.CancelTask(ctx, store.CancelTaskParams{TaskID: x.task})
	require.NoError(t, err)
	before := b.snapshot(t, x.task)
	res, err := b.batch(t).ReleaseSteps(ctx, store.ReleaseStepsParams{WorkerID: worker, Steps: []store.ReleaseRef{
		{StepID: g.id["a"], Attempt: 1, Reason: "shutdown"},
		{StepID: g.id["b"], Attempt: 1, Reason: "shutdown"},
		{StepID: g.id["c"], Attempt: 2, Reason: "shutdown"},
		{StepID: x.id["x"], Attempt: 1, Reason: "shutdown"},
		{StepID: uuid.New(), Attempt: 1, Reason: "shutdown"},
		{StepID: g.id["d"], Attempt: 1, Reason: "no handler"},
	}})
	require.NoError(t, err)
	released := make([]bool, len(res))
	for i, r := range res {
		released[i] = r.Released
	}
	require.Equal(t, []bool{true, false, false, false, false, true}, released)
	require.Equal(t, map[string]statemachine.StepState{"a": "enqueued", "b": "in_progress", "c": "in_progress", "d": "enqueued"}, b.states(t, g.task))
	require.Equal(t, before, b.snapshot(t, x.task))
	last := lastTransition(t, b, g.task, g.id["d"])
	require.Equal(t, []string{"in_progress", "enqueued", "release"}, []string{last.From, last.To, last.Event})
	require.JSONEq(t, `{"worker_id": "w1", "attempt": 1, "reason": "no handler"}`, string(last.Metadata))
	require.Equal(t, 1, b.claim(t, g.id["a"]).Step.Attempts, "the attempt was not spent")
	requireGapFree(t, b, g.task)
	res, err = b.batch(t).ReleaseSteps(ctx, store.ReleaseStepsParams{WorkerID: worker})
	require.NoError(t, err)
	require.Empty(t, res)
}

func testPromoteRetries(t *testing.T, h Harness) {
	parallelTest(t, h, "PromotesTheDueAndReportsTheRest", testPromoteRetriesReports)
}

// testPromoteRetriesReports promotes, in one call, a due retry next to one not due, a step in
// progress, an unknown step and a due retry of a blocked task: the first is promoted (and wakes
// its task), the others are refused with PromoteRetry's errors and left alone.
func testPromoteRetriesReports(t *testing.T, b *bundle) {
	ctx := context.Background()
	g := b.createGraph(t, b.newStep("a"), b.newStep("b"), b.newStep("c"))
	blocked := b.createGraph(t, b.newStep("x"), b.newStep("y"))
	b.requireSent(t, "a", "b", "c", "x", "y")
	retry := func(c *store.ClaimedStep, delay time.Duration) store.Outcome {
		p := b.outcomeParams(c, store.OutcomeRetry)
		p.RetryDelay = delay
		return b.outcomeOf(t, p)
	}
	cc := b.claim(t, g.id["c"])
	res := b.record(t,
		retry(b.claim(t, g.id["a"]), 100*time.Millisecond),
		retry(b.claim(t, g.id["b"]), time.Hour),
		retry(b.claim(t, blocked.id["x"]), 100*time.Millisecond),
		b.outcome(t, b.claim(t, blocked.id["y"]), store.OutcomePermanent))
	require.Equal(t, []store.OutcomeStatus{store.Recorded, store.Recorded, store.Recorded, store.Recorded}, statuses(res))
	time.Sleep(200 * time.Millisecond)
	blockedBefore := b.snapshot(t, blocked.task)

	ids := []uuid.UUID{g.id["a"], g.id["b"], g.id["c"], uuid.New(), blocked.id["x"]}
	recs, err := b.batch(t).PromoteRetries(ctx, store.PromoteRetriesParams{Steps: ids})
	require.NoError(t, err)
	require.Len(t, recs, len(ids))
	require.NoError(t, recs[0].Err)
	require.ErrorIs(t, recs[1].Err, store.ErrNotDue)
	require.ErrorIs(t, recs[2].Err, store.ErrConflict, "c is in progress")
	require.ErrorIs(t, recs[3].Err, store.ErrNotFound)
	require.ErrorIs(t, recs[4].Err, store.ErrConflict, "x's task is blocked")
	for i, id := range ids {
		require.Equal(t, id, recs[i].StepID)
	}
	require.Equal(t, map[string]statemachine.StepState{"a": "enqueued", "b": "waiting_for_retry", "c": "in_progress"}, b.states(t, g.task))
	require.Equal(t, statemachine.TaskStepsInProcess, b.task(t, g.task).State)
	require.Equal(t, blockedBefore, b.snapshot(t, blocked.task))
	require.Equal(t, 2, b.claim(t, g.id["a"]).Step.Attempts)
	require.Equal(t, statemachine.StepInProgress, cc.Step.State)
	requireGapFree(t, b, g.task)
	recs, err = b.batch(t).PromoteRetries(ctx, store.PromoteRetriesParams{})
	require.NoError(t, err)
	require.Empty(t, recs)
}

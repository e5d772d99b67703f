package storetest

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

func testClaimStep(t *testing.T, h Harness) {
	parallelTest(t, h, "StartsAnAttemptWithALease", testClaimStartsAnAttemptWithALease)
	parallelTest(t, h, "GetsItsAncestorsResults", testClaimGetsItsAncestorsResults)
	parallelTest(t, h, "SecondClaimConflicts", testClaimSecondClaimConflicts)
	parallelTest(t, h, "ConcurrentClaimsOneWins", testClaimConcurrentClaimsOneWins)
	parallelTest(t, h, "UnknownStepConflicts", testClaimUnknownStepConflicts)
}

func testReleaseStep(t *testing.T, h Harness) {
	parallelTest(t, h, "GivesTheStepBackWithoutSpendingTheAttempt", testReleaseGivesTheStepBack)
	parallelTest(t, h, "WithAnEnqueuerSendsTheStepsMessage", testReleaseWithAnEnqueuerSends)
}

func testHeartbeat(t *testing.T, h Harness) {
	parallelTest(t, h, "ExtendsTheLease", testHeartbeatExtendsTheLease)
	parallelTest(t, h, "ReportsACancellation", testHeartbeatReportsACancellation)
	parallelTest(t, h, "ReportsARescue", testHeartbeatReportsARescue)
	parallelTest(t, h, "AnotherWorkersHeartbeatConflicts", testHeartbeatOfAnotherWorker)
	parallelTest(t, h, "AStaleAttemptsHeartbeatConflicts", testHeartbeatOfAStaleAttempt)
	parallelTest(t, h, "UnknownStep", testHeartbeatUnknownStep)
}

func testSaveCheckpoint(t *testing.T, h Harness) {
	parallelTest(t, h, "OnlyTheHoldingAttemptSaves", testCheckpointOnlyTheHoldingAttemptSaves)
}

// requireBetween checks lo-1s <= got <= hi+1s: the database's clock and ours may differ a little.
func requireBetween(t *testing.T, got, lo, hi time.Time) {
	t.Helper()
	require.False(t, got.Before(lo.Add(-time.Second)), "%v is before %v", got, lo)
	require.False(t, got.After(hi.Add(time.Second)), "%v is after %v", got, hi)
}

// stepTransitions returns a step's transitions in order.
func stepTransitions(t *testing.T, b *bundle, taskID, stepID uuid.UUID) []store.Transition {
	t.Helper()
	trs, err := b.Store.Transitions(context.Background(), taskID)
	require.NoError(t, err)
	var out []store.Transition
	for _, tr := range trs {
		if tr.StepID == stepID {
			out = append(out, tr)
		}
	}
	return out
}

// stepPath returns the states a step went through.
func stepPath(t *testing.T, b *bundle, taskID, stepID uuid.UUID) []statemachine.StepState {
	t.Helper()
	var out []statemachine.StepState
	for _, tr := range stepTransitions(t, b, taskID, stepID) {
		out = append(out, statemachine.StepState(tr.To))
	}
	return out
}

// lastTransition returns a step's latest transition.
func lastTransition(t *testing.T, b *bundle, taskID, stepID uuid.UUID) store.Transition {
	t.Helper()
	trs := stepTransitions(t, b, taskID, stepID)
	require.NotEmpty(t, trs)
	return trs[len(trs)-1]
}

// taskPath returns the states a task went through.
func taskPath(t *testing.T, b *bundle, taskID uuid.UUID) []statemachine.TaskState {
	t.Helper()
	trs, err := b.Store.Transitions(context.Background(), taskID)
	require.NoError(t, err)
	var out []statemachine.TaskState
	for _, tr := range trs {
		if tr.StepID == uuid.Nil {
			out = append(out, statemachine.TaskState(tr.To))
		}
	}
	return out
}

func testClaimStartsAnAttemptWithALease(t *testing.T, b *bundle) {
	g := b.createGraph(t, b.newStep("a"))
	before := time.Now()
	c := b.claimAs(t, g.id["a"], "w7", time.Minute)
	after := time.Now()
	require.Equal(t, g.id["a"], c.Step.ID)
	require.Equal(t, statemachine.StepInProgress, c.Step.State)
	require.Equal(t, 1, c.Step.Attempts)
	require.Equal(t, "w7", c.Step.LeaseOwner)
	require.NotNil(t, c.Step.LeaseExpiresAt)
	requireBetween(t, *c.Step.LeaseExpiresAt, before.Add(time.Minute), after.Add(time.Minute))
	require.NotNil(t, c.Step.StartedAt)
	require.Equal(t, g.task, c.Task.ID)
	require.JSONEq(t, `{"order": 7}`, string(c.Task.Context))
	require.Empty(t, c.Results)

	st := b.step(t, g.task, g.id["a"])
	require.Equal(t, statemachine.StepInProgress, st.State)
	require.Equal(t, 1, st.Attempts)
	require.Equal(t, "w7", st.LeaseOwner)
	last := lastTransition(t, b, g.task, g.id["a"])
	require.Equal(t, []string{"enqueued", "in_progress", "start"}, []string{last.From, last.To, last.Event})
	task := b.task(t, g.task)
	require.Equal(t, statemachine.TaskStepsInProcess, task.State)
	require.Equal(t, 1, task.StepsActive)
}

func testClaimGetsItsAncestorsResults(t *testing.T, b *bundle) {
	ctx := context.Background()
	cases := []struct {
		name      string
		ancestors []string
		want      []string
	}{
		{"EveryAncestorThroughTheEdges", nil, []string{"start", "left", "right"}},
		{"OnlyTheNamedOnes", []string{"left", "nope"}, []string{"left"}},
		{"NoneWhenNoneNamed", []string{}, nil},
	}
	for _, tc := range cases {
		g := b.diamond(t)
		b.run(t, g.id["start"])
		b.run(t, g.id["left"])
		b.run(t, g.id["right"])
		c, err := b.Store.ClaimStep(ctx, store.ClaimStepParams{StepID: g.id["join"], WorkerID: worker, Lease: time.Minute, Ancestors: tc.ancestors})
		require.NoError(t, err, tc.name)
		require.Len(t, c.Results, len(tc.want), tc.name)
		for _, name := range tc.want {
			require.JSONEq(t, `{"by": "`+name+`"}`, string(c.Results[name]), tc.name)
		}
	}
}

func testClaimSecondClaimConflicts(t *testing.T, b *bundle) {
	g := b.createGraph(t, b.newStep("a"))
	b.claim(t, g.id["a"])
	_, err := b.Store.ClaimStep(context.Background(), store.ClaimStepParams{StepID: g.id["a"], WorkerID: "w2", Lease: time.Minute})
	require.ErrorIs(t, err, store.ErrConflict)
	st := b.step(t, g.task, g.id["a"])
	require.Equal(t, 1, st.Attempts)
	require.Equal(t, worker, st.LeaseOwner)
}

func testClaimConcurrentClaimsOneWins(t *testing.T, b *bundle) {
	g := b.createGraph(t, b.newStep("a"))
	const n = 8
	var won atomic.Int32
	errs := make([]error, n)
	parallel(n, func(i int) {
		_, errs[i] = b.Store.ClaimStep(context.Background(), store.ClaimStepParams{StepID: g.id["a"], WorkerID: uuid.NewString(), Lease: time.Minute})
		if errs[i] == nil {
			won.Add(1)
		}
	})
	require.EqualValues(t, 1, won.Load(), "exactly one claim wins")
	for _, err := range errs {
		if err != nil {
			require.ErrorIs(t, err, store.ErrConflict)
		}
	}
	require.Equal(t, 1, b.step(t, g.task, g.id["a"]).Attempts)
	require.Len(t, stepPath(t, b, g.task, g.id["a"]), 3, "pending, enqueued, in_progress: one start")
}

func testClaimUnknownStepConflicts(t *testing.T, b *bundle) {
	// The engine acks and drops the message of a claim that conflicts; a step that does not
	// exist is such a message, so both stores answer ErrConflict, not ErrNotFound.
	_, err := b.Store.ClaimStep(context.Background(), store.ClaimStepParams{StepID: uuid.New(), WorkerID: worker, Lease: time.Minute})
	require.ErrorIs(t, err, store.ErrConflict)
}

func testReleaseGivesTheStepBack(t *testing.T, b *bundle) {
	ctx := context.Background()
	g := b.createGraph(t, b.newStep("a"))
	b.requireSent(t, "a")
	c := b.claim(t, g.id["a"])
	for _, bad := range []store.ReleaseStepParams{
		{StepID: g.id["a"], WorkerID: worker, Attempt: 2, Reason: "shutdown"},
		{StepID: g.id["a"], WorkerID: "w2", Attempt: 1, Reason: "shutdown"},
		{StepID: uuid.New(), WorkerID: worker, Attempt: 1, Reason: "shutdown"},
	} {
		require.ErrorIs(t, b.Store.ReleaseStep(ctx, bad), store.ErrConflict, "%+v", bad)
	}
	require.Equal(t, statemachine.StepInProgress, b.step(t, g.task, g.id["a"]).State)

	require.NoError(t, b.Store.ReleaseStep(ctx, store.ReleaseStepParams{StepID: g.id["a"], WorkerID: worker, Attempt: c.Step.Attempts, Reason: "shutdown"}))
	st := b.step(t, g.task, g.id["a"])
	require.Equal(t, statemachine.StepEnqueued, st.State)
	require.Zero(t, st.Attempts)
	require.Empty(t, st.LeaseOwner)
	require.Nil(t, st.LeaseExpiresAt)
	last := lastTransition(t, b, g.task, g.id["a"])
	require.Equal(t, []string{"in_progress", "enqueued", "release"}, []string{last.From, last.To, last.Event})
	require.JSONEq(t, `{"worker_id": "w1", "attempt": 1, "reason": "shutdown"}`, string(last.Metadata))
	b.requireSent(t) // the releasing worker gives its own message back
	task := b.task(t, g.task)
	require.Equal(t, statemachine.TaskStepsInProcess, task.State)
	require.Equal(t, 1, task.StepsActive)

	require.ErrorIs(t, b.Store.ReleaseStep(ctx, store.ReleaseStepParams{StepID: g.id["a"], WorkerID: worker, Attempt: 1}), store.ErrConflict,
		"a step that is not in progress")
	require.Equal(t, 1, b.claim(t, g.id["a"]).Step.Attempts, "the next claim is attempt 1 again")
}

// testReleaseWithAnEnqueuerSends: a release given an Enqueuer sends the step's message with it, for
// a caller that cannot count on an earlier message of the step (one dropped while the step was in
// progress); a refused release sends nothing.
func testReleaseWithAnEnqueuerSends(t *testing.T, b *bundle) {
	ctx := context.Background()
	g := b.createGraph(t, b.newStep("a"))
	b.requireSent(t, "a")
	c := b.claim(t, g.id["a"])
	require.ErrorIs(t, b.Store.ReleaseStep(ctx, store.ReleaseStepParams{StepID: g.id["a"], WorkerID: "w2", Attempt: c.Step.Attempts,
		Namespace: Namespace, Enqueuer: b.enq}), store.ErrConflict)
	b.requireSent(t)
	require.NoError(t, b.Store.ReleaseStep(ctx, store.ReleaseStepParams{StepID: g.id["a"], WorkerID: worker, Attempt: c.Step.Attempts,
		Reason: "handed over", Namespace: Namespace, Enqueuer: b.enq}))
	require.Equal(t, statemachine.StepEnqueued, b.step(t, g.task, g.id["a"]).State)
	b.requireSent(t, "a")
	require.Equal(t, 1, b.claim(t, g.id["a"]).Step.Attempts, "the next claim is attempt 1 again")
}

func testHeartbeatExtendsTheLease(t *testing.T, b *bundle) {
	ctx := context.Background()
	g := b.createGraph(t, b.newStep("a"))
	c := b.claimAs(t, g.id["a"], worker, 200*time.Millisecond)
	state, err := b.Store.Heartbeat(ctx, store.HeartbeatParams{StepID: g.id["a"], WorkerID: worker, Lease: time.Minute})
	require.NoError(t, err)
	require.Equal(t, statemachine.StepInProgress, state)
	st := b.step(t, g.task, g.id["a"])
	require.True(t, st.LeaseExpiresAt.After(c.Step.LeaseExpiresAt.Add(30*time.Second)), "lease extended to a minute")
	time.Sleep(300 * time.Millisecond)
	expired, err := b.Store.ExpiredSteps(ctx, store.ExpiredStepsParams{})
	require.NoError(t, err)
	require.Empty(t, expired, "the first lease's expiry no longer counts")
}

func testHeartbeatReportsACancellation(t *testing.T, b *bundle) {
	ctx := context.Background()
	g := b.createGraph(t, b.newStep("a"))
	b.claim(t, g.id["a"])
	_, err := b.Store.CancelTask(ctx, store.CancelTaskParams{TaskID: g.task, Reason: "stop"})
	require.NoError(t, err)
	state, err := b.Store.Heartbeat(ctx, store.HeartbeatParams{StepID: g.id["a"], WorkerID: worker, Lease: time.Minute})
	require.ErrorIs(t, err, store.ErrConflict)
	require.Equal(t, statemachine.StepCancelled, state)
}

func testHeartbeatReportsARescue(t *testing.T, b *bundle) {
	ctx := context.Background()
	g := b.createGraph(t, b.newStep("a"))
	c := b.claimAs(t, g.id["a"], worker, 100*time.Millisecond)
	time.Sleep(150 * time.Millisecond)
	p := b.outcomeParams(c, store.OutcomeRetry)
	p.LeaseExpired, p.RetryDelay = true, time.Minute
	_, err := b.Store.RecordOutcome(ctx, p)
	require.NoError(t, err)
	state, err := b.Store.Heartbeat(ctx, store.HeartbeatParams{StepID: g.id["a"], WorkerID: worker, Lease: time.Minute})
	require.ErrorIs(t, err, store.ErrConflict)
	require.Equal(t, statemachine.StepWaitingForRetry, state)
}

func testHeartbeatOfAnotherWorker(t *testing.T, b *bundle) {
	g := b.createGraph(t, b.newStep("a"))
	c := b.claimAs(t, g.id["a"], "w2", time.Minute)
	// w1 held an earlier attempt (rescued, then claimed again by w2): it must stop.
	state, err := b.Store.Heartbeat(context.Background(), store.HeartbeatParams{StepID: g.id["a"], WorkerID: worker, Lease: time.Hour})
	require.ErrorIs(t, err, store.ErrConflict)
	require.Equal(t, statemachine.StepInProgress, state)
	st := b.step(t, g.task, g.id["a"])
	require.Equal(t, *c.Step.LeaseExpiresAt, *st.LeaseExpiresAt, "the holder's lease is untouched")
	require.Equal(t, "w2", st.LeaseOwner)
}

func testHeartbeatOfAStaleAttempt(t *testing.T, b *bundle) {
	ctx := context.Background()
	g := b.createGraph(t, b.newStep("a"))
	c := b.claimAs(t, g.id["a"], worker, 100*time.Millisecond)
	time.Sleep(150 * time.Millisecond)
	p := b.outcomeParams(c, store.OutcomeRetry)
	p.LeaseExpired, p.RetryDelay = true, 0
	_, err := b.Store.RecordOutcome(ctx, p)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return b.Store.PromoteRetry(ctx, store.PromoteRetryParams{StepID: g.id["a"]}) == nil
	}, 5*time.Second, 10*time.Millisecond)
	c2 := b.claimAs(t, g.id["a"], worker, time.Minute) // the same worker takes attempt 2
	require.Equal(t, 2, c2.Step.Attempts)

	state, err := b.Store.Heartbeat(ctx, store.HeartbeatParams{StepID: g.id["a"], WorkerID: worker, Lease: time.Hour, Attempt: 1})
	require.ErrorIs(t, err, store.ErrConflict, "attempt 1 no longer holds the step")
	require.Equal(t, statemachine.StepInProgress, state)
	require.Equal(t, *c2.Step.LeaseExpiresAt, *b.step(t, g.task, g.id["a"]).LeaseExpiresAt, "attempt 2's lease is untouched")
	_, err = b.Store.Heartbeat(ctx, store.HeartbeatParams{StepID: g.id["a"], WorkerID: worker, Lease: time.Hour, Attempt: 2})
	require.NoError(t, err)
}

func testHeartbeatUnknownStep(t *testing.T, b *bundle) {
	_, err := b.Store.Heartbeat(context.Background(), store.HeartbeatParams{StepID: uuid.New(), WorkerID: worker, Lease: time.Minute})
	require.ErrorIs(t, err, store.ErrNotFound)
}

func testCheckpointOnlyTheHoldingAttemptSaves(t *testing.T, b *bundle) {
	ctx := context.Background()
	g := b.createGraph(t, b.newStep("a"))
	c := b.claim(t, g.id["a"])
	cp := func(worker string, attempt int, doc string) error {
		return b.Store.SaveCheckpoint(ctx, store.CheckpointParams{StepID: g.id["a"], WorkerID: worker, Attempt: attempt, Checkpoint: json.RawMessage(doc)})
	}
	require.NoError(t, cp(worker, 1, `{"pos": 5}`))
	require.JSONEq(t, `{"pos": 5}`, string(b.step(t, g.task, g.id["a"]).Checkpoint))
	require.ErrorIs(t, cp("w2", 1, `{"pos": 6}`), store.ErrConflict)
	require.ErrorIs(t, cp(worker, 2, `{"pos": 6}`), store.ErrConflict)
	require.ErrorIs(t, b.Store.SaveCheckpoint(ctx, store.CheckpointParams{StepID: uuid.New(), WorkerID: worker, Attempt: 1, Checkpoint: json.RawMessage(`{}`)}),
		store.ErrConflict)
	require.JSONEq(t, `{"pos": 5}`, string(b.step(t, g.task, g.id["a"]).Checkpoint))

	// The next attempt resumes from it.
	p := b.outcomeParams(c, store.OutcomeRetry)
	_, err := b.Store.RecordOutcome(ctx, p)
	require.NoError(t, err)
	require.ErrorIs(t, cp(worker, 1, `{"pos": 6}`), store.ErrConflict, "the attempt is over")
	require.NoError(t, b.Store.PromoteRetry(ctx, store.PromoteRetryParams{StepID: g.id["a"]}))
	c2 := b.claim(t, g.id["a"])
	require.Equal(t, 2, c2.Step.Attempts)
	require.JSONEq(t, `{"pos": 5}`, string(c2.Step.Checkpoint))
}

package storetest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

func testRecordOutcome(t *testing.T, h Harness) {
	t.Run("ReleasesAJoinWhenAllItsParentsAreDone", func(t *testing.T) {
		t.Parallel()
		forEachEnqueuer(t, h, testDiamondRuns)
	})

	t.Run("ConcurrentParentsReleaseTheJoinOnce", func(t *testing.T) {
		t.Parallel()
		forEachEnqueuer(t, h, testJoinReleasedOnce)
	})

	parallelTest(t, h, "WrongWorkerOrAttemptConflicts", testRecordOutcomeWrongWorkerOrAttempt)
}

// testJoinReleasedOnce completes the two parents of a join at once, a few times: the join is
// released by exactly one of them.
func testJoinReleasedOnce(t *testing.T, b *bundle) {
	for range 4 {
		g := b.diamond(t)
		b.run(t, g.id["start"])
		b.requireSent(t, "start", "left", "right")
		left, right := b.claim(t, g.id["left"]), b.claim(t, g.id["right"])
		res := make([]*store.OutcomeResult, 2)
		errs := make([]error, 2)
		parallel(2, func(i int) {
			c := []*store.ClaimedStep{left, right}[i]
			res[i], errs[i] = b.Store.RecordOutcome(context.Background(), b.outcomeParams(c, store.OutcomeSuccess))
		})
		require.NoError(t, errs[0])
		require.NoError(t, errs[1])
		require.Equal(t, 1, res[0].Released+res[1].Released, "one of the two parents releases the join")
		require.False(t, res[0].Settled || res[1].Settled)
		b.requireSent(t, "join")
		require.Equal(t, statemachine.StepEnqueued, b.step(t, g.task, g.id["join"]).State)
		task := b.task(t, g.task)
		require.Equal(t, [3]int{1, 1, 0}, [3]int{task.StepsUnfinished, task.StepsActive, task.StepsFailed})
	}
}

// testDiamondRuns runs a diamond to completion, checking each release and the task's settling.
func testDiamondRuns(t *testing.T, b *bundle) {
	ctx := context.Background()
	g := b.diamond(t)
	b.requireSent(t, "start")
	settled := 0
	count := func(res *store.OutcomeResult) *store.OutcomeResult {
		if res.Settled {
			settled++
		}
		require.Equal(t, g.task, res.TaskID)
		return res
	}
	res := count(b.run(t, g.id["start"]))
	require.Equal(t, 2, res.Released)
	require.Equal(t, statemachine.TaskStepsInProcess, res.TaskState)
	b.requireSent(t, "left", "right")

	left, right := b.claim(t, g.id["left"]), b.claim(t, g.id["right"])
	res = count(b.succeed(t, left))
	require.Zero(t, res.Released, "the join still waits for right")
	require.Equal(t, statemachine.TaskStepsInProcess, res.TaskState)
	require.Equal(t, statemachine.StepPending, b.step(t, g.task, g.id["join"]).State)
	b.requireSent(t)
	res = count(b.succeed(t, right))
	require.Equal(t, 1, res.Released)
	b.requireSent(t, "join")

	res = count(b.run(t, g.id["join"]))
	require.Zero(t, res.Released)
	require.True(t, res.Settled)
	require.Equal(t, statemachine.TaskComplete, res.TaskState)
	require.Equal(t, 1, settled, "the task settles once")
	b.requireSent(t)

	task := b.task(t, g.task)
	require.Equal(t, statemachine.TaskComplete, task.State)
	require.NotNil(t, task.CompletedAt)
	require.Equal(t, [4]int{4, 0, 0, 0}, [4]int{task.StepsTotal, task.StepsUnfinished, task.StepsActive, task.StepsFailed})
	steps, err := b.Store.GetSteps(ctx, g.task)
	require.NoError(t, err)
	for _, st := range steps {
		require.Equal(t, statemachine.StepComplete, st.State, st.Name)
		require.JSONEq(t, `{"by": "`+st.Name+`"}`, string(st.Result), st.Name)
		require.NotNil(t, st.CompletedAt, st.Name)
		require.Empty(t, st.LeaseOwner, st.Name)
		require.Nil(t, st.LeaseExpiresAt, st.Name)
	}
	require.Equal(t, []statemachine.TaskState{"pending", "initializing", "enqueuing_steps", "steps_in_process", "evaluating_results", "complete"},
		taskPath(t, b, g.task))
	again := b.outcomeParams(&store.ClaimedStep{Step: steps[3], Task: task}, store.OutcomeSuccess)
	again.WorkerID = worker
	_, err = b.Store.RecordOutcome(ctx, again)
	require.ErrorIs(t, err, store.ErrConflict, "a finished step takes no outcome")
}

func testRetry(t *testing.T, h Harness) {
	t.Run("WaitsForItsBackoffThenRunsAgain", func(t *testing.T) {
		t.Parallel()
		forEachEnqueuer(t, h, testRetryWaits)
	})

	parallelTest(t, h, "NotPromotedWhileTheTaskIsBlocked", testRetryNotPromotedWhileBlocked)
	parallelTest(t, h, "UnknownStep", testRetryUnknownStep)
}

// testRetryWaits fails an attempt retryably, checks that it is not promoted early, then runs it
// again as attempt 2.
func testRetryWaits(t *testing.T, b *bundle) {
	ctx := context.Background()
	g := b.createGraph(t, b.newStep("a"), b.newStep("b", 0))
	b.requireSent(t, "a")
	c := b.claim(t, g.id["a"])
	p := b.outcomeParams(c, store.OutcomeRetry)
	p.RetryDelay = 400 * time.Millisecond
	before := time.Now()
	res, err := b.Store.RecordOutcome(ctx, p)
	require.NoError(t, err)
	// Checked first: these hold only while the backoff runs.
	require.ErrorIs(t, b.Store.PromoteRetry(ctx, store.PromoteRetryParams{StepID: g.id["a"]}), store.ErrNotDue)
	_, err = b.Store.ClaimStep(ctx, store.ClaimStepParams{StepID: g.id["a"], WorkerID: worker, Lease: time.Minute})
	require.ErrorIs(t, err, store.ErrConflict, "not claimable while waiting")
	b.requireSent(t) // the timer message is not visible yet
	require.Equal(t, statemachine.TaskWaitingForRetry, res.TaskState)
	require.False(t, res.Settled)
	st := b.step(t, g.task, g.id["a"])
	require.Equal(t, statemachine.StepWaitingForRetry, st.State)
	require.Equal(t, 1, st.Attempts)
	require.Empty(t, st.LeaseOwner)
	require.JSONEq(t, `{"message": "boom"}`, string(st.LastError))
	require.NotNil(t, st.NextRetryAt)
	requireBetween(t, *st.NextRetryAt, before.Add(p.RetryDelay), time.Now().Add(p.RetryDelay))
	last := lastTransition(t, b, g.task, g.id["a"])
	require.Equal(t, []string{"in_progress", "waiting_for_retry", "fail_retryable"}, []string{last.From, last.To, last.Event})
	require.JSONEq(t, `{"worker_id": "w1", "attempt": 1, "error": {"message": "boom"}, "retry_in_ms": 400}`, string(last.Metadata))
	time.Sleep(time.Until(st.NextRetryAt.Add(50 * time.Millisecond)))
	b.requireSent(t, "a+retry")

	require.NoError(t, b.Store.PromoteRetry(ctx, store.PromoteRetryParams{StepID: g.id["a"]}))
	st = b.step(t, g.task, g.id["a"])
	require.Equal(t, statemachine.StepEnqueued, st.State)
	require.Nil(t, st.NextRetryAt)
	require.Equal(t, statemachine.TaskStepsInProcess, b.task(t, g.task).State)
	require.ErrorIs(t, b.Store.PromoteRetry(ctx, store.PromoteRetryParams{StepID: g.id["a"]}), store.ErrConflict, "promoted already")

	c2 := b.claim(t, g.id["a"])
	require.Equal(t, 2, c2.Step.Attempts)
	_, err = b.Store.RecordOutcome(ctx, b.outcomeParams(c, store.OutcomeSuccess))
	require.ErrorIs(t, err, store.ErrConflict, "attempt 1 is over")
	require.Equal(t, 1, b.succeed(t, c2).Released)
	b.requireSent(t, "b")
}

// failed creates a → b and c, and fails a for good while c is enqueued.
func (b *bundle) failed(t *testing.T) graph {
	t.Helper()
	g := b.createGraph(t, b.newStep("a"), b.newStep("b", 0), b.newStep("c"))
	b.requireSent(t, "a", "c")
	res, err := b.Store.RecordOutcome(context.Background(), b.outcomeParams(b.claim(t, g.id["a"]), store.OutcomePermanent))
	require.NoError(t, err)
	require.Equal(t, statemachine.TaskBlockedByFailures, res.TaskState)
	require.False(t, res.Settled, "c is still enqueued: the task is not at rest")
	require.Zero(t, res.Released)
	return g
}

// operator applies an operator's action to a failed step; result, when not "", is the result of
// OperatorComplete.
func (b *bundle) operator(stepID uuid.UUID, action store.OperatorAction, result string) (*store.OutcomeResult, error) {
	p := store.OperatorParams{StepID: stepID, Action: action, Reason: "fixed", Operator: "op", Namespace: Namespace, Enqueuer: b.enq}
	if result != "" {
		p.Result = json.RawMessage(result)
	}
	return b.Store.OperatorAction(context.Background(), p)
}

func testPermanent(t *testing.T, h Harness) {
	parallelTest(t, h, "BlocksTheTask", testPermanentBlocksTheTask)
	parallelTest(t, h, "BlockedTaskComesToRestWithItsLastActiveStep", testBlockedTaskComesToRest)
	parallelTest(t, h, "OperatorRetryRunsTheStepAgain", testPermanentOperatorRetryRunsTheStepAgain)
	parallelTest(t, h, "OperatorResolveReleasesTheDependents", testPermanentOperatorResolveReleasesTheDependents)
	parallelTest(t, h, "OperatorCompleteGivesItsResultToTheDependents", testPermanentOperatorCompleteGivesItsResultToTheDependents)
	parallelTest(t, h, "OperatorActionOnlyOnAStepInError", testPermanentOperatorActionOnlyOnAStepInError)

	t.Run("TheTaskResumesWhenItsLastFailureIsFixed", func(t *testing.T) {
		t.Parallel()
		testTwoFailures(t, setup(t, h))
	})

	t.Run("AnIsolatedFailureLetsTheRestRun", func(t *testing.T) {
		t.Parallel()
		testIsolatedFailure(t, setup(t, h))
	})
}

// testTwoFailures fails two roots; fixing the first leaves the task blocked (its dependent stays
// pending, unsent), fixing the second resumes it and enqueues that dependent.
func testTwoFailures(t *testing.T, b *bundle) {
	ctx := context.Background()
	g := b.createGraph(t, b.newStep("x"), b.newStep("y"), b.newStep("z", 0))
	b.requireSent(t, "x", "y")
	for _, name := range []string{"x", "y"} {
		_, err := b.Store.RecordOutcome(ctx, b.outcomeParams(b.claim(t, g.id[name]), store.OutcomePermanent))
		require.NoError(t, err)
	}
	require.Equal(t, 2, b.task(t, g.task).StepsFailed)
	fix := func(name string) *store.OutcomeResult {
		res, err := b.Store.OperatorAction(ctx, store.OperatorParams{StepID: g.id[name], Action: store.OperatorResolve, Operator: "op",
			Namespace: Namespace, Enqueuer: b.enq})
		require.NoError(t, err)
		return res
	}
	res := fix("x")
	require.Equal(t, statemachine.TaskBlockedByFailures, res.TaskState, "y still blocks the task")
	require.False(t, res.Settled)
	require.Equal(t, statemachine.StepPending, b.step(t, g.task, g.id["z"]).State)
	b.requireSent(t)
	res = fix("y")
	require.Equal(t, statemachine.TaskStepsInProcess, res.TaskState)
	require.Equal(t, statemachine.StepEnqueued, b.step(t, g.task, g.id["z"]).State)
	b.requireSent(t, "z")
	require.True(t, b.run(t, g.id["z"]).Settled)
	require.Equal(t, statemachine.TaskComplete, b.task(t, g.task).State)
}

// testIsolatedFailure: a batch worker whose batch isolates failures fails for good; its sibling
// goes on, and the task blocks only when nothing else can run.
func testIsolatedFailure(t *testing.T, b *bundle) {
	ctx := context.Background()
	group := uuid.Must(uuid.NewV7())
	w1, w2 := b.newStep("w1"), b.newStep("w2")
	for _, w := range []*store.NewStep{&w1, &w2} {
		w.Type, w.BatchGroup, w.FailureStrategy = "batch_worker", group, "isolate"
	}
	g := b.createGraph(t, w1, w2, b.newStep("total", 0, 1))
	b.requireSent(t, "w1", "w2")
	p := b.outcomeParams(b.claim(t, g.id["w1"]), store.OutcomePermanent)
	p.Isolated = true
	res, err := b.Store.RecordOutcome(ctx, p)
	require.NoError(t, err)
	require.Equal(t, statemachine.TaskStepsInProcess, res.TaskState, "w2 still runs")
	require.False(t, res.Settled)
	res = b.run(t, g.id["w2"])
	require.Equal(t, statemachine.TaskBlockedByFailures, res.TaskState, "nothing else can run")
	require.True(t, res.Settled)
	b.requireSent(t)
	res, err = b.Store.OperatorAction(ctx, store.OperatorParams{StepID: g.id["w1"], Action: store.OperatorResolve, Operator: "op",
		Namespace: Namespace, Enqueuer: b.enq})
	require.NoError(t, err)
	require.Equal(t, statemachine.TaskStepsInProcess, res.TaskState)
	b.requireSent(t, "total")
}

func testRecordOutcomeWrongWorkerOrAttempt(t *testing.T, b *bundle) {
	ctx := context.Background()
	g := b.createGraph(t, b.newStep("a"), b.newStep("b", 0))
	b.requireSent(t, "a")
	c := b.claim(t, g.id["a"])
	before := b.snapshot(t, g.task)
	good := b.outcomeParams(c, store.OutcomeSuccess)
	for name, mod := range map[string]func(p *store.OutcomeParams){
		"worker":  func(p *store.OutcomeParams) { p.WorkerID = "w2" },
		"attempt": func(p *store.OutcomeParams) { p.Attempt = 2 },
		"step":    func(p *store.OutcomeParams) { p.StepID = g.id["b"] },
		"unknown": func(p *store.OutcomeParams) { p.StepID = uuid.New() },
		"live":    func(p *store.OutcomeParams) { p.LeaseExpired = true },
	} {
		p := good
		mod(&p)
		_, err := b.Store.RecordOutcome(ctx, p)
		require.ErrorIs(t, err, store.ErrConflict, name)
	}
	p := good
	p.TaskID = uuid.New()
	_, err := b.Store.RecordOutcome(ctx, p)
	require.ErrorIs(t, err, store.ErrNotFound, "unknown task")
	require.Equal(t, before, b.snapshot(t, g.task), "nothing changed")
	b.requireSent(t)
	require.Equal(t, 1, b.succeed(t, c).Released, "the holder still records its outcome")
}

func testRetryNotPromotedWhileBlocked(t *testing.T, b *bundle) {
	ctx := context.Background()
	g := b.createGraph(t, b.newStep("a"), b.newStep("b"))
	b.requireSent(t, "a", "b")
	ca, cb := b.claim(t, g.id["a"]), b.claim(t, g.id["b"])
	_, err := b.Store.RecordOutcome(ctx, b.outcomeParams(ca, store.OutcomeRetry))
	require.NoError(t, err)
	res, err := b.Store.RecordOutcome(ctx, b.outcomeParams(cb, store.OutcomePermanent))
	require.NoError(t, err)
	require.Equal(t, statemachine.TaskBlockedByFailures, res.TaskState)
	require.True(t, res.Settled, "a's retry is not in flight in a blocked task")
	b.requireSent(t, "a+retry")
	require.ErrorIs(t, b.Store.PromoteRetry(ctx, store.PromoteRetryParams{StepID: g.id["a"]}), store.ErrConflict)
	require.Equal(t, statemachine.StepWaitingForRetry, b.step(t, g.task, g.id["a"]).State)

	// The operator's fix resumes the task and re-arms the retry's timer.
	res, err = b.Store.OperatorAction(ctx, store.OperatorParams{StepID: g.id["b"], Action: store.OperatorResolve, Operator: "op",
		Namespace: Namespace, Enqueuer: b.enq})
	require.NoError(t, err)
	require.Equal(t, statemachine.TaskWaitingForRetry, res.TaskState)
	b.requireSent(t, "a+retry")
	require.NoError(t, b.Store.PromoteRetry(ctx, store.PromoteRetryParams{StepID: g.id["a"]}))
	require.Equal(t, 2, b.claim(t, g.id["a"]).Step.Attempts)
}

func testRetryUnknownStep(t *testing.T, b *bundle) {
	require.ErrorIs(t, b.Store.PromoteRetry(context.Background(), store.PromoteRetryParams{StepID: uuid.New()}), store.ErrNotFound)
}

func testPermanentBlocksTheTask(t *testing.T, b *bundle) {
	g := b.failed(t)
	st := b.step(t, g.task, g.id["a"])
	require.Equal(t, statemachine.StepError, st.State)
	require.JSONEq(t, `{"message": "boom"}`, string(st.LastError))
	require.Equal(t, statemachine.StepPending, b.step(t, g.task, g.id["b"]).State)
	task := b.task(t, g.task)
	require.Equal(t, statemachine.TaskBlockedByFailures, task.State)
	require.Equal(t, 1, task.StepsFailed)
	b.requireSent(t)
	res := b.run(t, g.id["c"])
	require.Equal(t, statemachine.TaskBlockedByFailures, res.TaskState)
	require.True(t, res.Settled, "the last step in flight finished: the blocked task is at rest")
	require.Zero(t, b.task(t, g.task).StepsActive)
}

// testBlockedTaskComesToRest blocks a task while two other steps are in flight: only the outcome
// of the last of them (here a retry, which waits for an operator's fix) brings it to rest.
func testBlockedTaskComesToRest(t *testing.T, b *bundle) {
	ctx := context.Background()
	g := b.createGraph(t, b.newStep("a"), b.newStep("b"), b.newStep("c"))
	b.requireSent(t, "a", "b", "c")
	ca, cb := b.claim(t, g.id["a"]), b.claim(t, g.id["b"])
	res, err := b.Store.RecordOutcome(ctx, b.outcomeParams(ca, store.OutcomePermanent))
	require.NoError(t, err)
	require.Equal(t, statemachine.TaskBlockedByFailures, res.TaskState)
	require.False(t, res.Settled, "b runs and c is enqueued")
	res = b.succeed(t, cb)
	require.Equal(t, statemachine.TaskBlockedByFailures, res.TaskState)
	require.False(t, res.Settled, "c is enqueued")
	cc := b.claim(t, g.id["c"])
	res, err = b.Store.RecordOutcome(ctx, b.outcomeParams(cc, store.OutcomeRetry))
	require.NoError(t, err)
	require.Equal(t, statemachine.TaskBlockedByFailures, res.TaskState)
	require.True(t, res.Settled, "nothing in flight: c's retry waits for an operator's fix")
	require.Zero(t, b.task(t, g.task).StepsActive)
}

func testPermanentOperatorRetryRunsTheStepAgain(t *testing.T, b *bundle) {
	g := b.failed(t)
	res, err := b.operator(g.id["a"], store.OperatorRetry, "")
	require.NoError(t, err)
	require.Equal(t, statemachine.TaskStepsInProcess, res.TaskState)
	require.False(t, res.Settled)
	st := b.step(t, g.task, g.id["a"])
	require.Equal(t, statemachine.StepEnqueued, st.State)
	require.Zero(t, st.Attempts, "a fresh set of attempts")
	b.requireSent(t, "a")
	c := b.claim(t, g.id["a"])
	require.Equal(t, 1, c.Step.Attempts)
	require.Equal(t, 1, b.succeed(t, c).Released)
	b.requireSent(t, "b")
	require.Equal(t, 0, b.task(t, g.task).StepsFailed)
}

func testPermanentOperatorResolveReleasesTheDependents(t *testing.T, b *bundle) {
	g := b.failed(t)
	res, err := b.operator(g.id["a"], store.OperatorResolve, "")
	require.NoError(t, err)
	require.Equal(t, statemachine.TaskStepsInProcess, res.TaskState)
	require.Equal(t, statemachine.StepResolvedManually, b.step(t, g.task, g.id["a"]).State)
	b.requireSent(t, "b")
	b.run(t, g.id["b"])
	res = b.run(t, g.id["c"])
	require.True(t, res.Settled)
	require.Equal(t, statemachine.TaskComplete, res.TaskState)
}

func testPermanentOperatorCompleteGivesItsResultToTheDependents(t *testing.T, b *bundle) {
	g := b.failed(t)
	res, err := b.operator(g.id["a"], store.OperatorComplete, `{"v": 5}`)
	require.NoError(t, err)
	require.Equal(t, statemachine.TaskStepsInProcess, res.TaskState)
	st := b.step(t, g.task, g.id["a"])
	require.Equal(t, statemachine.StepComplete, st.State)
	require.JSONEq(t, `{"v": 5}`, string(st.Result))
	b.requireSent(t, "b")
	c := b.claim(t, g.id["b"])
	require.JSONEq(t, `{"v": 5}`, string(c.Results["a"]))
	last := lastTransition(t, b, g.task, g.id["a"])
	require.Equal(t, []string{"error", "complete", "complete_manually"}, []string{last.From, last.To, last.Event})
	require.JSONEq(t, `{"operator": "op", "reason": "fixed"}`, string(last.Metadata))
}

func testPermanentOperatorActionOnlyOnAStepInError(t *testing.T, b *bundle) {
	ctx := context.Background()
	g := b.failed(t)
	_, err := b.Store.OperatorAction(ctx, store.OperatorParams{StepID: g.id["c"], Action: store.OperatorResolve, Namespace: Namespace, Enqueuer: b.enq})
	require.ErrorIs(t, err, store.ErrConflict, "c is enqueued")
	_, err = b.Store.OperatorAction(ctx, store.OperatorParams{StepID: uuid.New(), Action: store.OperatorResolve, Namespace: Namespace, Enqueuer: b.enq})
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = b.Store.CancelTask(ctx, store.CancelTaskParams{TaskID: g.task})
	require.NoError(t, err)
	_, err = b.operator(g.id["a"], store.OperatorRetry, "")
	require.ErrorIs(t, err, store.ErrConflict, "the task is cancelled")
}

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

// testFlow covers scheduled starts (CreateTaskParams.RunAt, ListTasksParams.Scheduled) and
// signals (store.Signaler).
func testFlow(t *testing.T, h Harness) {
	parallelTest(t, h, "ScheduledRootsWaitForTheStart", testScheduledRootsWait)
	parallelTest(t, h, "ScheduledRootsAreDueAtTheStart", testScheduledRootsDue)
	parallelTest(t, h, "SignalIsKeptAndWakesAParkedStep", testSignalWakesParked)
	parallelTest(t, h, "SignalLeavesAnOrdinaryRetryWaiting", testSignalLeavesRetry)
	parallelTest(t, h, "SignalRefusesUnknownAndFinishedSteps", testSignalRefuses)
}

func (b *bundle) signaler(t *testing.T) store.Signaler {
	t.Helper()
	sg, ok := b.Store.(store.Signaler)
	require.True(t, ok, "%T does not implement store.Signaler", b.Store)
	return sg
}

func (b *bundle) signal(t *testing.T, task uuid.UUID, step, payload string) (*store.SignalStepResult, error) {
	t.Helper()
	return b.signaler(t).SignalStep(context.Background(), store.SignalStepParams{TaskID: task, Step: step,
		Signal: json.RawMessage(payload), Namespace: Namespace, Enqueuer: b.enq})
}

func testScheduledRootsWait(t *testing.T, b *bundle) {
	ctx := context.Background()
	p := b.createParams(b.newStep("a"), b.newStep("b", 0))
	p.RunAt = time.Now().Add(time.Hour).Truncate(time.Microsecond)
	res, err := b.Store.CreateTask(ctx, nil, p)
	require.NoError(t, err)
	require.Equal(t, statemachine.TaskWaitingForRetry, res.Task.State)
	require.Equal(t, 0, res.Task.StepsActive)
	a := b.step(t, res.Task.ID, p.Steps[0].StepID)
	require.Equal(t, statemachine.StepWaitingForRetry, a.State)
	require.Equal(t, 0, a.Attempts)
	require.NotNil(t, a.NextRetryAt)
	require.True(t, a.NextRetryAt.Equal(p.RunAt), "next_retry_at %v is the start %v", a.NextRetryAt, p.RunAt)
	require.Equal(t, statemachine.StepPending, b.step(t, res.Task.ID, p.Steps[1].StepID).State)
	var events []string
	for _, tr := range stepTransitions(t, b, res.Task.ID, a.ID) {
		events = append(events, tr.Event)
	}
	require.Equal(t, []string{"create", "schedule"}, events)
	b.requireSent(t) // the root's timer is not visible before the start
	require.ErrorIs(t, b.Store.PromoteRetry(ctx, store.PromoteRetryParams{StepID: a.ID}), store.ErrNotDue)

	plain := b.create(t, b.newStep("p"))
	listed, err := b.Store.ListTasks(ctx, store.ListTasksParams{Scheduled: true})
	require.NoError(t, err)
	require.Len(t, listed, 1)
	require.Equal(t, res.Task.ID, listed[0].ID)
	require.NotEqual(t, plain, listed[0].ID)
}

func testScheduledRootsDue(t *testing.T, b *bundle) {
	ctx := context.Background()
	p := b.createParams(b.newStep("a"))
	p.RunAt = time.Now().Add(50 * time.Millisecond)
	res, err := b.Store.CreateTask(ctx, nil, p)
	require.NoError(t, err)
	time.Sleep(150 * time.Millisecond)
	b.requireSent(t, "a+retry")
	require.NoError(t, b.Store.PromoteRetry(ctx, store.PromoteRetryParams{StepID: p.Steps[0].StepID}))
	c := b.claim(t, p.Steps[0].StepID)
	require.Equal(t, 1, c.Step.Attempts, "waiting for the start spent no attempt")
	task, err := b.Store.GetTask(ctx, res.Task.ID)
	require.NoError(t, err)
	require.Equal(t, statemachine.TaskStepsInProcess, task.State)
	listed, err := b.Store.ListTasks(ctx, store.ListTasksParams{Scheduled: true})
	require.NoError(t, err)
	require.Empty(t, listed, "a started task is no longer scheduled")
}

// park records a retry of a claimed step whose error record has the given kind.
func (b *bundle) park(t *testing.T, c *store.ClaimedStep, kind string) {
	t.Helper()
	p := b.outcomeParams(c, store.OutcomeRetry)
	p.Error = json.RawMessage(`{"message": "waiting", "kind": "` + kind + `"}`)
	p.RetryDelay = time.Hour
	_, err := b.Store.RecordOutcome(context.Background(), p)
	require.NoError(t, err)
	b.sent(t) // drop the hour's timer if the queue shows it (it does not: it is delayed)
}

func testSignalWakesParked(t *testing.T, b *bundle) {
	ctx := context.Background()
	g := b.createGraph(t, b.newStep("a"))
	b.requireSent(t, "a")
	b.park(t, b.claim(t, g.id["a"]), "parked")
	res, err := b.signal(t, g.task, "a", `{"approved": true}`)
	require.NoError(t, err)
	require.Equal(t, store.SignalStepResult{StepID: g.id["a"], State: statemachine.StepWaitingForRetry, Stored: true, Woken: true}, *res)
	b.requireSent(t, "a+retry")
	again, err := b.signal(t, g.task, "a", `{"approved": false}`)
	require.NoError(t, err)
	require.False(t, again.Stored, "the first signal wins")
	require.NoError(t, b.Store.PromoteRetry(ctx, store.PromoteRetryParams{StepID: g.id["a"]}), "the step is due now")
	c := b.claim(t, g.id["a"])
	require.JSONEq(t, `{"signal": {"approved": true}}`, string(c.Step.Checkpoint))
}

func testSignalLeavesRetry(t *testing.T, b *bundle) {
	ctx := context.Background()
	g := b.createGraph(t, b.newStep("a"))
	b.requireSent(t, "a")
	b.park(t, b.claim(t, g.id["a"]), "retryable")
	res, err := b.signal(t, g.task, "a", `"x"`)
	require.NoError(t, err)
	require.True(t, res.Stored)
	require.False(t, res.Woken, "an ordinary retry keeps its backoff")
	b.requireSent(t)
	require.ErrorIs(t, b.Store.PromoteRetry(ctx, store.PromoteRetryParams{StepID: g.id["a"]}), store.ErrNotDue)
}

func testSignalRefuses(t *testing.T, b *bundle) {
	g := b.createGraph(t, b.newStep("a"), b.newStep("b", 0))
	_, err := b.signal(t, g.task, "nope", `1`)
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = b.signal(t, uuid.New(), "a", `1`)
	require.ErrorIs(t, err, store.ErrNotFound)
	// A pending step keeps the signal for when it runs.
	res, err := b.signal(t, g.task, "b", `{"early": 1}`)
	require.NoError(t, err)
	require.Equal(t, statemachine.StepPending, res.State)
	require.True(t, res.Stored)
	require.False(t, res.Woken)
	b.succeed(t, b.claim(t, g.id["a"]))
	_, err = b.signal(t, g.task, "a", `1`)
	require.ErrorIs(t, err, store.ErrConflict)
	require.JSONEq(t, `{"signal": {"early": 1}}`, string(b.step(t, g.task, g.id["b"]).Checkpoint))
}

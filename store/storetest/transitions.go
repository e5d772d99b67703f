package storetest

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

func testTransitions(t *testing.T, h Harness) {
	parallelTest(t, h, "EveryPathIsLegal", testTransitionsEveryPathIsLegal)
}

// busyTask runs a task through a release, a retry, a permanent failure fixed by a retry, another
// fixed by a resolve, and a decision's spawn, to completion.
func busyTask(t *testing.T, b *bundle) uuid.UUID {
	ctx := context.Background()
	d := b.newStep("d", 0)
	d.Type = "decision"
	g := b.createGraph(t, b.newStep("start"), b.newStep("left", 0), b.newStep("right", 0), b.newStep("join", 1, 2), b.newStep("x"), d)
	b.run(t, g.id["start"])

	c := b.claim(t, g.id["left"])
	require.NoError(t, b.Store.ReleaseStep(ctx, store.ReleaseStepParams{StepID: c.Step.ID, WorkerID: worker, Attempt: 1, Reason: "shutdown"}))
	_, err := b.Store.RecordOutcome(ctx, b.outcomeParams(b.claim(t, g.id["left"]), store.OutcomeRetry))
	require.NoError(t, err)
	require.NoError(t, b.Store.PromoteRetry(ctx, store.PromoteRetryParams{StepID: g.id["left"]}))
	b.run(t, g.id["left"])

	for name, action := range map[string]store.OperatorAction{"right": store.OperatorRetry, "x": store.OperatorResolve} {
		_, err := b.Store.RecordOutcome(ctx, b.outcomeParams(b.claim(t, g.id[name]), store.OutcomePermanent))
		require.NoError(t, err)
		_, err = b.Store.OperatorAction(ctx, store.OperatorParams{StepID: g.id[name], Action: action, Operator: "op", Namespace: Namespace, Enqueuer: b.enq})
		require.NoError(t, err)
	}
	b.run(t, g.id["right"])

	p := b.outcomeParams(b.claim(t, g.id["d"]), store.OutcomeSuccess)
	p.Spawn = &store.SpawnPlan{Steps: []store.NewStep{b.spawnStep("branch", "d")}}
	_, err = b.Store.RecordOutcome(ctx, p)
	require.NoError(t, err)
	steps, err := b.Store.GetSteps(ctx, g.task)
	require.NoError(t, err)
	for _, st := range steps {
		if st.Name == "branch" {
			b.run(t, st.ID)
		}
	}
	require.True(t, b.run(t, g.id["join"]).Settled)
	return g.task
}

// cancelledTask cancels a diamond whose second level runs.
func cancelledTask(t *testing.T, b *bundle) uuid.UUID {
	g := b.diamond(t)
	b.run(t, g.id["start"])
	b.claim(t, g.id["left"])
	_, err := b.Store.CancelTask(context.Background(), store.CancelTaskParams{TaskID: g.task, Reason: "stop"})
	require.NoError(t, err)
	return g.task
}

// manuallyCompletedTask fails its only step, which an operator completes.
func manuallyCompletedTask(t *testing.T, b *bundle) uuid.UUID {
	g := b.createGraph(t, b.newStep("a"))
	_, err := b.Store.RecordOutcome(context.Background(), b.outcomeParams(b.claim(t, g.id["a"]), store.OutcomePermanent))
	require.NoError(t, err)
	_, err = b.Store.OperatorAction(context.Background(), store.OperatorParams{StepID: g.id["a"], Action: store.OperatorComplete,
		Result: []byte(`1`), Operator: "op", Namespace: Namespace, Enqueuer: b.enq})
	require.NoError(t, err)
	return g.task
}

// requireLegalTrail checks a task's audit trail: per task and per step, the transitions chain
// (each starts where the previous ended), their sort keys start at 1 and strictly increase,
// their path is legal in the state machine and ends in the current state; times never go back.
func requireLegalTrail(t *testing.T, b *bundle, taskID uuid.UUID) {
	t.Helper()
	trs, err := b.Store.Transitions(context.Background(), taskID)
	require.NoError(t, err)
	require.NotEmpty(t, trs)
	byOwner := map[uuid.UUID][]store.Transition{}
	for i, tr := range trs {
		require.Equal(t, taskID, tr.TaskID)
		if i > 0 {
			require.False(t, tr.CreatedAt.Before(trs[i-1].CreatedAt), "transition %d goes back in time", i)
		}
		if tr.Metadata != nil {
			require.True(t, json.Valid(tr.Metadata), "metadata %s", tr.Metadata)
		}
		byOwner[tr.StepID] = append(byOwner[tr.StepID], tr)
	}
	chain := func(owner string, trs []store.Transition) []string {
		t.Helper()
		var path []string
		for i, tr := range trs {
			if i == 0 {
				require.Equal(t, "", tr.From, "%s: first transition", owner)
				require.Equal(t, 1, tr.SortKey, "%s: first sort key", owner)
			} else {
				require.Equal(t, trs[i-1].To, tr.From, "%s: transition %d does not start where %d ended", owner, i, i-1)
				require.Greater(t, tr.SortKey, trs[i-1].SortKey, "%s: sort keys increase", owner)
			}
			path = append(path, tr.To)
		}
		return path
	}
	taskStates := chain("task", byOwner[uuid.Nil])
	var tp []statemachine.TaskState
	for _, s := range taskStates {
		tp = append(tp, statemachine.TaskState(s))
	}
	require.NoError(t, statemachine.ValidateTaskPath(tp))
	require.Equal(t, b.task(t, taskID).State, tp[len(tp)-1])

	steps, err := b.Store.GetSteps(context.Background(), taskID)
	require.NoError(t, err)
	require.Len(t, byOwner, len(steps)+1, "every step has a trail")
	for _, st := range steps {
		var sp []statemachine.StepState
		for _, s := range chain(st.Name, byOwner[st.ID]) {
			sp = append(sp, statemachine.StepState(s))
		}
		require.NoError(t, statemachine.ValidateStepPath(sp), st.Name)
		require.Equal(t, st.State, sp[len(sp)-1], st.Name)
		for _, tr := range byOwner[st.ID] {
			require.Equal(t, st.Name, tr.StepName)
		}
	}
}

func testTransitionsEveryPathIsLegal(t *testing.T, b *bundle) {
	tasks := []uuid.UUID{busyTask(t, b), cancelledTask(t, b), manuallyCompletedTask(t, b)}
	for _, id := range tasks {
		requireLegalTrail(t, b, id)
	}
	require.Equal(t, statemachine.TaskComplete, b.task(t, tasks[0]).State)
	require.Equal(t, statemachine.TaskCancelled, b.task(t, tasks[1]).State)
	require.Equal(t, statemachine.TaskComplete, b.task(t, tasks[2]).State)
}

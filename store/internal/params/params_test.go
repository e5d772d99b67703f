package params

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

func TestAttemptAndOperatorNames(t *testing.T) {
	t.Parallel()
	for kind, want := range map[store.OutcomeKind]statemachine.Outcome{
		store.OutcomeSuccess:   statemachine.OutcomeSuccess,
		store.OutcomeRetry:     statemachine.OutcomeRetry,
		store.OutcomePermanent: statemachine.OutcomePermanent,
	} {
		require.Equal(t, want, Attempt(store.OutcomeParams{Kind: kind}).Outcome)
	}
	_, err := statemachine.PlanOutcome(Attempt(store.OutcomeParams{Kind: 42}))
	require.ErrorContains(t, err, "unknown kind 42")

	for _, a := range []store.OperatorAction{store.OperatorRetry, store.OperatorResolve, store.OperatorComplete} {
		_, err := statemachine.OperatorTarget(Operator(a))
		require.NoError(t, err, a)
	}
	g := uuid.New()
	require.Equal(t, statemachine.FixedStep{Isolates: true, InBatch: true}, FixedStep(store.Step{FailureStrategy: "isolate", BatchGroup: &g}))
	require.Equal(t, statemachine.FixedStep{}, FixedStep(store.Step{FailureStrategy: "fail_fast"}))
}

func TestCreate(t *testing.T) {
	t.Parallel()
	p := store.CreateTaskParams{TaskID: uuid.New(), Name: "order", Version: "1", Steps: []store.NewStep{
		{StepID: uuid.New(), TemplateStep: "a", Handler: "h.a"},
		{StepID: uuid.New(), TemplateStep: "b", Parents: []int{0}},
	}}
	plan, roots, err := Create(p)
	require.NoError(t, err)
	require.Equal(t, []store.StepRef{{TaskID: p.TaskID, StepID: p.Steps[0].StepID, TaskName: "order", Version: "1", Name: "a", Handler: "h.a"}}, roots)
	require.Equal(t, 1, plan.Counters.Active)
	_, _, err = Create(store.CreateTaskParams{})
	require.Error(t, err)
}

func TestConflict(t *testing.T) {
	t.Parallel()
	require.NoError(t, Conflict("x", nil))
	err := Conflict("cancel task 1", &statemachine.RefusedError{Reason: "it is complete"})
	require.ErrorIs(t, err, store.ErrConflict)
	require.ErrorIs(t, err, statemachine.ErrRefused)
	require.EqualError(t, err, "cancel task 1: it is complete: "+store.ErrConflict.Error())
	other := errors.New("boom")
	require.Equal(t, other, Conflict("x", other))
}

func TestCheckPlanAndPublisher(t *testing.T) {
	t.Parallel()
	require.ErrorContains(t, CheckPlan(store.Outcome{}), "has no plan")
	plan, err := statemachine.PlanOutcome(statemachine.Attempt{Outcome: statemachine.OutcomeSuccess, WorkerID: "w", Attempt: 1})
	require.NoError(t, err)
	require.NoError(t, CheckPlan(store.Outcome{Plan: plan}))

	p := &Publisher{}
	require.NoError(t, p.EnqueueTx(t.Context(), nil, "ns", []store.StepRef{{StepID: uuid.New()}}, 0))
	require.NoError(t, p.EnqueueTx(t.Context(), nil, "ns", nil, 0), "nothing to send lists nothing")
	mark := p.Mark()
	require.NoError(t, p.EnqueueTx(t.Context(), nil, "ns", []store.StepRef{{StepID: uuid.New(), Retry: true}}, time.Second))
	require.Len(t, p.List, 2)
	p.Rewind(mark)
	require.Len(t, p.List, 1)
	require.Equal(t, "ns", p.List[0].Namespace)
}

func TestStatus(t *testing.T) {
	t.Parallel()
	no := func() (bool, error) { return false, nil }
	yes := func() (bool, error) { return true, nil }
	for _, c := range []struct {
		err    error
		landed func() (bool, error)
		want   store.OutcomeStatus
	}{
		{store.ErrNotFound, no, store.NotFound},
		{store.ErrConflict, no, store.Conflict},
		{store.ErrConflict, yes, store.AlreadyRecorded},
	} {
		got, err := Status(fmt.Errorf("record: %w", c.err), c.landed)
		require.NoError(t, err)
		require.Equal(t, c.want, got, "%v", c.err)
	}
	boom := errors.New("boom")
	_, err := Status(boom, no)
	require.ErrorIs(t, err, boom, "any other error fails the batch")
	_, err = Status(store.ErrConflict, func() (bool, error) { return false, boom })
	require.ErrorIs(t, err, boom)
}

func TestCheckBatchAndHandoff(t *testing.T) {
	t.Parallel()
	success, err := statemachine.PlanOutcome(statemachine.Attempt{Outcome: statemachine.OutcomeSuccess, WorkerID: "w", Attempt: 1})
	require.NoError(t, err)
	retry, err := statemachine.PlanOutcome(statemachine.Attempt{Outcome: statemachine.OutcomeRetry, WorkerID: "w", Attempt: 1})
	require.NoError(t, err)
	o := store.Outcome{Plan: success, Handoff: true}
	require.ErrorContains(t, CheckBatch(store.RecordOutcomesParams{Outcomes: []store.Outcome{o}}), "no lease")
	require.NoError(t, CheckBatch(store.RecordOutcomesParams{Outcomes: []store.Outcome{o}, Lease: time.Second}))
	require.NoError(t, CheckBatch(store.RecordOutcomesParams{Outcomes: []store.Outcome{{Plan: success}}}), "no hand-over, no lease needed")
	require.ErrorContains(t, CheckBatch(store.RecordOutcomesParams{Outcomes: []store.Outcome{{}}, Lease: time.Second}), "no plan")

	require.True(t, HandsOver(o))
	require.False(t, HandsOver(store.Outcome{Plan: success}), "not asked")
	require.False(t, HandsOver(store.Outcome{Plan: retry, Handoff: true}), "a retry releases nothing")

	refs := []store.StepRef{{Handler: "a", Retry: true}, {Handler: "b"}, {Handler: "a"}}
	require.Equal(t, 2, PickHandoff(refs, []string{"a"}), "a retry timer is never handed over")
	require.Equal(t, 1, PickHandoff(refs, []string{"a", "b"}))
	require.Equal(t, -1, PickHandoff(refs, []string{"c"}))
	require.Equal(t, -1, PickHandoff(refs, nil))
}

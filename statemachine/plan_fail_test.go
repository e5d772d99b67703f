package statemachine

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPlanFail(t *testing.T) {
	t.Parallel()
	p, err := PlanFail(TaskCounters{State: TaskWaitingForRetry, Total: 3, Unfinished: 2, Active: 1, Failed: 0}, map[string]any{"threshold": "x"})
	require.NoError(t, err)
	require.Equal(t, []TaskTransition{{TaskWaitingForRetry, TaskEventFail, TaskError}}, p.Path)
	require.Equal(t, TaskError, p.State)
	require.True(t, p.Settled)
	require.Equal(t, CounterDelta{Unfinished: -2, Active: -1}, p.Delta(2))

	_, err = PlanFail(TaskCounters{State: TaskComplete}, nil)
	require.True(t, errors.Is(err, ErrRefused))

	for _, s := range StepStates() {
		want := s == StepPending || s == StepEnqueued || s == StepInProgress || s == StepEnqueuedForOrchestration || s == StepWaitingForRetry
		require.Equal(t, want, FailCancels(s), s)
	}
}

func TestCheckResolution(t *testing.T) {
	t.Parallel()
	for _, to := range DeadLetterStatuses() {
		for _, from := range DeadLetterStatuses() {
			err := CheckResolution(from, to)
			if from == DeadLetterPending && to != DeadLetterPending {
				require.NoError(t, err, "%s -> %s", from, to)
			} else {
				require.ErrorIs(t, err, ErrRefused, "%s -> %s", from, to)
			}
		}
	}
	require.ErrorIs(t, CheckResolution(DeadLetterPending, "reopened"), ErrRefused)
}

package statemachine_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	sm "github.com/tasker-systems/tasker/statemachine"
)

func TestListsAreStableAndComplete(t *testing.T) {
	t.Parallel()

	require.Equal(t, []sm.TaskState{"pending", "initializing", "enqueuing_steps", "steps_in_process",
		"evaluating_results", "waiting_for_dependencies", "waiting_for_retry", "blocked_by_failures",
		"complete", "error", "cancelled", "resolved_manually"}, sm.TaskStates())
	require.Equal(t, []sm.StepState{"pending", "enqueued", "in_progress", "enqueued_for_orchestration",
		"waiting_for_retry", "complete", "error", "cancelled", "resolved_manually"}, sm.StepStates())
	require.Equal(t, allTaskEvents, sm.TaskEvents())
	require.Equal(t, allStepEvents, sm.StepEvents())
}

func TestListsAreCopies(t *testing.T) {
	t.Parallel()

	states := sm.TaskStates()
	states[0] = "mutated"
	require.Equal(t, sm.TaskPending, sm.TaskStates()[0])

	steps := sm.StepStates()
	steps[0] = "mutated"
	require.Equal(t, sm.StepPending, sm.StepStates()[0])

	tevs := sm.TaskEvents()
	tevs[0] = "mutated"
	require.Equal(t, sm.TaskEventStart, sm.TaskEvents()[0])

	sevs := sm.StepEvents()
	sevs[0] = "mutated"
	require.Equal(t, sm.StepEventEnqueue, sm.StepEvents()[0])

	table := sm.TaskTable()
	table[0].To = sm.TaskComplete
	got, err := sm.NextTask(sm.TaskPending, sm.TaskEventStart)
	require.NoError(t, err)
	require.Equal(t, sm.TaskInitializing, got)
	require.Equal(t, sm.TaskInitializing, sm.TaskTable()[0].To)

	stable := sm.StepTable()
	stable[0].To = sm.StepComplete
	require.Equal(t, sm.StepEnqueued, sm.StepTable()[0].To)
}

func TestTaskStatePredicates(t *testing.T) {
	t.Parallel()

	tests := []struct {
		state             sm.TaskState
		terminal, settled bool
	}{
		{sm.TaskPending, false, false},
		{sm.TaskInitializing, false, false},
		{sm.TaskEnqueuingSteps, false, false},
		{sm.TaskStepsInProcess, false, false},
		{sm.TaskEvaluatingResults, false, false},
		{sm.TaskWaitingForDependencies, false, false},
		{sm.TaskWaitingForRetry, false, false},
		{sm.TaskBlockedByFailures, false, true},
		{sm.TaskComplete, true, true},
		{sm.TaskError, true, true},
		{sm.TaskCancelled, true, true},
		{sm.TaskResolvedManually, true, true},
		{"bogus", false, false},
		{"", false, false},
	}
	require.Len(t, sm.TaskStates(), len(tests)-2)
	for _, tt := range tests {
		t.Run(string(tt.state), func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.terminal, tt.state.Terminal())
			require.Equal(t, tt.settled, tt.state.Settled())
			require.Equal(t, tt.state != "bogus" && tt.state != "", tt.state.Valid())
		})
	}
}

func TestStepStatePredicates(t *testing.T) {
	t.Parallel()

	tests := []struct {
		state              sm.StepState
		terminal, finished bool
	}{
		{sm.StepPending, false, false},
		{sm.StepEnqueued, false, false},
		{sm.StepInProgress, false, false},
		{sm.StepEnqueuedForOrchestration, false, false},
		{sm.StepWaitingForRetry, false, false},
		{sm.StepComplete, true, true},
		{sm.StepError, false, false},
		{sm.StepCancelled, true, false},
		{sm.StepResolvedManually, true, true},
		{"bogus", false, false},
		{"", false, false},
	}
	require.Len(t, sm.StepStates(), len(tests)-2)
	for _, tt := range tests {
		t.Run(string(tt.state), func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.terminal, tt.state.Terminal())
			require.Equal(t, tt.finished, tt.state.Finished())
			require.Equal(t, tt.state != "bogus" && tt.state != "", tt.state.Valid())
		})
	}
}

func TestEventsValid(t *testing.T) {
	t.Parallel()

	for _, ev := range allTaskEvents {
		require.True(t, ev.Valid(), "%q", ev)
	}
	for _, ev := range allStepEvents {
		require.True(t, ev.Valid(), "%q", ev)
	}
}

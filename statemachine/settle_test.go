package statemachine

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTargetAndSettlePath(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		cur    TaskState
		counts StepCounts
		want   TaskState
		events []TaskEvent
	}{
		{"running stays", TaskStepsInProcess, StepCounts{Unfinished: 3, Active: 1}, TaskStepsInProcess, nil},
		{"last step done", TaskStepsInProcess, StepCounts{}, TaskComplete, []TaskEvent{TaskEventEvaluate, TaskEventAllStepsComplete}},
		{"only retries left", TaskStepsInProcess, StepCounts{Unfinished: 2}, TaskWaitingForRetry, []TaskEvent{TaskEventEvaluate, TaskEventAwaitingRetry}},
		{"retry promoted", TaskWaitingForRetry, StepCounts{Unfinished: 2, Active: 1}, TaskStepsInProcess, []TaskEvent{TaskEventEvaluate, TaskEventReadyStepsFound, TaskEventStepsEnqueued}},
		{"failure blocks", TaskStepsInProcess, StepCounts{Unfinished: 2, Active: 1, Failed: 1}, TaskBlockedByFailures, []TaskEvent{TaskEventEvaluate, TaskEventPermanentFailure}},
		{"isolated failure lets the rest run", TaskStepsInProcess, StepCounts{Unfinished: 3, Active: 1, Failed: 1, Isolated: 1}, TaskStepsInProcess, nil},
		{"isolated failure blocks at the end", TaskStepsInProcess, StepCounts{Unfinished: 1, Failed: 1, Isolated: 1}, TaskBlockedByFailures, []TaskEvent{TaskEventEvaluate, TaskEventPermanentFailure}},
		{"operator fix resumes", TaskBlockedByFailures, StepCounts{Unfinished: 2, Active: 1}, TaskStepsInProcess, []TaskEvent{TaskEventOperatorFix, TaskEventReadyStepsFound, TaskEventStepsEnqueued}},
		{"operator fix completes", TaskBlockedByFailures, StepCounts{}, TaskComplete, []TaskEvent{TaskEventOperatorFix, TaskEventAllStepsComplete}},
		{"terminal stays", TaskCancelled, StepCounts{Unfinished: 2}, TaskCancelled, nil},
	}
	for _, tc := range cases {
		path, got, err := SettlePath(tc.cur, tc.counts)
		require.NoError(t, err, tc.name)
		require.Equal(t, tc.want, got, tc.name)
		var events []TaskEvent
		states := []TaskState{tc.cur}
		for _, h := range path {
			events = append(events, h.Event)
			states = append(states, h.To)
		}
		require.Equal(t, tc.events, events, tc.name)
		if len(path) > 0 {
			require.Equal(t, tc.want, path[len(path)-1].To, tc.name)
		}
	}
	_, _, err := SettlePath(TaskPending, StepCounts{})
	require.Error(t, err, "a pending task does not settle by counts")
}

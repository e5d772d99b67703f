package statemachine_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	sm "github.com/tasker-systems/tasker/statemachine"
)

func TestTaskPaths(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		path    []sm.TaskState
		wantErr string // empty: legal
	}{
		{name: "JustCreated", path: []sm.TaskState{"pending"}},
		{name: "HappyPath", path: []sm.TaskState{"pending", "initializing", "enqueuing_steps",
			"steps_in_process", "evaluating_results", "complete"}},
		{name: "LoopsThroughEvaluation", path: []sm.TaskState{"pending", "initializing", "enqueuing_steps",
			"steps_in_process", "evaluating_results", "waiting_for_dependencies", "evaluating_results",
			"enqueuing_steps", "steps_in_process", "evaluating_results", "waiting_for_retry",
			"enqueuing_steps", "steps_in_process", "evaluating_results", "steps_in_process",
			"evaluating_results", "complete"}},
		{name: "BlockedThenFixed", path: []sm.TaskState{"pending", "initializing", "enqueuing_steps",
			"steps_in_process", "evaluating_results", "blocked_by_failures", "evaluating_results",
			"complete"}},
		{name: "BlockedThenResolved", path: []sm.TaskState{"pending", "initializing", "enqueuing_steps",
			"steps_in_process", "evaluating_results", "blocked_by_failures", "resolved_manually"}},
		{name: "CancelledEarly", path: []sm.TaskState{"pending", "cancelled"}},
		{name: "FailedWhileBlocked", path: []sm.TaskState{"pending", "initializing", "enqueuing_steps",
			"steps_in_process", "evaluating_results", "blocked_by_failures", "error"}},

		{name: "Empty", path: nil, wantErr: "task path is empty: illegal transition"},
		{name: "StartsElsewhere", path: []sm.TaskState{"initializing", "enqueuing_steps"},
			wantErr: `task path starts at "initializing", not "pending": illegal transition`},
		{name: "SkipsInitializing", path: []sm.TaskState{"pending", "enqueuing_steps"},
			wantErr: `task path: hop 1 "pending" -> "enqueuing_steps": no event leads there: illegal transition`},
		{name: "SelfLoop", path: []sm.TaskState{"pending", "pending"},
			wantErr: `task path: hop 1 "pending" -> "pending": no event leads there: illegal transition`},
		{name: "LeavesTerminal", path: []sm.TaskState{"pending", "cancelled", "pending"},
			wantErr: `task path: hop 2 "cancelled" -> "pending": no event leads there: illegal transition`},
		{name: "ReportsFirstBadHop", path: []sm.TaskState{"pending", "initializing", "complete", "error"},
			wantErr: `task path: hop 2 "initializing" -> "complete": no event leads there: illegal transition`},
		{name: "UnknownState", path: []sm.TaskState{"pending", "running"},
			wantErr: `task path: state 1: unknown task state "running": illegal transition`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := sm.ValidateTaskPath(tt.path)
			if tt.wantErr == "" {
				require.NoError(t, err)
				require.True(t, sm.IsLegalTaskPath(tt.path))
				return
			}
			require.EqualError(t, err, tt.wantErr)
			require.ErrorIs(t, err, sm.ErrIllegalTransition)
			require.False(t, sm.IsLegalTaskPath(tt.path))
		})
	}
}

func TestStepPaths(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		path    []sm.StepState
		wantErr string // empty: legal
	}{
		{name: "JustCreated", path: []sm.StepState{"pending"}},
		{name: "HappyPath", path: []sm.StepState{"pending", "enqueued", "in_progress", "complete"}},
		{name: "AsyncResult", path: []sm.StepState{"pending", "enqueued", "in_progress",
			"enqueued_for_orchestration", "complete"}},
		{name: "RetriedThenComplete", path: []sm.StepState{"pending", "enqueued", "in_progress",
			"waiting_for_retry", "enqueued", "in_progress", "enqueued_for_orchestration",
			"waiting_for_retry", "enqueued", "in_progress", "complete"}},
		{name: "ReleasedAndReclaimed", path: []sm.StepState{"pending", "enqueued", "in_progress",
			"enqueued", "in_progress", "complete"}},
		{name: "ErrorResetByOperator", path: []sm.StepState{"pending", "enqueued", "in_progress", "error",
			"pending", "enqueued", "in_progress", "complete"}},
		{name: "ErrorCompletedManually", path: []sm.StepState{"pending", "enqueued", "in_progress",
			"error", "complete"}},
		{name: "ErrorResolved", path: []sm.StepState{"pending", "enqueued", "in_progress",
			"enqueued_for_orchestration", "error", "resolved_manually"}},
		{name: "ErrorCancelled", path: []sm.StepState{"pending", "enqueued", "in_progress", "error", "cancelled"}},

		{name: "Empty", path: []sm.StepState{}, wantErr: "step path is empty: illegal transition"},
		{name: "StartsElsewhere", path: []sm.StepState{"enqueued"},
			wantErr: `step path starts at "enqueued", not "pending": illegal transition`},
		{name: "SkipsClaim", path: []sm.StepState{"pending", "enqueued", "complete"},
			wantErr: `step path: hop 2 "enqueued" -> "complete": no event leads there: illegal transition`},
		{name: "RetryWithoutEnqueue", path: []sm.StepState{"pending", "enqueued", "in_progress",
			"waiting_for_retry", "in_progress"},
			wantErr: `step path: hop 4 "waiting_for_retry" -> "in_progress": no event leads there: illegal transition`},
		{name: "LeavesComplete", path: []sm.StepState{"pending", "enqueued", "in_progress", "complete", "pending"},
			wantErr: `step path: hop 4 "complete" -> "pending": no event leads there: illegal transition`},
		{name: "DroppedCoreState", path: []sm.StepState{"pending", "enqueued", "in_progress",
			"enqueued_as_error_for_orchestration"},
			wantErr: `step path: state 3: unknown step state "enqueued_as_error_for_orchestration": illegal transition`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := sm.ValidateStepPath(tt.path)
			if tt.wantErr == "" {
				require.NoError(t, err)
				require.True(t, sm.IsLegalStepPath(tt.path))
				return
			}
			require.EqualError(t, err, tt.wantErr)
			require.ErrorIs(t, err, sm.ErrIllegalTransition)
			require.False(t, sm.IsLegalStepPath(tt.path))
		})
	}
}

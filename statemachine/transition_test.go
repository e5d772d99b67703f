package statemachine_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	sm "github.com/tasker-systems/tasker/statemachine"
)

// The expected tables are written out here by hand, not read from the
// package, so a mistake in the package table shows up as a difference.

var wantTask = map[sm.TaskState]map[sm.TaskEvent]sm.TaskState{
	"pending":          {"start": "initializing", "fail": "error", "cancel": "cancelled"},
	"initializing":     {"initialized": "enqueuing_steps", "fail": "error", "cancel": "cancelled"},
	"enqueuing_steps":  {"steps_enqueued": "steps_in_process", "fail": "error", "cancel": "cancelled"},
	"steps_in_process": {"evaluate": "evaluating_results", "fail": "error", "cancel": "cancelled"},
	"evaluating_results": {
		"ready_steps_found":     "enqueuing_steps",
		"steps_still_running":   "steps_in_process",
		"awaiting_dependencies": "waiting_for_dependencies",
		"awaiting_retry":        "waiting_for_retry",
		"permanent_failure":     "blocked_by_failures",
		"all_steps_complete":    "complete",
		"fail":                  "error",
		"cancel":                "cancelled",
	},
	"waiting_for_dependencies": {"evaluate": "evaluating_results", "ready_steps_found": "enqueuing_steps", "fail": "error", "cancel": "cancelled"},
	"waiting_for_retry":        {"evaluate": "evaluating_results", "ready_steps_found": "enqueuing_steps", "fail": "error", "cancel": "cancelled"},
	"blocked_by_failures":      {"operator_fix": "evaluating_results", "resolve_manually": "resolved_manually", "fail": "error", "cancel": "cancelled"},
	"complete":                 {},
	"error":                    {},
	"cancelled":                {},
	"resolved_manually":        {},
}

var wantStep = map[sm.StepState]map[sm.StepEvent]sm.StepState{
	"pending":  {"enqueue": "enqueued", "schedule": "waiting_for_retry", "cancel": "cancelled"},
	"enqueued": {"start": "in_progress", "cancel": "cancelled"},
	"in_progress": {
		"report":         "enqueued_for_orchestration",
		"complete":       "complete",
		"fail_retryable": "waiting_for_retry",
		"fail_permanent": "error",
		"release":        "enqueued",
		"cancel":         "cancelled",
	},
	"enqueued_for_orchestration": {"complete": "complete", "fail_retryable": "waiting_for_retry", "fail_permanent": "error", "cancel": "cancelled"},
	"waiting_for_retry":          {"enqueue": "enqueued", "cancel": "cancelled"},
	"error":                      {"reset": "pending", "resolve_manually": "resolved_manually", "complete_manually": "complete", "cancel": "cancelled"},
	"complete":                   {},
	"cancelled":                  {},
	"resolved_manually":          {},
}

var (
	allTaskEvents = []sm.TaskEvent{"start", "initialized", "steps_enqueued", "evaluate", "ready_steps_found",
		"steps_still_running", "awaiting_dependencies", "awaiting_retry", "permanent_failure",
		"all_steps_complete", "operator_fix", "resolve_manually", "fail", "cancel"}
	allStepEvents = []sm.StepEvent{"enqueue", "start", "report", "complete", "fail_retryable",
		"fail_permanent", "release", "reset", "resolve_manually", "complete_manually", "cancel", "schedule"}
)

func TestNextTaskEveryPair(t *testing.T) {
	t.Parallel()

	require.Len(t, sm.TaskStates(), len(wantTask))
	legal := 0
	for _, from := range sm.TaskStates() {
		row, ok := wantTask[from]
		require.True(t, ok, "state %q missing from the test's table", from)
		for _, ev := range allTaskEvents {
			got, err := sm.NextTask(from, ev)
			if want, ok := row[ev]; ok {
				legal++
				require.NoError(t, err, "%s --%s-->", from, ev)
				require.Equal(t, want, got, "%s --%s-->", from, ev)
				continue
			}
			requireIllegal(t, err, "task", string(from), string(ev))
			require.Empty(t, got)
		}
	}
	require.Len(t, sm.TaskTable(), legal, "the package table has rows the test does not expect")
}

func TestNextStepEveryPair(t *testing.T) {
	t.Parallel()

	require.Len(t, sm.StepStates(), len(wantStep))
	legal := 0
	for _, from := range sm.StepStates() {
		row, ok := wantStep[from]
		require.True(t, ok, "state %q missing from the test's table", from)
		for _, ev := range allStepEvents {
			got, err := sm.NextStep(from, ev)
			if want, ok := row[ev]; ok {
				legal++
				require.NoError(t, err, "%s --%s-->", from, ev)
				require.Equal(t, want, got, "%s --%s-->", from, ev)
				continue
			}
			requireIllegal(t, err, "step", string(from), string(ev))
			require.Empty(t, got)
		}
	}
	require.Len(t, sm.StepTable(), legal, "the package table has rows the test does not expect")
}

func requireIllegal(t *testing.T, err error, machine, from, ev string) {
	t.Helper()
	require.Error(t, err, "%s %s --%s--> should be illegal", machine, from, ev)
	require.ErrorIs(t, err, sm.ErrIllegalTransition)
	var te *sm.TransitionError
	require.True(t, errors.As(err, &te), "want *TransitionError, got %T", err)
	require.Equal(t, machine, te.Machine)
	require.Equal(t, from, te.From)
	require.Equal(t, ev, te.Event)
	require.NotEmpty(t, te.Reason)
}

func TestTransitionErrorMessages(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name string
		err  func() error
		want string
	}{
		{
			name: "StepTerminal",
			err:  func() error { _, err := sm.NextStep(sm.StepComplete, sm.StepEventStart); return err },
			want: `illegal step transition: "complete" --start-->: "complete" is terminal`,
		},
		{
			name: "TaskTerminal",
			err:  func() error { _, err := sm.NextTask(sm.TaskCancelled, sm.TaskEventFail); return err },
			want: `illegal task transition: "cancelled" --fail-->: "cancelled" is terminal`,
		},
		{
			name: "TaskNoRow",
			err:  func() error { _, err := sm.NextTask(sm.TaskPending, sm.TaskEventEvaluate); return err },
			want: `illegal task transition: "pending" --evaluate-->: "pending" does not accept "evaluate"`,
		},
		{
			name: "StepUnknownState",
			err:  func() error { _, err := sm.NextStep("running", sm.StepEventComplete); return err },
			want: `illegal step transition: "running" --complete-->: unknown step state "running"`,
		},
		{
			name: "TaskUnknownEvent",
			err:  func() error { _, err := sm.NextTask(sm.TaskPending, "go"); return err },
			want: `illegal task transition: "pending" --go-->: unknown task event "go"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.err()
			require.EqualError(t, err, tt.want)
			require.ErrorIs(t, err, sm.ErrIllegalTransition)
		})
	}
}

func TestUnknownStatesAndEventsRejected(t *testing.T) {
	t.Parallel()

	// Names that belong to the other machine must not leak across.
	for _, from := range []sm.TaskState{"", "PENDING", "bogus", "in_progress", "enqueued", " pending"} {
		for _, ev := range allTaskEvents {
			_, err := sm.NextTask(from, ev)
			requireIllegal(t, err, "task", string(from), string(ev))
		}
		require.False(t, from.Valid(), "%q", from)
	}
	for _, from := range []sm.StepState{"", "Pending", "bogus", "initializing", "blocked_by_failures", "enqueued_as_error_for_orchestration"} {
		for _, ev := range allStepEvents {
			_, err := sm.NextStep(from, ev)
			requireIllegal(t, err, "step", string(from), string(ev))
		}
		require.False(t, from.Valid(), "%q", from)
	}
	for _, ev := range []sm.TaskEvent{"", "START", "enqueue", "report", "operator-fix"} {
		for _, from := range sm.TaskStates() {
			_, err := sm.NextTask(from, ev)
			requireIllegal(t, err, "task", string(from), string(ev))
		}
		require.False(t, ev.Valid(), "%q", ev)
	}
	for _, ev := range []sm.StepEvent{"", "Start", "evaluate", "fail", "operator_fix"} {
		for _, from := range sm.StepStates() {
			_, err := sm.NextStep(from, ev)
			requireIllegal(t, err, "step", string(from), string(ev))
		}
		require.False(t, ev.Valid(), "%q", ev)
	}
}

func TestTransitionErrorIsOnlyIllegalTransition(t *testing.T) {
	t.Parallel()

	err := &sm.TransitionError{Machine: "task", From: "complete", Event: "start", Reason: "x"}
	require.ErrorIs(t, err, sm.ErrIllegalTransition)
	require.NotErrorIs(t, err, errors.New("illegal transition"))
}

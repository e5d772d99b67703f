package statemachine

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// events lists a path's events.
func events(path []TaskTransition) []TaskEvent {
	var evs []TaskEvent
	for _, h := range path {
		evs = append(evs, h.Event)
	}
	return evs
}

// requireLegal checks that a settlement's path is legal from before's state and ends where it says.
func requireLegal(t *testing.T, before TaskState, s Settlement) {
	t.Helper()
	at := before
	for _, h := range s.Path {
		require.Equal(t, at, h.From)
		next, err := NextTask(h.From, h.Event)
		require.NoError(t, err)
		require.Equal(t, next, h.To)
		at = h.To
	}
	require.Equal(t, s.State, at)
	require.Equal(t, s.State, s.After.State)
}

func TestPlanOutcomeStep(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		a        Attempt
		want     StepTransition
		meta     map[string]any
		releases bool
	}{
		{"success", Attempt{Outcome: OutcomeSuccess, WorkerID: "w", Attempt: 1},
			StepTransition{StepInProgress, StepEventComplete, StepComplete},
			map[string]any{"worker_id": "w", "attempt": 1}, true},
		{"retry", Attempt{Outcome: OutcomeRetry, WorkerID: "w", Attempt: 2, Error: json.RawMessage(`{"message":"x"}`), RetryDelay: 1500 * time.Millisecond},
			StepTransition{StepInProgress, StepEventFailRetryable, StepWaitingForRetry},
			map[string]any{"worker_id": "w", "attempt": 2, "error": json.RawMessage(`{"message":"x"}`), "retry_in_ms": int64(1500)}, false},
		{"permanent", Attempt{Outcome: OutcomePermanent, WorkerID: "w", Attempt: 3, Error: json.RawMessage(`{}`)},
			StepTransition{StepInProgress, StepEventFailPermanent, StepError},
			map[string]any{"worker_id": "w", "attempt": 3, "error": json.RawMessage(`{}`)}, false},
	}
	for _, tc := range cases {
		p, err := PlanOutcome(tc.a)
		require.NoError(t, err, tc.name)
		require.Equal(t, tc.want, p.Step, tc.name)
		require.Equal(t, tc.meta, p.Meta, tc.name)
		require.Equal(t, tc.releases, p.ReleasesChildren, tc.name)
		require.Equal(t, tc.releases, p.KeepsResult, tc.name)
	}
	_, err := PlanOutcome(Attempt{Outcome: 9})
	require.ErrorContains(t, err, "unknown kind 9")
}

func TestOutcomeEffects(t *testing.T) {
	t.Parallel()
	running := TaskCounters{State: TaskStepsInProcess, Total: 4, Unfinished: 4, Active: 2}
	blocked := TaskCounters{State: TaskBlockedByFailures, Total: 4, Unfinished: 3, Active: 1, Failed: 1}
	cases := []struct {
		name              string
		a                 Attempt
		before            TaskCounters
		spawned, released int
		enqueued          int // Released
		delta             CounterDelta
		state             TaskState
		events            []TaskEvent
		settled, retry    bool
	}{
		{name: "success releases a child", a: Attempt{Outcome: OutcomeSuccess}, before: running, released: 1, enqueued: 1,
			delta: CounterDelta{Unfinished: -1}, state: TaskStepsInProcess},
		{name: "success releases two", a: Attempt{Outcome: OutcomeSuccess}, before: running, released: 2, enqueued: 2,
			delta: CounterDelta{Unfinished: -1, Active: 1}, state: TaskStepsInProcess},
		{name: "last step completes the task", a: Attempt{Outcome: OutcomeSuccess},
			before: TaskCounters{State: TaskStepsInProcess, Total: 3, Unfinished: 1, Active: 1},
			delta:  CounterDelta{Unfinished: -1, Active: -1}, state: TaskComplete,
			events: []TaskEvent{TaskEventEvaluate, TaskEventAllStepsComplete}, settled: true},
		{name: "a decision spawns three steps, two released", a: Attempt{Outcome: OutcomeSuccess},
			before: TaskCounters{State: TaskStepsInProcess, Total: 2, Unfinished: 1, Active: 1}, spawned: 3, released: 2, enqueued: 2,
			delta: CounterDelta{Total: 3, Unfinished: 2, Active: 1}, state: TaskStepsInProcess},
		{name: "retry waits", a: Attempt{Outcome: OutcomeRetry},
			before: TaskCounters{State: TaskStepsInProcess, Total: 2, Unfinished: 2, Active: 1},
			delta:  CounterDelta{Active: -1}, state: TaskWaitingForRetry,
			events: []TaskEvent{TaskEventEvaluate, TaskEventAwaitingRetry}, retry: true},
		{name: "retry while others run", a: Attempt{Outcome: OutcomeRetry}, before: running,
			delta: CounterDelta{Active: -1}, state: TaskStepsInProcess, retry: true},
		{name: "permanent failure blocks but a step is in flight: not at rest", a: Attempt{Outcome: OutcomePermanent}, before: running,
			delta: CounterDelta{Active: -1, Failed: 1}, state: TaskBlockedByFailures,
			events: []TaskEvent{TaskEventEvaluate, TaskEventPermanentFailure}},
		{name: "permanent failure of the only active step: at rest", a: Attempt{Outcome: OutcomePermanent},
			before: TaskCounters{State: TaskStepsInProcess, Total: 2, Unfinished: 2, Active: 1},
			delta:  CounterDelta{Active: -1, Failed: 1}, state: TaskBlockedByFailures,
			events: []TaskEvent{TaskEventEvaluate, TaskEventPermanentFailure}, settled: true},
		{name: "last step in flight of a blocked task finishes: at rest", a: Attempt{Outcome: OutcomeSuccess}, before: blocked, released: 1,
			delta: CounterDelta{Unfinished: -1, Active: -1}, state: TaskBlockedByFailures, settled: true},
		{name: "a blocked task's release stays pending", a: Attempt{Outcome: OutcomeSuccess},
			before: TaskCounters{State: TaskBlockedByFailures, Total: 4, Unfinished: 3, Active: 2, Failed: 1}, released: 2,
			delta: CounterDelta{Unfinished: -1, Active: -1}, state: TaskBlockedByFailures},
		{name: "isolated failure lets the rest run", a: Attempt{Outcome: OutcomePermanent, Isolated: true}, before: running, released: 1, enqueued: 1,
			delta: CounterDelta{Failed: 1, Isolated: 1}, state: TaskStepsInProcess},
		{name: "isolated failure of the last active step blocks at the end", a: Attempt{Outcome: OutcomePermanent, Isolated: true},
			before: TaskCounters{State: TaskStepsInProcess, Total: 3, Unfinished: 1, Active: 1},
			delta:  CounterDelta{Active: -1, Failed: 1, Isolated: 1}, state: TaskBlockedByFailures,
			events: []TaskEvent{TaskEventEvaluate, TaskEventPermanentFailure}, settled: true},
	}
	for _, tc := range cases {
		p, err := PlanOutcome(tc.a)
		require.NoError(t, err, tc.name)
		e, err := p.Apply("step-1", tc.before, tc.spawned, tc.released)
		require.NoError(t, err, tc.name)
		require.Equal(t, tc.before.Runnable(), e.EnqueueReleased, tc.name)
		require.Equal(t, tc.enqueued, e.Released, tc.name)
		require.Equal(t, tc.delta, e.Delta, tc.name)
		require.Equal(t, tc.state, e.State, tc.name)
		require.Equal(t, tc.events, events(e.Path), tc.name)
		require.Equal(t, tc.settled, e.Settled, tc.name)
		require.Equal(t, tc.retry, e.EnqueueRetry, tc.name)
		require.Equal(t, map[string]any{"step": "step-1", "worker_id": tc.a.WorkerID}, e.TaskMeta, tc.name)
		requireLegal(t, tc.before.State, e.Settlement)
	}
}

func TestUnholdsSibling(t *testing.T) {
	t.Parallel()
	cases := []struct {
		a       Attempt
		inBatch bool
		want    bool
	}{
		{Attempt{Outcome: OutcomeSuccess}, true, true},
		{Attempt{Outcome: OutcomeSuccess}, false, false},
		{Attempt{Outcome: OutcomeRetry}, true, false},
		{Attempt{Outcome: OutcomePermanent}, true, false},
		{Attempt{Outcome: OutcomePermanent, Isolated: true}, true, true},
		{Attempt{Outcome: OutcomePermanent, Isolated: true}, false, false},
	}
	for _, tc := range cases {
		p, err := PlanOutcome(tc.a)
		require.NoError(t, err)
		require.Equal(t, tc.want, p.UnholdsSibling(tc.inBatch), "%+v in batch %v", tc.a, tc.inBatch)
	}
}

// A join is released exactly when its last parent finishes: each finished parent counts itself
// off the child's unfinished parents, and only the one that reaches zero makes it ready.
func TestJoinReleasedByItsLastParent(t *testing.T) {
	t.Parallel()
	cases := []struct {
		state      StepState
		unfinished int
		held       bool
		want       bool
	}{
		{StepPending, 0, false, true},
		{StepPending, 1, false, false},
		{StepPending, 0, true, false},
		{StepEnqueued, 0, false, false},
		{StepCancelled, 0, false, false},
		{StepComplete, 0, false, false},
	}
	for _, tc := range cases {
		require.Equal(t, tc.want, JoinReady(tc.state, tc.unfinished, tc.held), "%+v", tc)
	}
	// A diamond's join with three parents, finishing one at a time.
	unfinished := 3
	for parent := 1; parent <= 3; parent++ {
		unfinished--
		require.Equal(t, parent == 3, JoinReady(StepPending, unfinished, false), "after parent %d", parent)
	}
}

func TestEdgeUnfinished(t *testing.T) {
	t.Parallel()
	require.True(t, EdgeUnfinished(StepPending, false))
	require.True(t, EdgeUnfinished(StepInProgress, false))
	require.True(t, EdgeUnfinished(StepError, false))
	require.False(t, EdgeUnfinished(StepComplete, false))
	require.False(t, EdgeUnfinished(StepResolvedManually, false))
	// The deciding step counts even though its row already says complete: its own release follows.
	require.True(t, EdgeUnfinished(StepComplete, true))
}

func TestPlanOperator(t *testing.T) {
	t.Parallel()
	blocked := TaskCounters{State: TaskBlockedByFailures, Total: 3, Unfinished: 2, Failed: 1}
	cases := []struct {
		name     string
		action   OperatorAction
		before   TaskCounters
		step     FixedStep
		path     []StepEvent
		target   StepState
		self     bool
		releases bool
		unhold   bool
		resumes  bool
		rearm    bool
		enqueued int
		delta    CounterDelta
		state    TaskState
		events   []TaskEvent
		settled  bool
	}{
		{name: "retry resumes a blocked task", action: OperatorRetry, before: blocked,
			path: []StepEvent{StepEventReset, StepEventEnqueue}, target: StepEnqueued, self: true, resumes: true, rearm: true,
			delta: CounterDelta{Active: 1, Failed: -1}, state: TaskStepsInProcess,
			events: []TaskEvent{TaskEventOperatorFix, TaskEventReadyStepsFound, TaskEventStepsEnqueued}},
		{name: "resolve releases a child", action: OperatorResolve, before: blocked, enqueued: 1,
			path: []StepEvent{StepEventResolveManually}, target: StepResolvedManually, releases: true, resumes: true, rearm: true,
			delta: CounterDelta{Unfinished: -1, Active: 1, Failed: -1}, state: TaskStepsInProcess,
			events: []TaskEvent{TaskEventOperatorFix, TaskEventReadyStepsFound, TaskEventStepsEnqueued}},
		{name: "completing the last step completes the task", action: OperatorComplete,
			before: TaskCounters{State: TaskBlockedByFailures, Total: 2, Unfinished: 1, Failed: 1},
			path:   []StepEvent{StepEventCompleteManually}, target: StepComplete, releases: true, resumes: true, rearm: true,
			// A blocked task with nothing in flight was at rest already, so finishing it settles nothing new.
			delta: CounterDelta{Unfinished: -1, Failed: -1}, state: TaskComplete,
			events: []TaskEvent{TaskEventOperatorFix, TaskEventAllStepsComplete}},
		{name: "one of two failures fixed: still blocked, nothing released", action: OperatorResolve,
			before: TaskCounters{State: TaskBlockedByFailures, Total: 3, Unfinished: 3, Failed: 2},
			path:   []StepEvent{StepEventResolveManually}, target: StepResolvedManually, releases: true,
			delta: CounterDelta{Unfinished: -1, Failed: -1}, state: TaskBlockedByFailures},
		{name: "an isolated batch worker resolved in a running task", action: OperatorResolve,
			before: TaskCounters{State: TaskStepsInProcess, Total: 4, Unfinished: 3, Active: 1, Failed: 1, Isolated: 1},
			step:   FixedStep{Isolates: true, InBatch: true}, enqueued: 1,
			path: []StepEvent{StepEventResolveManually}, target: StepResolvedManually, releases: true, unhold: true, resumes: true,
			delta: CounterDelta{Unfinished: -1, Active: 1, Failed: -1, Isolated: -1}, state: TaskStepsInProcess},
		{name: "a retried batch worker frees no slot", action: OperatorRetry,
			before: TaskCounters{State: TaskBlockedByFailures, Total: 4, Unfinished: 3, Failed: 1, Isolated: 1},
			step:   FixedStep{Isolates: true, InBatch: true},
			path:   []StepEvent{StepEventReset, StepEventEnqueue}, target: StepEnqueued, self: true, resumes: true, rearm: true,
			delta: CounterDelta{Active: 1, Failed: -1, Isolated: -1}, state: TaskStepsInProcess,
			events: []TaskEvent{TaskEventOperatorFix, TaskEventReadyStepsFound, TaskEventStepsEnqueued}},
		{name: "a fix while a step is still in flight", action: OperatorResolve,
			before: TaskCounters{State: TaskBlockedByFailures, Total: 3, Unfinished: 2, Active: 1, Failed: 1},
			path:   []StepEvent{StepEventResolveManually}, target: StepResolvedManually, releases: true, resumes: true, rearm: true,
			delta: CounterDelta{Unfinished: -1, Failed: -1}, state: TaskStepsInProcess,
			events: []TaskEvent{TaskEventOperatorFix, TaskEventReadyStepsFound, TaskEventStepsEnqueued}},
	}
	for _, tc := range cases {
		p, err := PlanOperator(tc.action, tc.before, tc.step, "ops", "fixed")
		require.NoError(t, err, tc.name)
		require.Equal(t, tc.target, p.Target, tc.name)
		var evs []StepEvent
		at := StepError
		for i, h := range p.Path {
			require.Equal(t, at, h.From, tc.name)
			evs = append(evs, h.Event)
			at = h.To
			if i == 0 {
				require.Equal(t, map[string]any{"operator": "ops", "reason": "fixed"}, h.Meta, tc.name)
			} else {
				require.Nil(t, h.Meta, tc.name)
			}
		}
		require.Equal(t, tc.path, evs, tc.name)
		require.Equal(t, tc.target, at, tc.name)
		require.Equal(t, tc.self, p.EnqueueSelf, tc.name)
		require.Equal(t, tc.releases, p.ReleasesChildren, tc.name)
		require.Equal(t, tc.unhold, p.UnholdsSibling, tc.name)
		require.Equal(t, tc.resumes, p.Resumes, tc.name)
		require.Equal(t, tc.rearm, p.Rearm, tc.name)
		d, s, err := p.Apply(tc.enqueued)
		require.NoError(t, err, tc.name)
		require.Equal(t, tc.delta, d, tc.name)
		require.Equal(t, tc.state, s.State, tc.name)
		require.Equal(t, tc.events, events(s.Path), tc.name)
		require.Equal(t, tc.settled, s.Settled, tc.name)
		requireLegal(t, tc.before.State, s)
	}
}

func TestPlanOperatorRefuses(t *testing.T) {
	t.Parallel()
	for _, st := range []TaskState{TaskComplete, TaskError, TaskCancelled, TaskResolvedManually} {
		_, err := PlanOperator(OperatorRetry, TaskCounters{State: st}, FixedStep{}, "", "")
		require.ErrorIs(t, err, ErrRefused, st)
		require.EqualError(t, err, "task is "+string(st))
	}
	_, err := PlanOperator("reboot", TaskCounters{State: TaskBlockedByFailures, Failed: 1}, FixedStep{}, "", "")
	require.ErrorContains(t, err, `unknown operator action "reboot"`)
	require.NotErrorIs(t, err, ErrRefused)
	_, err = OperatorTarget("reboot")
	require.Error(t, err)
}

func TestPlanCancel(t *testing.T) {
	t.Parallel()
	before := TaskCounters{State: TaskBlockedByFailures, Total: 5, Unfinished: 4, Active: 1, Failed: 2, Isolated: 1}
	p, err := PlanCancel(before, "no longer needed")
	require.NoError(t, err)
	require.Equal(t, []TaskTransition{{TaskBlockedByFailures, TaskEventCancel, TaskCancelled}}, p.Path)
	require.Equal(t, TaskCancelled, p.State)
	require.True(t, p.Settled)
	require.Equal(t, map[string]any{"reason": "no longer needed"}, p.Meta)
	d := p.Delta(4)
	require.Equal(t, CounterDelta{Unfinished: -4, Active: -1, Failed: -2, Isolated: -1}, d)
	after := before.Add(d)
	require.Equal(t, TaskCounters{State: TaskBlockedByFailures, Total: 5}, after)

	_, err = PlanCancel(TaskCounters{State: TaskComplete}, "")
	require.ErrorIs(t, err, ErrRefused)
	require.EqualError(t, err, "it is complete")

	for _, s := range StepStates() {
		require.Equal(t, !s.Terminal(), Cancels(s), s)
		if Cancels(s) {
			require.NoError(t, CheckStepMove(s, StepEventCancel, StepCancelled), s)
		}
	}
}

func TestPlanPromote(t *testing.T) {
	t.Parallel()
	p, err := PlanPromote(TaskCounters{State: TaskWaitingForRetry, Total: 2, Unfinished: 1})
	require.NoError(t, err)
	require.Equal(t, StepTransition{StepWaitingForRetry, StepEventEnqueue, StepEnqueued}, p.Step)
	require.Equal(t, map[string]any{"reason": "backoff elapsed"}, p.Meta)
	require.Equal(t, CounterDelta{Active: 1}, p.Delta)
	require.Equal(t, TaskStepsInProcess, p.State)
	require.Equal(t, []TaskEvent{TaskEventEvaluate, TaskEventReadyStepsFound, TaskEventStepsEnqueued}, events(p.Path))
	require.False(t, p.Settled)

	p, err = PlanPromote(TaskCounters{State: TaskStepsInProcess, Total: 2, Unfinished: 2, Active: 1})
	require.NoError(t, err)
	require.Empty(t, p.Path, "a running task stays")

	for _, st := range []TaskState{TaskBlockedByFailures, TaskComplete, TaskCancelled} {
		_, err := PlanPromote(TaskCounters{State: st})
		require.ErrorIs(t, err, ErrRefused, st)
	}
}

func TestPlanCreate(t *testing.T) {
	t.Parallel()
	p, err := PlanCreate([]int{0, 1, 1, 2, 0})
	require.NoError(t, err)
	require.Equal(t, []int{0, 4}, p.Roots)
	require.Equal(t, []StepState{StepEnqueued, StepPending, StepPending, StepPending, StepEnqueued}, p.States)
	require.Equal(t, TaskCounters{State: TaskStepsInProcess, Total: 5, Unfinished: 5, Active: 2}, p.Counters)
	require.Equal(t, []TaskEvent{TaskEventStart, TaskEventInitialized, TaskEventStepsEnqueued}, events(p.Path))
	states := []TaskState{TaskPending}
	for _, h := range p.Path {
		states = append(states, h.To)
	}
	require.NoError(t, ValidateTaskPath(states))

	_, err = PlanCreate([]int{1, 1})
	require.ErrorContains(t, err, "no root step")
	_, err = PlanCreate(nil)
	require.Error(t, err)
}

func TestSettle(t *testing.T) {
	t.Parallel()
	before := TaskCounters{State: TaskStepsInProcess, Total: 2, Unfinished: 1, Active: 1}
	s, err := Settle(before, CounterDelta{Unfinished: -1, Active: -1})
	require.NoError(t, err)
	require.Equal(t, TaskCounters{State: TaskComplete, Total: 2}, s.After)
	require.True(t, s.Settled)

	// Already at rest (blocked, nothing in flight): a change that keeps it there does not settle it again.
	rest := TaskCounters{State: TaskBlockedByFailures, Total: 3, Unfinished: 2, Failed: 1}
	s, err = Settle(rest, CounterDelta{})
	require.NoError(t, err)
	require.Empty(t, s.Path)
	require.False(t, s.Settled)

	_, err = Settle(TaskCounters{State: TaskPending}, CounterDelta{})
	require.Error(t, err, "a pending task does not settle by counts")
}

func TestTaskPathAndCheckStepMove(t *testing.T) {
	t.Parallel()
	path, err := TaskPath(TaskStepsInProcess, TaskEventEvaluate, TaskEventPermanentFailure)
	require.NoError(t, err)
	require.Equal(t, []TaskTransition{
		{TaskStepsInProcess, TaskEventEvaluate, TaskEvaluatingResults},
		{TaskEvaluatingResults, TaskEventPermanentFailure, TaskBlockedByFailures},
	}, path)
	_, err = TaskPath(TaskComplete, TaskEventCancel)
	require.ErrorIs(t, err, ErrIllegalTransition)

	require.NoError(t, CheckStepMove(StepPending, StepEventEnqueue, StepEnqueued))
	require.ErrorIs(t, CheckStepMove(StepComplete, StepEventEnqueue, StepEnqueued), ErrIllegalTransition)
	require.ErrorContains(t, CheckStepMove(StepInProgress, StepEventComplete, StepError), "expected error")
}

func TestHeartbeatVerdict(t *testing.T) {
	t.Parallel()
	require.NoError(t, HeartbeatVerdict(StepInProgress, true))
	err := HeartbeatVerdict(StepInProgress, false)
	require.ErrorIs(t, err, ErrRefused)
	require.EqualError(t, err, "another worker holds it")
	err = HeartbeatVerdict(StepCancelled, false)
	require.EqualError(t, err, "step is cancelled")
	var re *RefusedError
	require.True(t, errors.As(err, &re))
}

package statemachine_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	sm "github.com/tasker-systems/tasker/statemachine"
)

// graph is a machine's table as adjacency lists, for reachability checks.
type graph map[string][]string

func taskGraph() graph {
	g := graph{}
	for _, r := range sm.TaskTable() {
		g[string(r.From)] = append(g[string(r.From)], string(r.To))
	}
	return g
}

func stepGraph() graph {
	g := graph{}
	for _, r := range sm.StepTable() {
		g[string(r.From)] = append(g[string(r.From)], string(r.To))
	}
	return g
}

// reach returns every state reachable from start, start included.
func (g graph) reach(start string) map[string]bool {
	seen := map[string]bool{start: true}
	queue := []string{start}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		for _, next := range g[s] {
			if !seen[next] {
				seen[next] = true
				queue = append(queue, next)
			}
		}
	}
	return seen
}

func TestNoEventLeavesTerminalState(t *testing.T) {
	t.Parallel()

	for _, r := range sm.TaskTable() {
		require.False(t, r.From.Terminal(), "task row %+v leaves a terminal state", r)
	}
	for _, r := range sm.StepTable() {
		require.False(t, r.From.Terminal(), "step row %+v leaves a terminal state", r)
	}
	for _, s := range sm.TaskStates() {
		if !s.Terminal() {
			continue
		}
		for _, ev := range sm.TaskEvents() {
			_, err := sm.NextTask(s, ev)
			require.ErrorIs(t, err, sm.ErrIllegalTransition, "task %s --%s-->", s, ev)
		}
	}
	for _, s := range sm.StepStates() {
		if !s.Terminal() {
			continue
		}
		for _, ev := range sm.StepEvents() {
			_, err := sm.NextStep(s, ev)
			require.ErrorIs(t, err, sm.ErrIllegalTransition, "step %s --%s-->", s, ev)
		}
	}
}

func TestCancelAndFailFromEveryNonTerminalState(t *testing.T) {
	t.Parallel()

	for _, s := range sm.TaskStates() {
		if s.Terminal() {
			continue
		}
		got, err := sm.NextTask(s, sm.TaskEventCancel)
		require.NoError(t, err, "task %s --cancel-->", s)
		require.Equal(t, sm.TaskCancelled, got)

		got, err = sm.NextTask(s, sm.TaskEventFail)
		require.NoError(t, err, "task %s --fail-->", s)
		require.Equal(t, sm.TaskError, got)
	}
	for _, s := range sm.StepStates() {
		if s.Terminal() {
			continue
		}
		got, err := sm.NextStep(s, sm.StepEventCancel)
		require.NoError(t, err, "step %s --cancel-->", s)
		require.Equal(t, sm.StepCancelled, got)
	}
}

func TestEveryNonTerminalStateReachesTerminal(t *testing.T) {
	t.Parallel()

	tg := taskGraph()
	for _, s := range sm.TaskStates() {
		if s.Terminal() {
			require.Empty(t, tg[string(s)], "terminal task state %s has successors", s)
			continue
		}
		found := false
		for r := range tg.reach(string(s)) {
			found = found || sm.TaskState(r).Terminal()
		}
		require.True(t, found, "task state %s cannot reach a terminal state", s)
	}

	sg := stepGraph()
	for _, s := range sm.StepStates() {
		if s.Terminal() {
			require.Empty(t, sg[string(s)], "terminal step state %s has successors", s)
			continue
		}
		found := false
		for r := range sg.reach(string(s)) {
			found = found || sm.StepState(r).Terminal()
		}
		require.True(t, found, "step state %s cannot reach a terminal state", s)
	}
}

func TestEveryStateReachableFromPending(t *testing.T) {
	t.Parallel()

	tr := taskGraph().reach(string(sm.TaskPending))
	for _, s := range sm.TaskStates() {
		require.True(t, tr[string(s)], "task state %s is unreachable from pending", s)
	}
	require.Len(t, tr, len(sm.TaskStates()))

	sr := stepGraph().reach(string(sm.StepPending))
	for _, s := range sm.StepStates() {
		require.True(t, sr[string(s)], "step state %s is unreachable from pending", s)
	}
	require.Len(t, sr, len(sm.StepStates()))
}

func TestTablesAreWellFormed(t *testing.T) {
	t.Parallel()

	type taskKey struct {
		from sm.TaskState
		ev   sm.TaskEvent
	}
	seenTask := map[taskKey]bool{}
	for _, r := range sm.TaskTable() {
		k := taskKey{r.From, r.Event}
		require.False(t, seenTask[k], "duplicate task row for %+v", k)
		seenTask[k] = true
		require.True(t, r.From.Valid(), "row %+v", r)
		require.True(t, r.To.Valid(), "row %+v", r)
		require.True(t, r.Event.Valid(), "row %+v", r)
		require.NotEqual(t, r.From, r.To, "self-loop %+v: transitions that do not change the state are not written", r)
	}

	type stepKey struct {
		from sm.StepState
		ev   sm.StepEvent
	}
	seenStep := map[stepKey]bool{}
	for _, r := range sm.StepTable() {
		k := stepKey{r.From, r.Event}
		require.False(t, seenStep[k], "duplicate step row for %+v", k)
		seenStep[k] = true
		require.True(t, r.From.Valid(), "row %+v", r)
		require.True(t, r.To.Valid(), "row %+v", r)
		require.True(t, r.Event.Valid(), "row %+v", r)
		require.NotEqual(t, r.From, r.To, "self-loop %+v: transitions that do not change the state are not written", r)
	}
}

func TestEveryEventIsUsed(t *testing.T) {
	t.Parallel()

	usedTask := map[sm.TaskEvent]bool{}
	for _, r := range sm.TaskTable() {
		usedTask[r.Event] = true
	}
	for _, ev := range sm.TaskEvents() {
		require.True(t, usedTask[ev], "task event %s has no row", ev)
	}

	usedStep := map[sm.StepEvent]bool{}
	for _, r := range sm.StepTable() {
		usedStep[r.Event] = true
	}
	for _, ev := range sm.StepEvents() {
		require.True(t, usedStep[ev], "step event %s has no row", ev)
	}
}

func TestStepErrorLeftOnlyByOperatorOrCancel(t *testing.T) {
	t.Parallel()

	var leaving []sm.StepEvent
	for _, ev := range sm.StepEvents() {
		if _, err := sm.NextStep(sm.StepError, ev); err == nil {
			leaving = append(leaving, ev)
		}
	}
	require.ElementsMatch(t, []sm.StepEvent{
		sm.StepEventReset, sm.StepEventResolveManually, sm.StepEventCompleteManually, sm.StepEventCancel,
	}, leaving)
}

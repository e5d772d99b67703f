package statemachine

// FailPlan is the failure of a task decided outside its steps: the staleness detector finding it
// stuck, or an operator dead-lettering it. The task moves to error along [TaskEventFail]; its steps
// that could still run ([FailCancels]) move to cancelled, so that no worker picks them up again;
// steps already in error stay in error, the record of what failed.
type FailPlan struct {
	Path    []TaskTransition
	State   TaskState
	Settled bool
	// Meta is the metadata of every transition the failure writes (the task's and its steps').
	Meta   map[string]any
	before TaskCounters
}

// PlanFail plans the failure of a task with counters before, recording meta on its transitions.
// A terminal task is refused with a *[RefusedError].
func PlanFail(before TaskCounters, meta map[string]any) (FailPlan, error) {
	if before.State.Terminal() {
		return FailPlan{}, refused("task is %s", before.State)
	}
	path, err := TaskPath(before.State, TaskEventFail)
	if err != nil {
		return FailPlan{}, err
	}
	return FailPlan{Path: path, State: TaskError, Settled: true, Meta: meta, before: before}, nil
}

// FailCancels reports whether a task's failure ([PlanFail]) cancels a step in state s: every step
// that is neither terminal nor in error does.
func FailCancels(s StepState) bool { return !s.Terminal() && s != StepError }

// Delta is the change to the task's counters once cancelled steps were cancelled: none is active
// any more; the steps in error stay failed.
func (p FailPlan) Delta(cancelled int) CounterDelta {
	return CounterDelta{Unfinished: -cancelled, Active: -p.before.Active}
}

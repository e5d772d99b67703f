package statemachine

import "fmt"

// PlanScheduledCreate plans a task whose start is scheduled (TaskRequest.RunAt): as PlanCreate,
// except that the roots wait in waiting_for_retry (StepEventSchedule) for the start, as a retry
// waits for its backoff, with no attempt spent, and the task, with no step active, waits in
// waiting_for_retry. Its path goes through steps_in_process and evaluating_results, the legal way
// from pending to waiting_for_retry, so that scheduling adds no task state to Tasker Core's twelve.
// The promotion of the roots at the start (PlanPromote) moves the task on to steps_in_process.
func PlanScheduledCreate(parents []int) (CreatePlan, error) {
	p, err := PlanCreate(parents)
	if err != nil {
		return CreatePlan{}, err
	}
	to, err := NextStep(StepPending, StepEventSchedule)
	if err != nil {
		return CreatePlan{}, err
	}
	for _, r := range p.Roots {
		p.States[r] = to
	}
	path, err := TaskPath(TaskPending, TaskEventStart, TaskEventInitialized, TaskEventStepsEnqueued,
		TaskEventEvaluate, TaskEventAwaitingRetry)
	if err != nil {
		return CreatePlan{}, fmt.Errorf("plan a scheduled task: %w", err)
	}
	p.Path = path
	p.Counters.State, p.Counters.Active = path[len(path)-1].To, 0
	return p, nil
}

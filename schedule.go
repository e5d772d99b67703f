package tasker

import (
	"fmt"
	"time"

	"github.com/tasker-systems/tasker/statemachine"
)

// A scheduled start (TaskRequest.RunAt) adds no task state to Tasker Core's twelve: the task's
// root steps are created in waiting_for_retry (the step event "schedule"), with next_retry_at at
// the start and no attempt spent, and their messages are retry timers delayed until then. A root
// is ready, like a retry whose backoff has elapsed, once its time has come, so the database holds
// the schedule: it survives restarts, a message that arrives early is put back, a lost one is
// published again by the sweeper once due, and the task is listed as scheduled (Task.RunAt,
// ListOptions.Scheduled) while no step has made an attempt.

// MaxRunAtAhead bounds how far ahead TaskRequest.RunAt may be: a start further out is most
// likely a mistake of units, and is refused with an *InputError.
const MaxRunAtAhead = 10 * 365 * 24 * time.Hour

// scheduledStart checks a request's RunAt against now: the zero time (start now) for a RunAt not
// in the future, RunAt at the database's microsecond precision (rounded up, so that nothing starts
// before it) otherwise, and an *InputError beyond MaxRunAtAhead.
func scheduledStart(template string, runAt, now time.Time) (time.Time, error) {
	if runAt.IsZero() || !runAt.After(now) {
		return time.Time{}, nil
	}
	if runAt.Sub(now) > MaxRunAtAhead {
		return time.Time{}, &InputError{Template: template, Violations: []string{
			fmt.Sprintf("run_at %s is more than %s ahead", runAt.UTC().Format(time.RFC3339), MaxRunAtAhead)}}
	}
	t := runAt.Truncate(time.Microsecond)
	if t.Before(runAt) {
		t = t.Add(time.Microsecond)
	}
	return t, nil
}

// scheduledAt is the scheduled start of a task read with its steps, or nil when it has started
// (a step made an attempt) or was never scheduled: the earliest next retry of its roots that wait
// with no attempt made, while the task waits in waiting_for_retry.
func scheduledAt(t *Task) *time.Time {
	if t.State != statemachine.TaskWaitingForRetry {
		return nil
	}
	var at *time.Time
	for i := range t.Steps {
		s := &t.Steps[i]
		if s.Attempts > 0 {
			return nil
		}
		if s.State == statemachine.StepWaitingForRetry && s.NextRetryAt != nil && (at == nil || s.NextRetryAt.Before(*at)) {
			v := *s.NextRetryAt
			at = &v
		}
	}
	return at
}

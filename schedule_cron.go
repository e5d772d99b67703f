package tasker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
)

// Schedules (cron): the engine elected for maintenance creates each run of each schedule, and
// each run's identity is its schedule and scheduled time (TaskRequest.IdempotencyKey
// "schedule:<name>:<time>"), so a run is created exactly once across all the engines on one
// database, even when a leadership changes hands during a run's creation: the second creation
// finds the first. Every engine should add the same schedules (as it registers the same
// templates); the leader's are the ones that run.

// MissedRuns says what a newly elected engine does with the runs scheduled while no engine led
// (downtime, a handover).
type MissedRuns int

const (
	// MissedSkip creates the latest run missed, when it was due within ScheduleGrace (a leadership
	// handover, a restart), and skips the others.
	MissedSkip MissedRuns = iota
	// MissedCatchUp creates every run missed within Schedule.CatchUpWindow, oldest first, at most
	// MaxCatchUpRuns a pass.
	MissedCatchUp
)

// ScheduleGrace is how far back MissedSkip looks for missed runs.
const ScheduleGrace = time.Minute

// CatchUpWindowDefault is MissedCatchUp's window when Schedule.CatchUpWindow is 0.
const CatchUpWindowDefault = 24 * time.Hour

// MaxCatchUpRuns bounds the runs of one schedule a pass creates.
const MaxCatchUpRuns = 1000

// SchedulePassInterval is how often the elected engine looks for due runs.
const SchedulePassInterval = 500 * time.Millisecond

// Schedule runs a template on a cron schedule.
type Schedule struct {
	// Name identifies the schedule, and with a run's time, the run.
	Name string
	// Namespace, TaskName and Version select the template ("" Version: the highest registered).
	Namespace, TaskName, Version string
	// Cron is a standard cron expression (minute hour day-of-month month day-of-week), with an
	// optional leading seconds field, or a descriptor (@hourly, @every 5m), read by
	// github.com/robfig/cron/v3.
	Cron string
	// Location is the time zone the expression is read in; nil means UTC.
	Location *time.Location
	// Context builds a run's context from its scheduled time; nil means {"scheduled_at": time}.
	Context func(at time.Time) (any, error)
	// Missed and CatchUpWindow say what happens to runs missed while no engine led.
	Missed        MissedRuns
	CatchUpWindow time.Duration
	// Priority and Tags are each run's.
	Priority int
	Tags     []string
}

// schedules are an engine's schedules and the parsed expressions.
type schedules struct {
	mu   sync.Mutex
	list []scheduleEntry
}

type scheduleEntry struct {
	s     Schedule
	sched cron.Schedule
}

var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// AddSchedule adds a schedule to the engine; add schedules before RunWorkers (a schedule added
// later runs from the next maintenance election). It returns a *ValueError for an expression
// that does not parse, a name already in use or a missing template name.
func (e *Engine) AddSchedule(s Schedule) error {
	switch {
	case s.Name == "" || strings.ContainsRune(s.Name, 0):
		return &ValueError{Field: "schedule name", Reason: "is empty or holds a NUL character"}
	case s.Namespace == "" || s.TaskName == "":
		return &ValueError{Field: "schedule " + s.Name, Reason: "names no template (Namespace, TaskName)"}
	}
	loc := s.Location
	if loc == nil {
		loc = time.UTC
	}
	sched, err := cronParser.Parse(s.Cron)
	if err != nil {
		return &ValueError{Field: "schedule " + s.Name, Reason: "cron expression: " + err.Error(), Err: err}
	}
	s.Location = loc
	e.sched.mu.Lock()
	defer e.sched.mu.Unlock()
	for _, x := range e.sched.list {
		if x.s.Name == s.Name {
			return &ValueError{Field: "schedule " + s.Name, Reason: "is already added"}
		}
	}
	e.sched.list = append(e.sched.list, scheduleEntry{s: s, sched: sched})
	if len(e.sched.list) == 1 {
		e.core.SetScheduler(SchedulePassInterval, e.newSchedulePass)
	}
	return nil
}

// newSchedulePass returns the pass function of one leadership: it remembers, per schedule, the
// last run it has seen created, and starts from the schedule's look-back.
//
// A pass returns the time of the earliest run not due yet, for the scheduler to wake then on the
// engine's clock (Config.Clock).
func (e *Engine) newSchedulePass() func(ctx context.Context) (time.Time, error) {
	seen := map[string]time.Time{}
	return func(ctx context.Context) (time.Time, error) {
		e.sched.mu.Lock()
		list := append([]scheduleEntry(nil), e.sched.list...)
		e.sched.mu.Unlock()
		now := e.now()
		var errs []error
		var next time.Time
		for _, x := range list {
			from, ok := seen[x.s.Name]
			if !ok {
				from = x.lookBack(now)
			}
			for i := 0; i < MaxCatchUpRuns; i++ {
				at := x.sched.Next(from.In(x.s.Location))
				if at.IsZero() || at.After(now) {
					break
				}
				if err := e.createRun(ctx, x.s, at); err != nil {
					errs = append(errs, err)
					break // this run again at the next pass
				}
				from = at
			}
			seen[x.s.Name] = from
			// A run due already (its creation failed) waits for the next pass, not for a wake-up.
			if at := x.sched.Next(from.In(x.s.Location)); at.After(now) && (next.IsZero() || at.Before(next)) {
				next = at
			}
		}
		return next, errors.Join(errs...)
	}
}

// lookBack is where a new leadership starts looking for a schedule's due runs: the start of its
// catch-up window (MissedCatchUp), or just before the latest run due within ScheduleGrace
// (MissedSkip: that run is created, older missed ones are not).
func (x scheduleEntry) lookBack(now time.Time) time.Time {
	if x.s.Missed == MissedCatchUp {
		back := x.s.CatchUpWindow
		if back <= 0 {
			back = CatchUpWindowDefault
		}
		return now.Add(-back)
	}
	from := now.Add(-ScheduleGrace)
	for prev, i := from, 0; i < 100000; i++ {
		at := x.sched.Next(prev.In(x.s.Location))
		if at.IsZero() || at.After(now) {
			break
		}
		from, prev = prev, at
	}
	return from
}

// createRun creates the schedule's run at `at`, once: a duplicate is the run created already.
func (e *Engine) createRun(ctx context.Context, s Schedule, at time.Time) error {
	var input any = map[string]any{"scheduled_at": at.UTC()}
	if s.Context != nil {
		var err error
		if input, err = s.Context(at); err != nil {
			return fmt.Errorf("schedule %s: context of the run at %s: %w", s.Name, at, err)
		}
	}
	_, err := e.CreateTask(ctx, TaskRequest{Namespace: s.Namespace, Name: s.TaskName, Version: s.Version, Context: input,
		IdempotencyKey: ScheduleRunKey(s.Name, at), Priority: s.Priority, Tags: s.Tags, SourceSystem: "tasker.schedule",
		Reason: "schedule " + s.Name})
	if err != nil && !errors.Is(err, ErrDuplicateTask) {
		return fmt.Errorf("schedule %s: run at %s: %w", s.Name, at, err)
	}
	return nil
}

// ScheduleRunKey is the idempotency key of a schedule's run at a time: what makes it one task
// across engines.
func ScheduleRunKey(name string, at time.Time) string {
	return "schedule:" + name + ":" + at.UTC().Format(time.RFC3339Nano)
}

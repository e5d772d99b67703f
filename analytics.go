package tasker

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tasker-systems/tasker/store"
)

// AnalyticsWindow selects the tasks that analytics looks at: those created at or after Since and
// before Until, in Namespace when it is set. A zero Since means from the beginning, a zero Until
// up to now. Retention bounds what is left to look at: purged tasks are not counted.
type AnalyticsWindow struct {
	Since, Until time.Time
	Namespace    string
}

// Performance is the statistics of a window per template version and per template step
// (Tasker Core's /v1/analytics/performance). The percentiles are linear interpolations
// (PostgreSQL's percentile_cont; the memory store computes the same), at microsecond precision.
type Performance struct {
	Window    AnalyticsWindow
	Templates []TemplatePerformance // by namespace, name, version
	Steps     []StepPerformance     // by namespace, task name, step
}

// TemplatePerformance is one template version's tasks in a window.
type TemplatePerformance struct {
	Namespace, Name, Version string
	// Tasks counts the tasks created in the window; Completed, Failed (error) and Cancelled those of
	// them in that state now. The rest are still running, blocked or resolved by hand.
	Tasks, Completed, Failed, Cancelled int
	// SuccessRate is Completed / (Completed + Failed): the share of the tasks that ended one way or
	// the other that completed; 0 when none did.
	SuccessRate float64
	// DurationP50 and DurationP95 are the median and 95th percentile of complete tasks' durations,
	// from creation to completion; 0 when none completed.
	DurationP50, DurationP95 time.Duration
}

// StepPerformance is one template step's steps in a window, across the template's versions (a
// batch's workers count under the batch worker step of the template).
type StepPerformance struct {
	Namespace, TaskName, Step string
	// Steps counts the steps; Completed and Failed (error) those in that state now.
	Steps, Completed, Failed int
	// Attempts counts the attempts started; Retries those after each step's first.
	Attempts, Retries int
	// SuccessRate is Completed / (Completed + Failed); 0 when neither.
	SuccessRate float64
	// DurationP50 and DurationP95 are percentiles of complete steps' last attempt, from its start
	// to its completion (handler time plus the recording); 0 when none completed.
	DurationP50, DurationP95 time.Duration
}

// Bottlenecks are a window's slowest and most retried steps (Tasker Core's
// /v1/analytics/bottlenecks).
type Bottlenecks struct {
	Window AnalyticsWindow
	// Slowest lists steps that completed at least once, by DurationP95, slowest first.
	Slowest []StepPerformance
	// MostRetried lists steps that were retried, by Retries, most first.
	MostRetried []StepPerformance
}

// BottlenecksLimitDefault is how many steps each list of Bottlenecks holds when the limit is 0.
const BottlenecksLimitDefault = 10

// Performance returns the statistics of the tasks created in the window, per template version and
// per template step, computed by the store (in SQL on PostgreSQL, over tasks_created_idx).
func (e *Engine) Performance(ctx context.Context, w AnalyticsWindow) (*Performance, error) {
	a, err := e.store.Analytics(ctx, store.AnalyticsParams{Since: w.Since, Until: w.Until, Namespace: w.Namespace})
	if err != nil {
		return nil, fmt.Errorf("tasker: performance: %w", err)
	}
	p := &Performance{Window: w, Templates: make([]TemplatePerformance, len(a.Templates)), Steps: make([]StepPerformance, len(a.Steps))}
	for i, t := range a.Templates {
		p.Templates[i] = TemplatePerformance{Namespace: t.Namespace, Name: t.Name, Version: t.Version, Tasks: t.Tasks,
			Completed: t.Completed, Failed: t.Failed, Cancelled: t.Cancelled, SuccessRate: rate(t.Completed, t.Failed),
			DurationP50: t.DurationP50, DurationP95: t.DurationP95}
	}
	for i, s := range a.Steps {
		p.Steps[i] = StepPerformance{Namespace: s.Namespace, TaskName: s.TaskName, Step: s.Step, Steps: s.Steps,
			Completed: s.Completed, Failed: s.Failed, Attempts: s.Attempts, Retries: s.Retries,
			SuccessRate: rate(s.Completed, s.Failed), DurationP50: s.DurationP50, DurationP95: s.DurationP95}
	}
	return p, nil
}

// Bottlenecks returns the window's slowest steps (by p95 duration) and most retried steps, at most
// limit of each (0 means BottlenecksLimitDefault). Ties are broken by the steps' keys.
func (e *Engine) Bottlenecks(ctx context.Context, w AnalyticsWindow, limit int) (*Bottlenecks, error) {
	if limit <= 0 {
		limit = BottlenecksLimitDefault
	}
	p, err := e.Performance(ctx, w)
	if err != nil {
		return nil, err
	}
	b := &Bottlenecks{Window: w}
	for _, s := range p.Steps {
		if s.Completed > 0 {
			b.Slowest = append(b.Slowest, s)
		}
		if s.Retries > 0 {
			b.MostRetried = append(b.MostRetried, s)
		}
	}
	// p.Steps is in key order and the sorts are stable: ties keep it.
	slices.SortStableFunc(b.Slowest, func(x, y StepPerformance) int { return cmp.Compare(y.DurationP95, x.DurationP95) })
	slices.SortStableFunc(b.MostRetried, func(x, y StepPerformance) int { return cmp.Compare(y.Retries, x.Retries) })
	b.Slowest, b.MostRetried = b.Slowest[:min(limit, len(b.Slowest))], b.MostRetried[:min(limit, len(b.MostRetried))]
	return b, nil
}

func rate(ok, failed int) float64 {
	if ok+failed == 0 {
		return 0
	}
	return float64(ok) / float64(ok+failed)
}

// String gives a step's key, namespace/task/step.
func (s StepPerformance) String() string {
	return strings.Join([]string{s.Namespace, s.TaskName, s.Step}, "/")
}

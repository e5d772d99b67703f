package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

// StalenessAction is what the staleness detector does with a task past a threshold, as
// tasker.StalenessAction spells it.
type StalenessAction string

// The staleness actions.
const (
	// StalenessDeadLetter writes a dead-letter entry and moves the task to error, in one
	// transaction.
	StalenessDeadLetter StalenessAction = "dlq"
	// StalenessError moves the task to error without an entry.
	StalenessError StalenessAction = "error"
	// StalenessReport only logs and counts the task.
	StalenessReport StalenessAction = "none"
)

// Threshold names a staleness threshold; the names are those of a template's lifecycle keys
// without their _minutes suffix, and go into the transition's metadata and the entry's detail.
type Threshold string

// The thresholds.
const (
	// ThresholdMaxDuration bounds a task's age, from creation, in any state but
	// blocked_by_failures (a blocked task waits for an operator, not for the engine).
	ThresholdMaxDuration Threshold = "max_duration"
	// ThresholdWaitingForDependencies bounds the waiting_for_dependencies state.
	ThresholdWaitingForDependencies Threshold = "max_waiting_for_dependencies"
	// ThresholdWaitingForRetry bounds the waiting_for_retry state.
	ThresholdWaitingForRetry Threshold = "max_waiting_for_retry"
	// ThresholdInProcess bounds steps_in_process and the passing states around it (pending,
	// initializing, enqueuing_steps, evaluating_results).
	ThresholdInProcess Threshold = "max_steps_in_process"
)

// Band is where a task's age stands against its threshold.
type Band string

// The bands, Tasker Core's: healthy below 80 % of the threshold, warning from 80 % up to it,
// stale at or past it.
const (
	BandHealthy Band = "healthy"
	BandWarning Band = "warning"
	BandStale   Band = "stale"
)

// warningRatio is where the warning band begins.
const warningRatio = 0.8

// rank orders the bands, healthy first.
func (b Band) rank() int {
	switch b {
	case BandWarning:
		return 1
	case BandStale:
		return 2
	}
	return 0
}

// BandOf returns the band of an age that is ratio times its threshold.
func BandOf(ratio float64) Band {
	switch {
	case ratio >= 1:
		return BandStale
	case ratio >= warningRatio:
		return BandWarning
	}
	return BandHealthy
}

// StalenessLimits are the thresholds of one template, resolved: 0 means no limit.
type StalenessLimits struct {
	MaxDuration, WaitingForDependencies, WaitingForRetry, InProcess time.Duration
	Action                                                          StalenessAction
}

// stateLimit returns the threshold that bounds a task's time in state s, if any.
func (l *StalenessLimits) stateLimit(s statemachine.TaskState) (Threshold, time.Duration) {
	switch s {
	case statemachine.TaskPending, statemachine.TaskInitializing, statemachine.TaskEnqueuingSteps,
		statemachine.TaskStepsInProcess, statemachine.TaskEvaluatingResults:
		return ThresholdInProcess, l.InProcess
	case statemachine.TaskWaitingForDependencies:
		return ThresholdWaitingForDependencies, l.WaitingForDependencies
	case statemachine.TaskWaitingForRetry:
		return ThresholdWaitingForRetry, l.WaitingForRetry
	}
	return "", 0
}

// shortest returns the smallest limit that is set, or 0.
func (l *StalenessLimits) shortest() time.Duration {
	var m time.Duration
	for _, d := range []time.Duration{l.MaxDuration, l.WaitingForDependencies, l.WaitingForRetry, l.InProcess} {
		if d > 0 && (m == 0 || d < m) {
			m = d
		}
	}
	return m
}

// StalenessConfig configures the staleness detector, with its defaults applied.
type StalenessConfig struct {
	// Interval paces the passes; BatchSize bounds one read of ActiveTasks.
	Interval  time.Duration
	BatchSize int
	// DryRun logs and counts what a pass would move, and moves nothing.
	DryRun bool
	// Disabled keeps the detector from running (Staleness still reports).
	Disabled bool
	// Defaults are the limits of a task whose template version this engine has not registered;
	// ByName those of the templates, by "namespace/name", that have their own settings.
	Defaults StalenessLimits
	ByName   map[string]StalenessLimits
}

// Verdict is a task measured against the threshold that is closest to firing.
type Verdict struct {
	Task store.ActiveTask
	// Threshold is "" when no limit applies to the task in its state (Band is then healthy).
	Threshold Threshold
	// Limit is the threshold's value; Measured is the age set against it (the task's age for
	// max_duration, its time in its state otherwise); Ratio is Measured / Limit.
	Limit, Measured time.Duration
	Ratio           float64
	Band            Band
	Action          StalenessAction
}

// Judge measures a task against limits: of the thresholds that apply to it, the one with the
// highest ratio is the verdict's.
func Judge(t store.ActiveTask, l StalenessLimits) Verdict {
	v := Verdict{Task: t, Action: l.Action, Band: BandHealthy}
	// A task that waits by design (a scheduled start, a durable sleep, a wait for a signal) is not
	// stuck waiting for a retry; max_duration still bounds it.
	if th, lim := l.stateLimit(t.State); lim > 0 && !(t.Waiting && t.State == statemachine.TaskWaitingForRetry) {
		v.Threshold, v.Limit, v.Measured, v.Ratio = th, lim, t.StateAge, float64(t.StateAge)/float64(lim)
	}
	if l.MaxDuration > 0 && t.State != statemachine.TaskBlockedByFailures {
		if r := float64(t.Age) / float64(l.MaxDuration); v.Threshold == "" || r > v.Ratio {
			v.Threshold, v.Limit, v.Measured, v.Ratio = ThresholdMaxDuration, l.MaxDuration, t.Age, r
		}
	}
	if v.Threshold != "" {
		v.Band = BandOf(v.Ratio)
	}
	return v
}

// stalenessLimits returns the limits of a template version: its own when this engine registered
// it; else, when this engine registered other versions of the template, those of its highest (a
// rolling deploy's old tasks are judged as the new ones); else its name's, else the defaults.
func (e *Engine) stalenessLimits(ns, name, version string) StalenessLimits {
	key := ns + "/" + name
	e.mu.RLock()
	var best *Template
	for _, t := range e.templates[key] {
		if t.Version == version {
			best = t
			break
		}
		if best == nil || compareVersions(t.Version, best.Version) > 0 {
			best = t
		}
	}
	e.mu.RUnlock()
	if best != nil {
		return best.Staleness
	}
	if l, ok := e.cfg.Staleness.ByName[key]; ok {
		return l
	}
	return e.cfg.Staleness.Defaults
}

// shortestLimit is the smallest limit of any template's: a task younger than it cannot be stale,
// nor one younger than warningRatio of it in a warning.
func (e *Engine) shortestLimit() time.Duration {
	cfg := &e.cfg.Staleness
	m := cfg.Defaults.shortest()
	consider := func(l *StalenessLimits) {
		if d := l.shortest(); d > 0 && (m == 0 || d < m) {
			m = d
		}
	}
	for _, l := range cfg.ByName {
		consider(&l)
	}
	for _, t := range e.registeredTemplates() {
		consider(&t.Staleness)
	}
	return m
}

// StalenessParams filters and pages Staleness.
type StalenessParams struct {
	// Namespace, when set, keeps that namespace's tasks.
	Namespace string
	// MinBand keeps the tasks in this band or worse; "" keeps every task.
	MinBand Band
	// AfterID continues after the task with this ID (keyset pagination, task ID order).
	AfterID uuid.UUID
	// Limit bounds the verdicts returned; 0 means no bound (every task is read, in batches).
	Limit int
}

// Staleness measures the tasks not yet terminal against their thresholds, in task ID order,
// reading them in batches of Config.Staleness.BatchSize.
func (e *Engine) Staleness(ctx context.Context, p StalenessParams) ([]Verdict, error) {
	var out []Verdict
	err := e.eachVerdict(ctx, p.Namespace, p.AfterID, p.MinBand, func(v Verdict) bool {
		out = append(out, v)
		return p.Limit <= 0 || len(out) < p.Limit
	})
	return out, err
}

// eachVerdict reads the active tasks after afterID in batches and calls fn with the verdict of
// each in band minBand or worse, until fn returns false or none is left.
func (e *Engine) eachVerdict(ctx context.Context, ns string, afterID uuid.UUID, minBand Band, fn func(Verdict) bool) error {
	var minAge time.Duration
	if minBand.rank() > 0 {
		if m := e.shortestLimit(); m > 0 {
			minAge = time.Duration(float64(m) * warningRatio)
			if minBand == BandStale {
				minAge = m
			}
		}
	}
	batch := max(e.cfg.Staleness.BatchSize, 1)
	for {
		tasks, err := e.store.ActiveTasks(ctx, store.ActiveTasksParams{Namespace: ns, MinAge: minAge, AfterID: afterID, Limit: batch})
		if err != nil {
			return fmt.Errorf("list the active tasks: %w", err)
		}
		for _, t := range tasks {
			v := Judge(t, e.stalenessLimits(t.Namespace, t.Name, t.Version))
			if v.Band.rank() >= minBand.rank() && !fn(v) {
				return nil
			}
		}
		if len(tasks) < batch {
			return nil
		}
		afterID = tasks[len(tasks)-1].ID
	}
}

// StalenessPass counts what one pass of the detector found and did.
type StalenessPass struct {
	// Stale counts the tasks found past a threshold; of them, DeadLettered were moved to the
	// dead-letter queue and to error, Failed to error only, Reported only logged (action none),
	// WouldMove would have been moved (dry run), and Skipped had moved meanwhile (the
	// compare-and-set failed) and were left alone.
	Stale, DeadLettered, Failed, Reported, WouldMove, Skipped int
}

// staleness is the detector's service: one pass.
func (w *workers) staleness(ctx context.Context) error {
	_, err := w.e.StalenessPass(ctx)
	return err
}

// StalenessPass looks once through the active tasks, in batches, for those past a threshold and
// applies each one's action: a dead-letter entry and error, error only, or a report. The move is
// a compare-and-set on the state and the transition measured, so a task that moved meanwhile,
// or that another engine moved, is skipped. With Config.Staleness.DryRun nothing is moved. It
// returns an error when the store failed, after trying the other tasks.
func (e *Engine) StalenessPass(ctx context.Context) (StalenessPass, error) {
	var res StalenessPass
	var failed error
	minAge := e.shortestLimit()
	if minAge <= 0 {
		return res, nil // no threshold anywhere
	}
	dry := e.cfg.Staleness.DryRun
	var afterID uuid.UUID
	batch := max(e.cfg.Staleness.BatchSize, 1)
	for {
		tasks, err := e.store.ActiveTasks(ctx, store.ActiveTasksParams{MinAge: minAge, AfterID: afterID, Limit: batch})
		if err != nil {
			if ctx.Err() == nil {
				e.log.Error(err, "look for stale tasks")
			}
			return res, fmt.Errorf("look for stale tasks: %w", err)
		}
		for _, t := range tasks {
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			v := Judge(t, e.stalenessLimits(t.Namespace, t.Name, t.Version))
			if v.Band != BandStale {
				continue
			}
			res.Stale++
			if err := e.actOnStale(ctx, v, dry, &res); err != nil {
				failed = err
			}
		}
		if len(tasks) < batch {
			break
		}
		afterID = tasks[len(tasks)-1].ID
	}
	// Only a pass that moved something, or would have, is worth an Info line: tasks that are only
	// reported come up at every pass.
	log := e.log.V(1)
	if res.DeadLettered+res.Failed+res.WouldMove > 0 {
		log = e.log
	}
	e.tel.stalePass(ctx, res.Stale)
	if res.Stale > 0 {
		log.Info("staleness pass", "stale", res.Stale, "dead_lettered", res.DeadLettered, "failed", res.Failed,
			"reported", res.Reported, "would_move", res.WouldMove, "skipped", res.Skipped, "dry_run", dry)
	}
	return res, failed
}

// actOnStale applies a stale task's action and counts it.
func (e *Engine) actOnStale(ctx context.Context, v Verdict, dry bool, res *StalenessPass) error {
	t := &v.Task
	kv := []any{"task", t.ID, "template", t.Namespace + "/" + t.Name + "@" + t.Version, "state", t.State,
		"threshold", v.Threshold, "limit", v.Limit, "age", v.Measured, "action", v.Action}
	switch {
	case v.Action != StalenessDeadLetter && v.Action != StalenessError:
		res.Reported++
		e.log.V(1).Info("stale task (report only)", kv...)
		return nil
	case dry:
		res.WouldMove++
		e.log.Info("stale task would be moved (dry run)", kv...)
		return nil
	}
	detail := map[string]any{"threshold": string(v.Threshold), "limit": v.Limit.String(), "limit_ms": v.Limit.Milliseconds(),
		"age": v.Measured.String(), "age_ms": v.Measured.Milliseconds(), "state": string(t.State), "action": string(v.Action)}
	meta := map[string]any{"reason": string(store.ReasonStalenessTimeout), "worker_id": e.cfg.WorkerID}
	for k, x := range detail {
		meta[k] = x
	}
	p := store.FailTaskParams{TaskID: t.ID, From: t.State, FromSortKey: t.StateSortKey, Meta: meta}
	if v.Action == StalenessDeadLetter {
		p.DeadLetter = &store.NewDeadLetter{ID: uuid.Must(uuid.NewV7()), Reason: store.ReasonStalenessTimeout, Detail: detail}
	}
	if _, err := e.store.FailTask(ctx, p); err != nil {
		if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
			res.Skipped++
			e.log.V(1).Info("stale task moved meanwhile; left alone", append(kv, "reason", err.Error())...)
			return nil
		}
		if ctx.Err() == nil {
			e.log.Error(err, "move a stale task", kv...)
		}
		return fmt.Errorf("move stale task %s: %w", t.ID, err)
	}
	e.tel.staleMovedBy(ctx, t.Namespace, v.Action)
	if v.Action == StalenessDeadLetter {
		e.tel.deadLettered(ctx, t.Namespace, store.ReasonStalenessTimeout)
		res.DeadLettered++
		e.log.Info("stale task dead-lettered and failed", kv...)
	} else {
		res.Failed++
		e.log.Info("stale task failed", kv...)
	}
	e.CancelRuns(t.ID)
	e.waiters.Notify(t.ID)
	e.wakeParent(ctx, t.ID, nil) // child.go
	return nil
}

// StalenessDefaults returns the limits of a template with no settings of its own.
func (e *Engine) StalenessDefaults() StalenessLimits { return e.cfg.Staleness.Defaults }

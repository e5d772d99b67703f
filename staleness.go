package tasker

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-systems/tasker/internal/engine"
)

// Defaults of StalenessConfig's zero values. The thresholds are Tasker Core's system defaults.
const (
	// StalenessIntervalDefault is how often the elected engine looks for stale tasks.
	StalenessIntervalDefault = time.Minute
	// StalenessBatchSizeDefault is how many tasks one read of a pass takes.
	StalenessBatchSizeDefault = 100
	// MaxDurationDefault bounds a task's age, from creation, in any state but blocked_by_failures.
	MaxDurationDefault = 24 * time.Hour
	// MaxWaitingForDependenciesDefault bounds the waiting_for_dependencies state.
	MaxWaitingForDependenciesDefault = time.Hour
	// MaxWaitingForRetryDefault bounds the waiting_for_retry state.
	MaxWaitingForRetryDefault = 30 * time.Minute
	// MaxInProcessDefault bounds steps_in_process (and the passing states around it).
	MaxInProcessDefault = 30 * time.Minute
	// StalenessActionConfigDefault is the action for the tasks of templates without a lifecycle
	// (and without an action in StalenessConfig.Templates): report only. A template's lifecycle
	// defaults to StalenessActionDefault (dlq).
	StalenessActionConfigDefault = StalenessReport
)

// StalenessIntervalMin is the shortest StalenessConfig.Interval.
const StalenessIntervalMin = 10 * time.Millisecond

// StalenessNoLimit, as a threshold, means no limit: StalenessThresholds' zero means "inherit".
const StalenessNoLimit time.Duration = -1

// StalenessAction is what the staleness detector does with a task past a threshold. Its values
// are those of a template's lifecycle.staleness_action.
type StalenessAction string

// The staleness actions.
const (
	// StalenessDeadLetter writes a dead-letter entry (reason staleness_timeout, with a snapshot
	// of the task and the threshold that fired) and moves the task to error, in one transaction.
	StalenessDeadLetter StalenessAction = "dlq"
	// StalenessError moves the task to error without an entry.
	StalenessError StalenessAction = "error"
	// StalenessReport only logs the task (at V(1)) and counts it; Engine.Staleness shows it.
	StalenessReport StalenessAction = "none"
)

// Valid reports whether a is one of the actions ("" is not).
func (a StalenessAction) Valid() bool {
	return a == StalenessDeadLetter || a == StalenessError || a == StalenessReport
}

// StalenessConfig configures the staleness detector: a maintenance service of the elected engine
// that looks, every Interval, at the tasks not yet terminal, in batches of BatchSize, and moves
// each one that spent longer than its threshold in its state (or in all, for MaxDuration) as its
// action says. The move is a compare-and-set on the state the task was measured in and is
// recorded in the audit trail: the transitions into error carry the reason staleness_timeout
// and the threshold that fired (threshold, limit, age, action in their metadata).
//
// Which threshold bounds which state:
//   - MaxInProcess: steps_in_process, and pending, initializing, enqueuing_steps and
//     evaluating_results (states a task passes through; one stuck there is stuck in process);
//   - MaxWaitingForDependencies: waiting_for_dependencies;
//   - MaxWaitingForRetry: waiting_for_retry;
//   - MaxDuration: the task's age since creation, in every state but blocked_by_failures (a
//     blocked task waits for an operator; the dead-letter queue takes those that exhausted their
//     retries).
//
// A task's thresholds come, field by field, from StalenessConfig.Templates for its template's
// "namespace/name", then from the template's lifecycle (minutes), then from Defaults. Its action
// comes from Templates, then the lifecycle's staleness_action (which defaults to dlq), then
// Defaults.Action, which defaults to report only: a template without a lifecycle is only
// reported unless the Config says otherwise. A task whose template version the elected engine has
// not registered is judged by the highest version of the template it has, else by Templates and
// Defaults. The lifecycle's auto_fail_on_timeout and auto_dlq_on_timeout load but are not used:
// staleness_action says what happens.
type StalenessConfig struct {
	// Interval is the time between passes; 0 means StalenessIntervalDefault, and the minimum is
	// StalenessIntervalMin.
	Interval time.Duration
	// BatchSize bounds how many tasks one read of a pass takes (keyset paging); 0 means
	// StalenessBatchSizeDefault.
	BatchSize int
	// DryRun makes a pass log (at Info) the tasks it would move, and move nothing.
	DryRun bool
	// Disabled keeps the detector from running; Engine.Staleness still reports.
	Disabled bool
	// Defaults are the engine-wide thresholds. A zero threshold means its default
	// (MaxDurationDefault and the like), StalenessNoLimit (any negative value) no limit; a zero
	// Action means StalenessActionConfigDefault.
	Defaults StalenessThresholds
	// Templates overrides, by "namespace/name" (every version), a template's lifecycle: a zero
	// field inherits (the lifecycle's value, else Defaults'), StalenessNoLimit means no limit.
	// This is how thresholds below a minute are set, since the lifecycle counts in minutes.
	Templates map[string]StalenessThresholds
}

// StalenessThresholds is a set of staleness thresholds and the action taken past them. What a
// zero field means depends on where it is: see StalenessConfig.Defaults and Templates.
type StalenessThresholds struct {
	// MaxDuration bounds a task's age since creation (not in blocked_by_failures).
	MaxDuration time.Duration
	// MaxWaitingForDependencies bounds the waiting_for_dependencies state.
	MaxWaitingForDependencies time.Duration
	// MaxWaitingForRetry bounds the waiting_for_retry state.
	MaxWaitingForRetry time.Duration
	// MaxInProcess bounds steps_in_process and the passing states around it.
	MaxInProcess time.Duration
	// Action is what happens to a task past a threshold.
	Action StalenessAction
}

// checkStaleness refuses a StalenessConfig that cannot run, before defaults are applied.
func checkStaleness(s *StalenessConfig) error {
	switch {
	case s.Interval < 0:
		return &ConfigError{Field: "Staleness.Interval", Value: s.Interval, Reason: "is negative (0 means the default)"}
	case s.Interval > 0 && s.Interval < StalenessIntervalMin:
		return &ConfigError{Field: "Staleness.Interval", Value: s.Interval,
			Reason: fmt.Sprintf("is below the minimum of %v (StalenessIntervalMin; 0 means the default)", StalenessIntervalMin)}
	case s.BatchSize < 0:
		return &ConfigError{Field: "Staleness.BatchSize", Value: s.BatchSize, Reason: "is negative (0 means the default)"}
	case s.Defaults.Action != "" && !s.Defaults.Action.Valid():
		return &ConfigError{Field: "Staleness.Defaults.Action", Value: fmt.Sprintf("%q", s.Defaults.Action), Reason: "is not dlq, error or none"}
	}
	for key, th := range s.Templates {
		if ns, name, ok := strings.Cut(key, "/"); !ok || ns == "" || name == "" {
			return &ConfigError{Field: fmt.Sprintf("Staleness.Templates[%q]", key), Value: fmt.Sprintf("%q", key), Reason: `is not "namespace/name"`}
		}
		if th.Action != "" && !th.Action.Valid() {
			return &ConfigError{Field: fmt.Sprintf("Staleness.Templates[%q].Action", key), Value: fmt.Sprintf("%q", th.Action), Reason: "is not dlq, error or none"}
		}
	}
	return nil
}

// stalenessDefaults applies StalenessConfig's defaults, and returns the engine's view of it.
func stalenessDefaults(s StalenessConfig) engine.StalenessConfig {
	if s.Interval <= 0 {
		s.Interval = StalenessIntervalDefault
	}
	if s.BatchSize <= 0 {
		s.BatchSize = StalenessBatchSizeDefault
	}
	d := s.Defaults
	def := engine.StalenessLimits{
		MaxDuration:            pick(d.MaxDuration, MaxDurationDefault),
		WaitingForDependencies: pick(d.MaxWaitingForDependencies, MaxWaitingForDependenciesDefault),
		WaitingForRetry:        pick(d.MaxWaitingForRetry, MaxWaitingForRetryDefault),
		InProcess:              pick(d.MaxInProcess, MaxInProcessDefault),
		Action:                 engine.StalenessAction(cmpOr(d.Action, StalenessActionConfigDefault)),
	}
	out := engine.StalenessConfig{Interval: s.Interval, BatchSize: s.BatchSize, DryRun: s.DryRun, Disabled: s.Disabled,
		Defaults: def, ByName: map[string]engine.StalenessLimits{}}
	for key := range s.Templates {
		out.ByName[key] = stalenessLimits(&s, def, key, nil)
	}
	return out
}

// stalenessLimits resolves a template's thresholds: Templates[key], then the lifecycle, then the
// resolved defaults def.
func stalenessLimits(s *StalenessConfig, def engine.StalenessLimits, key string, l *Lifecycle) engine.StalenessLimits {
	o := s.Templates[key]
	lim := def
	if l != nil {
		lim.MaxDuration = pick(minutes(l.MaxDurationMinutes), def.MaxDuration)
		lim.WaitingForDependencies = pick(minutes(l.MaxWaitingForDependenciesMinutes), def.WaitingForDependencies)
		lim.WaitingForRetry = pick(minutes(l.MaxWaitingForRetryMinutes), def.WaitingForRetry)
		lim.InProcess = pick(minutes(l.MaxStepsInProcessMinutes), def.InProcess)
		lim.Action = engine.StalenessAction(cmpOr(StalenessAction(l.StalenessAction), StalenessActionDefault))
	}
	lim.MaxDuration = pick(o.MaxDuration, lim.MaxDuration)
	lim.WaitingForDependencies = pick(o.MaxWaitingForDependencies, lim.WaitingForDependencies)
	lim.WaitingForRetry = pick(o.MaxWaitingForRetry, lim.WaitingForRetry)
	lim.InProcess = pick(o.MaxInProcess, lim.InProcess)
	if o.Action != "" {
		lim.Action = engine.StalenessAction(o.Action)
	}
	return lim
}

// pick returns v when set, else inherited; a negative v (StalenessNoLimit) is no limit, 0.
func pick(v, inherited time.Duration) time.Duration {
	switch {
	case v < 0:
		return 0
	case v == 0:
		return max(inherited, 0)
	}
	return v
}

func minutes(n int) time.Duration { return time.Duration(n) * time.Minute }

func cmpOr(a, b StalenessAction) StalenessAction {
	if a != "" {
		return a
	}
	return b
}

// templateStaleness returns a registered template's resolved thresholds.
func (e *Engine) templateStaleness(c *Template) engine.StalenessLimits {
	return stalenessLimits(&e.cfg.Staleness, e.core.StalenessDefaults(), c.Namespace+"/"+c.Name, c.Lifecycle)
}

// StalenessBand is where a task's age stands against its threshold, in Tasker Core's bands.
type StalenessBand string

// The bands.
const (
	// BandHealthy: below 80 % of the threshold, or no threshold applies.
	BandHealthy StalenessBand = StalenessBand(engine.BandHealthy)
	// BandWarning: from 80 % up to the threshold.
	BandWarning StalenessBand = StalenessBand(engine.BandWarning)
	// BandStale: at or past the threshold; the detector moves the task at its next pass (unless
	// its action is none, or the detector runs dry).
	BandStale StalenessBand = StalenessBand(engine.BandStale)
)

// StalenessOptions filters and pages Engine.Staleness.
type StalenessOptions struct {
	// Namespace, when set, keeps that namespace's tasks.
	Namespace string
	// MinBand keeps the tasks in this band or worse (BandWarning: warning and stale); "" keeps all.
	MinBand StalenessBand
	// AfterID continues after the task with this ID: pass the last report's TaskID.
	AfterID uuid.UUID
	// Limit bounds the reports returned; 0 means no bound.
	Limit int
}

// StaleTaskReport is one task not yet terminal, measured against the threshold that is closest
// to firing.
type StaleTaskReport struct {
	TaskID                   uuid.UUID
	Namespace, Name, Version string
	State                    TaskState
	// Age is the task's age; StateAge its time in State, on the store's clock.
	Age, StateAge time.Duration
	// Threshold names the threshold (as the lifecycle's key without _minutes, such as
	// "max_steps_in_process"); "" when none applies to the task in its state.
	Threshold string
	// Limit is the threshold's value; Measured is what is set against it (Age for max_duration,
	// StateAge otherwise); Ratio is Measured / Limit.
	Limit, Measured time.Duration
	Ratio           float64
	Band            StalenessBand
	// Action is what the detector does once the task is stale.
	Action StalenessAction
}

// Staleness reports, for each task not yet terminal, in task ID order, its age in its state
// against its threshold and its band. It reads the tasks in batches of StalenessConfig.BatchSize;
// with MinBand set, tasks too young to reach it are not read.
func (e *Engine) Staleness(ctx context.Context, o StalenessOptions) ([]StaleTaskReport, error) {
	vs, err := e.core.Staleness(ctx, engine.StalenessParams{Namespace: o.Namespace, MinBand: engine.Band(o.MinBand),
		AfterID: o.AfterID, Limit: o.Limit})
	if err != nil {
		return nil, fmt.Errorf("tasker: staleness: %w", err)
	}
	out := make([]StaleTaskReport, len(vs))
	for i, v := range vs {
		t := &v.Task
		out[i] = StaleTaskReport{TaskID: t.ID, Namespace: t.Namespace, Name: t.Name, Version: t.Version, State: t.State,
			Age: t.Age, StateAge: t.StateAge, Threshold: string(v.Threshold), Limit: v.Limit, Measured: v.Measured,
			Ratio: v.Ratio, Band: StalenessBand(v.Band), Action: StalenessAction(v.Action)}
	}
	return out, nil
}

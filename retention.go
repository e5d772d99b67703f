package tasker

import (
	"fmt"
	"time"

	"github.com/tasker-systems/tasker/internal/engine"
)

// Defaults and minimum of RetentionConfig.
const (
	// RetentionIntervalDefault is how often the elected engine purges ended tasks.
	RetentionIntervalDefault = time.Minute
	// RetentionIntervalMin is the shortest RetentionConfig.Interval.
	RetentionIntervalMin = 10 * time.Millisecond
	// RetentionBatchSizeDefault is how many tasks one purge transaction deletes, at most.
	RetentionBatchSizeDefault = 500
	// RetentionMaxBatchesDefault is how many batches one pass deletes, at most: a backlog (the
	// first pass after retention is turned on) is worked off over several passes.
	RetentionMaxBatchesDefault = 20
)

// RetentionConfig configures retention: the elected engine deletes tasks that ended more than
// Period ago, with every row that belongs to them (steps, edges, task and step transitions,
// dead-letter entries, queue messages left behind), in bounded batches, oldest first, so that
// tables do not grow without bound on a long run. The zero value keeps every task forever.
//
// Only complete, cancelled and resolved_manually tasks are purged. A task in error is kept until
// a person acts on it (an operator action moves it on), and so is a task with a pending
// dead-letter entry, until the entry is resolved. Tasks not yet terminal are never touched.
//
// A purged task is gone: GetTask answers ErrTaskNotFound, and its identity no longer deduplicates
// (a request with the same identity creates a new task), so choose a Period longer than the
// window in which duplicates may arrive. With Archive the rows are copied to archive_* tables of
// the same schema first (store/postgres; see the README's "Retention").
type RetentionConfig struct {
	// Period is how long a task is kept after it ended (its completed_at); 0 turns retention off.
	Period time.Duration
	// Interval is how often the elected engine runs a pass; 0 means RetentionIntervalDefault, and
	// the minimum is RetentionIntervalMin.
	Interval time.Duration
	// BatchSize bounds the tasks one transaction deletes; 0 means RetentionBatchSizeDefault.
	BatchSize int
	// MaxBatchesPerPass bounds the batches of one pass; 0 means RetentionMaxBatchesDefault.
	MaxBatchesPerPass int
	// Archive copies the rows to the archive tables (archive_tasks, archive_steps, ...) in the
	// transaction that deletes them, instead of dropping them. Pruning the archive is left to the
	// operator (archived_at is indexed).
	Archive bool
}

// check refuses negative values and an interval below its minimum.
func (r *RetentionConfig) check() error {
	for _, d := range []struct {
		field string
		v     time.Duration
		min   time.Duration
	}{{"Retention.Period", r.Period, 0}, {"Retention.Interval", r.Interval, RetentionIntervalMin}} {
		switch {
		case d.v < 0:
			return &ConfigError{Field: d.field, Value: d.v, Reason: "is negative (0 means the default)"}
		case d.v > 0 && d.v < d.min:
			return &ConfigError{Field: d.field, Value: d.v, Reason: fmt.Sprintf("is below the minimum of %v (RetentionIntervalMin; 0 means the default)", d.min)}
		}
	}
	for _, n := range []struct {
		field string
		v     int
	}{{"Retention.BatchSize", r.BatchSize}, {"Retention.MaxBatchesPerPass", r.MaxBatchesPerPass}} {
		if n.v < 0 {
			return &ConfigError{Field: n.field, Value: n.v, Reason: "is negative (0 means the default)"}
		}
	}
	return nil
}

// engine returns the engine's view of the configuration, with the defaults applied.
func (r RetentionConfig) engine() engine.RetentionConfig {
	out := engine.RetentionConfig{Period: r.Period, Interval: r.Interval, BatchSize: r.BatchSize, MaxBatches: r.MaxBatchesPerPass, Archive: r.Archive}
	if out.Interval <= 0 {
		out.Interval = RetentionIntervalDefault
	}
	if out.BatchSize <= 0 {
		out.BatchSize = RetentionBatchSizeDefault
	}
	if out.MaxBatches <= 0 {
		out.MaxBatches = RetentionMaxBatchesDefault
	}
	return out
}

package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/tasker-systems/tasker/store"
)

// RetentionConfig configures the retention service (the root package's tasker.RetentionConfig,
// with its defaults applied). A zero Period turns it off.
type RetentionConfig struct {
	// Period is how long a task is kept after it ended; 0 keeps every task.
	Period time.Duration
	// Interval paces the passes.
	Interval time.Duration
	// BatchSize bounds the tasks of one purge transaction; MaxBatches the batches of one pass, so
	// that a backlog is worked off over several passes rather than in one long one.
	BatchSize, MaxBatches int
	// Archive copies the rows to the archive tables before deleting them.
	Archive bool
}

// retentionServices is the retention service when it is on (a Period), else none.
func (w *workers) retentionServices() []service {
	if w.e.cfg.Retention.Period <= 0 {
		return nil
	}
	return []service{{name: "retention", interval: w.e.cfg.Retention.Interval, run: w.retain}}
}

// retain purges, oldest first, the tasks that ended more than a period ago (complete, cancelled
// or resolved_manually, without a pending dead-letter entry: see store.History.PurgeTasks), batch
// after batch, until a batch comes back short or the pass has done MaxBatches.
func (w *workers) retain(ctx context.Context) error {
	e := w.e
	rc := e.cfg.Retention
	p := store.PurgeTasksParams{OlderThan: rc.Period, Limit: max(rc.BatchSize, 1), Archive: rc.Archive}
	tasks, rows := 0, int64(0)
	defer func() {
		if tasks > 0 {
			e.log.Info("retention purged tasks", "tasks", tasks, "rows", rows, "archived", rc.Archive, "older_than", rc.Period)
		}
	}()
	for range max(rc.MaxBatches, 1) {
		res, err := e.store.PurgeTasks(ctx, p)
		if err != nil {
			if ctx.Err() == nil {
				e.log.Error(err, "retention: purge tasks")
			}
			return fmt.Errorf("retention: purge tasks: %w", err)
		}
		tasks += len(res.Tasks)
		for _, n := range res.Rows {
			rows += n
		}
		if len(res.Tasks) < p.Limit {
			return nil
		}
	}
	return nil
}

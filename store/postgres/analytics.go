package postgres

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/tasker/store"
)

// windowSQL keeps the tasks of the window: $1 and $2 bound created_at (NULL: open), $3 the
// namespace ("" for any). tasks_created_idx serves it.
const windowSQL = `($1::timestamptz IS NULL OR t.created_at >= $1) AND ($2::timestamptz IS NULL OR t.created_at < $2)
	   AND ($3 = '' OR t.namespace = $3)`

// percentilesSQL are the median and 95th percentile of a duration in microseconds, as float8,
// over the rows that pass filter (0 when none does).
func percentilesSQL(duration, filter string) string {
	return `coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY (extract(epoch FROM ` + duration + `) * 1e6)::float8) FILTER (WHERE ` + filter + `), 0)::float8,
		coalesce(percentile_cont(0.95) WITHIN GROUP (ORDER BY (extract(epoch FROM ` + duration + `) * 1e6)::float8) FILTER (WHERE ` + filter + `), 0)::float8`
}

var (
	templateAnalyticsSQL = `
	SELECT t.namespace, t.name, t.version, count(*),
	       count(*) FILTER (WHERE t.state = 'complete'), count(*) FILTER (WHERE t.state = 'error'),
	       count(*) FILTER (WHERE t.state = 'cancelled'),
	       ` + percentilesSQL("t.completed_at - t.created_at", "t.state = 'complete' AND t.completed_at IS NOT NULL") + `
	  FROM {s}.tasks t
	 WHERE ` + windowSQL + `
	 GROUP BY t.namespace, t.name, t.version
	 ORDER BY t.namespace COLLATE "C", t.name COLLATE "C", t.version COLLATE "C"`

	stepAnalyticsSQL = `
	SELECT t.namespace, t.name, st.template_step, count(*),
	       count(*) FILTER (WHERE st.state = 'complete'), count(*) FILTER (WHERE st.state = 'error'),
	       coalesce(sum(st.attempts), 0), coalesce(sum(greatest(st.attempts - 1, 0)), 0),
	       ` + percentilesSQL("st.completed_at - st.started_at",
		"st.state = 'complete' AND st.started_at IS NOT NULL AND st.completed_at >= st.started_at") + `
	  FROM {s}.tasks t
	  JOIN {s}.steps st ON st.task_id = t.task_id
	 WHERE ` + windowSQL + `
	 GROUP BY t.namespace, t.name, st.template_step
	 ORDER BY t.namespace COLLATE "C", t.name COLLATE "C", st.template_step COLLATE "C"`
)

// Analytics returns the statistics of the tasks created in the window, with the percentiles
// computed by PostgreSQL (percentile_cont), in two statements of one snapshot.
func (s *Store) Analytics(ctx context.Context, p store.AnalyticsParams) (*store.Analytics, error) {
	args := []any{timeOrNil(p.Since), timeOrNil(p.Until), p.Namespace}
	out := &store.Analytics{}
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, s.q(templateAnalyticsSQL), args...)
		if err != nil {
			return err
		}
		out.Templates, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.TemplateAnalytics, error) {
			var a store.TemplateAnalytics
			var p50, p95 float64
			err := r.Scan(&a.Namespace, &a.Name, &a.Version, &a.Tasks, &a.Completed, &a.Failed, &a.Cancelled, &p50, &p95)
			a.DurationP50, a.DurationP95 = micros(p50), micros(p95)
			return a, err
		})
		if err != nil {
			return err
		}
		rows, err = tx.Query(ctx, s.q(stepAnalyticsSQL), args...)
		if err != nil {
			return err
		}
		out.Steps, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.StepAnalytics, error) {
			var a store.StepAnalytics
			var p50, p95 float64
			err := r.Scan(&a.Namespace, &a.TaskName, &a.Step, &a.Steps, &a.Completed, &a.Failed, &a.Attempts, &a.Retries, &p50, &p95)
			a.DurationP50, a.DurationP95 = micros(p50), micros(p95)
			return a, err
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("analytics: %w", err)
	}
	return out, nil
}

func timeOrNil(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// micros rounds a duration in microseconds to a time.Duration of whole microseconds, the
// database's precision.
func micros(us float64) time.Duration {
	return time.Duration(math.Round(us)) * time.Microsecond
}

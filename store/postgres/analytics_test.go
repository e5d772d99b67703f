package postgres_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/store"
	"github.com/tasker-systems/tasker/store/postgres"
)

// TestAnalyticsPercentiles sets four tasks' durations to 10, 20, 30 and 40 ms and their steps' to
// 5, 10, 15 and 20 ms in SQL, and checks percentile_cont's figures (the memory store's
// TestPercentileIsPercentileCont expects the same).
func TestAnalyticsPercentiles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.New(t)
	seedEnded(t, db.Pool, db.Schema, "one", 4)
	_, err := db.Pool.Exec(ctx, strings.ReplaceAll(`
		WITH k AS (SELECT task_id, row_number() OVER (ORDER BY task_id) AS k FROM {s}.tasks),
		     t AS (UPDATE {s}.tasks t SET created_at = '2026-01-01T00:00:00Z',
		                  completed_at = timestamptz '2026-01-01T00:00:00Z' + k.k * interval '10 ms'
		             FROM k WHERE t.task_id = k.task_id)
		UPDATE {s}.steps s SET started_at = '2026-01-01T00:00:00Z',
		       completed_at = timestamptz '2026-01-01T00:00:00Z' + k.k * interval '5 ms', attempts = k.k
		  FROM k WHERE s.task_id = k.task_id`, "{s}", pgx.Identifier{db.Schema}.Sanitize()))
	require.NoError(t, err)
	s := postgres.New(db.Pool, postgres.WithSchema(db.Schema))
	day := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a, err := s.Analytics(ctx, store.AnalyticsParams{Since: day, Until: day.Add(time.Millisecond), Namespace: "bench"})
	require.NoError(t, err)
	require.Equal(t, []store.TemplateAnalytics{{Namespace: "bench", Name: "one", Version: "1", Tasks: 4, Completed: 4,
		DurationP50: 25 * time.Millisecond, DurationP95: 38500 * time.Microsecond}}, a.Templates)
	require.Equal(t, []store.StepAnalytics{{Namespace: "bench", TaskName: "one", Step: "only", Steps: 4, Completed: 4,
		Attempts: 1 + 2 + 3 + 4, Retries: 0 + 1 + 2 + 3, DurationP50: 12500 * time.Microsecond, DurationP95: 19250 * time.Microsecond}}, a.Steps)

	none, err := s.Analytics(ctx, store.AnalyticsParams{Since: day.Add(time.Millisecond)})
	require.NoError(t, err)
	require.Empty(t, none.Templates)
}

package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/store"
	"github.com/tasker-systems/tasker/store/postgres"
)

// TestArchiveTablesMatchTheirSources: each archive table has its source table's columns, in
// order, with the same types, and then archived_at; and every table PurgeTasks clears but the
// queue's has one. A migration that adds a column to a source table and not to its archive fails
// here, before an archiving purge fails in production.
func TestArchiveTablesMatchTheirSources(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	columns := func(table string) []string {
		rows, err := db.Pool.Query(context.Background(), `
			SELECT column_name || ' ' || data_type || ' ' || udt_name || ' ' || is_nullable
			  FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position`, db.Schema, table)
		require.NoError(t, err)
		cols, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		return cols
	}
	rows, err := db.Pool.Query(context.Background(), `SELECT table_name FROM information_schema.tables
		WHERE table_schema = $1 AND table_name LIKE 'archive\_%' ORDER BY 1`, db.Schema)
	require.NoError(t, err)
	archives, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	var want []string
	for _, name := range store.PurgeTableNames {
		if name != "queue_messages" {
			want = append(want, "archive_"+name)
		}
	}
	require.ElementsMatch(t, want, archives)
	for _, archive := range archives {
		source := strings.TrimPrefix(archive, "archive_")
		src := columns(source)
		require.NotEmpty(t, src, source)
		// In any order: a column a later migration adds to both tables follows archived_at in the archive.
		require.ElementsMatch(t, append(src, "archived_at timestamp with time zone timestamptz NO"), columns(archive), "%s against %s", archive, source)
	}
}

// seedEnded inserts n tasks of one shape ("one": a step; "diamond": start, left, right, join)
// that completed an hour ago, with their steps, edges and transitions, in SQL: fast enough to
// seed thousands for a benchmark.
func seedEnded(tb testing.TB, pool *pgxpool.Pool, schema, shape string, n int) {
	tb.Helper()
	names := map[string][]string{"one": {"only"}, "diamond": {"start", "left", "right", "join"}}[shape]
	q := func(sql string) string { return strings.ReplaceAll(sql, "{s}", pgx.Identifier{schema}.Sanitize()) }
	ctx := context.Background()
	type stmt struct {
		sql  string
		args []any
	}
	var stmts []stmt
	stmts = append(stmts, stmt{q(`INSERT INTO {s}.templates (namespace, name, version, definition, checksum)
		VALUES ('bench', $1, '1', '{}', 'c') ON CONFLICT DO NOTHING`), []any{shape}})
	stmts = append(stmts, stmt{q(`CREATE TEMP TABLE seeded ON COMMIT DROP AS
		SELECT gen_random_uuid() AS task_id FROM generate_series(1, $1)`), []any{n}})
	stmts = append(stmts, stmt{q(`INSERT INTO {s}.tasks (task_id, namespace, name, version, state, identity_hash, steps_total,
		       steps_unfinished, created_at, completed_at, transition_seq)
		SELECT task_id, 'bench', $1, '1', 'complete', task_id::text, $2, 0, now() - interval '2 hours', now() - interval '1 hour', 4
		  FROM seeded`), []any{shape, len(names)}})
	stmts = append(stmts, stmt{q(`INSERT INTO {s}.task_transitions (task_id, from_state, to_state, event, sort_key)
		SELECT s.task_id, v.f, v.tt, 'seed', v.k FROM seeded s,
		       (VALUES (1, NULL::text, 'pending'), (2, 'pending', 'initializing'), (3, 'initializing', 'steps_in_process'),
		               (4, 'steps_in_process', 'complete')) v(k, f, tt)`), []any{}})
	stmts = append(stmts, stmt{q(`INSERT INTO {s}.steps (step_id, task_id, name, template_step, handler, state, attempts,
		       parents_total, started_at, completed_at, transition_seq)
		SELECT gen_random_uuid(), s.task_id, n, n, 'h', 'complete', 1, CASE WHEN n = 'join' THEN 2 WHEN n IN ('left', 'right') THEN 1 ELSE 0 END,
		       now() - interval '2 hours', now() - interval '1 hour', 3
		  FROM seeded s, unnest($1::text[]) n`), []any{names}})
	stmts = append(stmts, stmt{q(`INSERT INTO {s}.edges (task_id, from_step_id, to_step_id)
		SELECT a.task_id, a.step_id, b.step_id
		  FROM seeded s JOIN {s}.steps a ON a.task_id = s.task_id JOIN {s}.steps b ON b.task_id = s.task_id
		  JOIN (VALUES ('start', 'left'), ('start', 'right'), ('left', 'join'), ('right', 'join')) e(f, tt)
		    ON a.name = e.f AND b.name = e.tt`), []any{}})
	stmts = append(stmts, stmt{q(`INSERT INTO {s}.step_transitions (step_id, task_id, from_state, to_state, event, sort_key)
		SELECT st.step_id, st.task_id, v.f, v.tt, 'seed', v.k
		  FROM seeded s JOIN {s}.steps st ON st.task_id = s.task_id,
		       (VALUES (1, NULL::text, 'enqueued'), (2, 'enqueued', 'in_progress'), (3, 'in_progress', 'complete')) v(k, f, tt)`), []any{}})
	require.NoError(tb, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		for _, st := range stmts {
			if _, err := tx.Exec(ctx, st.sql, st.args...); err != nil {
				return err
			}
		}
		return nil
	}))
}

// TestPurgeSeededTasks purges seeded tasks in batches and checks the counts per table.
func TestPurgeSeededTasks(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	seedEnded(t, db.Pool, db.Schema, "one", 30)
	seedEnded(t, db.Pool, db.Schema, "diamond", 20)
	s := postgres.New(db.Pool, postgres.WithSchema(db.Schema))
	total := map[string]int64{}
	tasks := 0
	for {
		res, err := s.PurgeTasks(context.Background(), store.PurgeTasksParams{OlderThan: time.Minute, Limit: 16, Archive: true})
		require.NoError(t, err)
		for k, v := range res.Rows {
			total[k] += v
		}
		tasks += len(res.Tasks)
		if len(res.Tasks) < 16 {
			break
		}
	}
	require.Equal(t, 50, tasks)
	require.Equal(t, map[string]int64{"tasks": 50, "steps": 30 + 80, "edges": 80, "task_transitions": 200,
		"step_transitions": 3 * 110, "dead_letters": 0, "queue_messages": 0}, total)
	var left, archived int
	require.NoError(t, db.Pool.QueryRow(context.Background(), fmt.Sprintf(`SELECT (SELECT count(*) FROM %[1]s.steps),
		(SELECT count(*) FROM %[1]s.archive_steps)`, db.Schema)).Scan(&left, &archived))
	require.Equal(t, [2]int{0, 110}, [2]int{left, archived})
}

// BenchmarkPurgeTasks measures what deleting costs: 2,000 ended tasks (1,000 of one step, 1,000
// diamonds of four steps with four edges; 34,000 rows with their transitions) purged in batches
// of 500, with and without the archive. It reports the time per task and the rows removed per
// second. Run it with -benchtime=1x: each iteration seeds its own tasks (not timed).
func BenchmarkPurgeTasks(b *testing.B) {
	for _, archive := range []bool{false, true} {
		b.Run(fmt.Sprintf("archive=%v", archive), func(b *testing.B) {
			db := testdb.New(b)
			s := postgres.New(db.Pool, postgres.WithSchema(db.Schema))
			ctx := context.Background()
			var tasks, rows int64
			var took time.Duration
			for range b.N {
				b.StopTimer()
				seedEnded(b, db.Pool, db.Schema, "one", 1000)
				seedEnded(b, db.Pool, db.Schema, "diamond", 1000)
				_, err := db.Pool.Exec(ctx, `ANALYZE`)
				require.NoError(b, err)
				b.StartTimer()
				start := time.Now()
				for {
					res, err := s.PurgeTasks(ctx, store.PurgeTasksParams{OlderThan: time.Minute, Limit: 500, Archive: archive})
					require.NoError(b, err)
					tasks += int64(len(res.Tasks))
					for _, n := range res.Rows {
						rows += n
					}
					if len(res.Tasks) < 500 {
						break
					}
				}
				took += time.Since(start)
			}
			b.ReportMetric(float64(took.Nanoseconds())/float64(tasks), "ns/task")
			b.ReportMetric(float64(rows)/took.Seconds(), "rows/s")
			b.ReportMetric(float64(rows)/float64(tasks), "rows/task")
		})
	}
}

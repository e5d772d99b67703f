package tasker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/store"
	"github.com/tasker-systems/tasker/store/memory"
)

const retentionYAML = `
name: diamond
namespace_name: keep
version: 1.0.0
steps:
  - {name: start, handler: {callable: ok}}
  - {name: left, handler: {callable: flaky}, dependencies: [start], retry: {max_attempts: 3, backoff: none}}
  - {name: right, handler: {callable: ok}, dependencies: [start]}
  - {name: join, handler: {callable: ok}, dependencies: [left, right]}
---
name: single
namespace_name: keep
version: 1.0.0
steps:
  - {name: only, handler: {callable: ok}}
---
name: hold
namespace_name: keep
version: 1.0.0
steps:
  - {name: held, handler: {callable: hold}}
---
name: broken
namespace_name: keep
version: 1.0.0
steps:
  - {name: fails, handler: {callable: fails}}
---
name: later
namespace_name: keep
version: 1.0.0
steps:
  - {name: waits, handler: {callable: later}}
`

// tablesWithoutTasks are the schema's tables whose rows belong to no task: they have neither a
// task_id nor a step_id column, and retention leaves them alone. queue_messages names its task in
// its JSON payload and is counted by it.
var tablesWithoutTasks = []string{"leaders", "queue_messages", "schema_migrations", "templates"}

// taskTables reads the schema's tables from the catalog, each with the column that names a task
// (task_id) or else a step (a column ending in step_id), archive tables aside. It fails when a
// table names neither and is not known to hold no task's rows, so that a new table cannot be
// forgotten by this test, and when a table that names a task is not one that PurgeTasks clears.
func taskTables(t *testing.T, db *testdb.DB, prefix string) map[string]string {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(), `
		SELECT c.table_name, coalesce(
		         max(c.column_name) FILTER (WHERE c.column_name = 'task_id'),
		         min(c.column_name) FILTER (WHERE c.column_name LIKE '%step_id'), '')
		  FROM information_schema.columns c
		  JOIN information_schema.tables tb ON tb.table_schema = c.table_schema AND tb.table_name = c.table_name
		 WHERE c.table_schema = $1 AND tb.table_type = 'BASE TABLE'
		 GROUP BY c.table_name`, db.Schema)
	require.NoError(t, err)
	out := map[string]string{}
	for rows.Next() {
		var table, col string
		require.NoError(t, rows.Scan(&table, &col))
		archive := strings.HasPrefix(table, "archive_")
		switch {
		case prefix == "" && archive, prefix != "" && !archive:
			continue
		case col == "" && prefix == "":
			require.Contains(t, tablesWithoutTasks, table, "table %s holds rows of no task? Retention must purge it or this list name it", table)
			if table == "queue_messages" {
				out[table] = "payload"
			}
			continue
		case col == "":
			continue
		}
		out[table] = col
		if prefix == "" {
			require.Contains(t, store.PurgeTableNames, table, "table %s has a %s column: PurgeTasks must clear it", table, col)
		}
	}
	require.NoError(t, rows.Err())
	return out
}

// countRows counts, in every table of taskTables (with the prefix: the archive tables), the rows
// of each task, through the task's ID or its steps' IDs.
func countRows(t *testing.T, db *testdb.DB, tables map[string]string, tasks map[uuid.UUID][]uuid.UUID, prefix string) map[uuid.UUID]map[string]int64 {
	t.Helper()
	ctx := context.Background()
	out := map[uuid.UUID]map[string]int64{}
	for id, steps := range tasks {
		out[id] = map[string]int64{}
		for table, col := range tables {
			var n int64
			q := pgx.Identifier{db.Schema, table}.Sanitize()
			var err error
			switch {
			case col == "payload":
				err = db.Pool.QueryRow(ctx, `SELECT count(*) FROM `+q+` WHERE payload->>'task_id' = $1`, id.String()).Scan(&n)
			case col == "task_id":
				err = db.Pool.QueryRow(ctx, `SELECT count(*) FROM `+q+` WHERE task_id = $1`, id).Scan(&n)
			default:
				err = db.Pool.QueryRow(ctx, `SELECT count(*) FROM `+q+` WHERE `+pgx.Identifier{col}.Sanitize()+` = ANY($1)`, steps).Scan(&n)
			}
			require.NoError(t, err, table)
			out[id][strings.TrimPrefix(table, prefix)] = n
		}
	}
	return out
}

// TestRetentionPurgesEndedTasksFromEveryTable is the retention test of issue 13: 20 tasks end
// (diamonds with a retried step, one-step tasks, a cancelled task) beside tasks that must stay
// (three running, blocked on a channel; one blocked by a failure; one waiting for a retry an
// hour away). Once the period has passed, the elected engine's retention deletes the ended
// tasks' rows from every table of the schema (enumerated from the catalog and counted), and the
// others' counts do not change. With Archive, the same rows are found in the archive tables.
func TestRetentionPurgesEndedTasksFromEveryTable(t *testing.T) {
	t.Parallel()
	for _, archive := range []bool{false, true} {
		t.Run(fmt.Sprintf("archive=%v", archive), func(t *testing.T) {
			t.Parallel()
			testRetentionPurge(t, archive)
		})
	}
}

func testRetentionPurge(t *testing.T, archive bool) {
	ctx := context.Background()
	// The workers' engine takes no part in maintenance; a second one, started once every count is
	// taken, leads and runs retention.
	b := setup(t, func(c *tasker.Config) { c.DisableMaintenance = true })
	for _, doc := range strings.Split(retentionYAML, "---") {
		b.register(t, doc)
	}
	release := make(chan struct{})
	held := make(chan struct{}, 10)
	b.engine.HandleFunc("ok", func(context.Context, *tasker.Step) (any, error) { return map[string]int{"ok": 1}, nil })
	b.engine.HandleFunc("flaky", func(_ context.Context, s *tasker.Step) (any, error) {
		if s.Attempt < 3 {
			return nil, errors.New("not yet")
		}
		return "fine", nil
	})
	b.engine.HandleFunc("hold", func(ctx context.Context, _ *tasker.Step) (any, error) {
		held <- struct{}{}
		select {
		case <-release:
			return "released", nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	b.engine.HandleFunc("fails", func(context.Context, *tasker.Step) (any, error) { return nil, tasker.Permanent(errors.New("broken")) })
	b.engine.HandleFunc("later", func(context.Context, *tasker.Step) (any, error) {
		return nil, tasker.RetryAfter(time.Hour, errors.New("come back later"))
	})
	b.start(t)
	t.Cleanup(func() { close(release) }) // before the engine stops (cleanups run last first)

	create := func(name string, i int) *tasker.Task { return b.create(t, "keep", name, map[string]int{"i": i}) }
	steps := func(task *tasker.Task) []uuid.UUID {
		var out []uuid.UUID
		for _, s := range task.Steps {
			out = append(out, s.ID)
		}
		return out
	}
	ended := map[uuid.UUID][]uuid.UUID{}
	for i := range 10 {
		task := b.wait(t, create("diamond", i).ID)
		require.Equal(t, tasker.TaskComplete, task.State)
		ended[task.ID] = steps(task)
	}
	// One of them had a dead-letter entry, resolved: it goes with its task.
	for id := range ended {
		entry, err := b.st.AddDeadLetter(ctx, store.AddDeadLetterParams{TaskID: id,
			Entry: store.NewDeadLetter{ID: uuid.Must(uuid.NewV7()), Reason: store.ReasonManual}})
		require.NoError(t, err)
		_, err = b.st.ResolveDeadLetter(ctx, store.ResolveDeadLetterParams{ID: entry.ID, Status: "manually_resolved", ResolvedBy: "test"})
		require.NoError(t, err)
		break
	}
	for i := range 9 {
		task := b.wait(t, create("single", i).ID)
		require.Equal(t, tasker.TaskComplete, task.State)
		ended[task.ID] = steps(task)
	}
	cancelled := create("hold", 100)
	<-held
	require.NoError(t, b.engine.CancelTask(ctx, cancelled.ID, "changed my mind"))
	task := b.wait(t, cancelled.ID)
	require.Equal(t, tasker.TaskCancelled, task.State)
	ended[task.ID] = steps(task)
	require.Len(t, ended, 20)

	kept := map[uuid.UUID][]uuid.UUID{}
	for i := range 3 {
		kept[create("hold", i).ID] = nil
		<-held
	}
	blocked := b.wait(t, create("broken", 0).ID)
	require.Equal(t, tasker.TaskBlockedByFailures, blocked.State)
	kept[blocked.ID] = nil
	later := create("later", 0)
	require.Eventually(t, func() bool {
		task, err := b.engine.GetTask(ctx, later.ID)
		require.NoError(t, err)
		return task.State == tasker.TaskWaitingForRetry
	}, 10*time.Second, 10*time.Millisecond)
	kept[later.ID] = nil
	for id := range kept {
		task, err := b.engine.GetTask(ctx, id)
		require.NoError(t, err)
		require.False(t, task.State.Terminal())
		kept[id] = steps(task)
	}

	tables := taskTables(t, b.db, "")
	before := countRows(t, b.db, tables, ended, "")
	keptBefore := countRows(t, b.db, tables, kept, "")
	total := map[string]int64{}
	for _, rows := range before {
		for table, n := range rows {
			total[table] += n
		}
	}
	require.Equal(t, int64(20), total["tasks"])
	require.Equal(t, int64(10*4+9+1), total["steps"])
	require.Equal(t, int64(10*4), total["edges"])
	require.Equal(t, int64(1), total["dead_letters"])
	require.Greater(t, total["step_transitions"], int64(10*4+9+1)*2)
	require.Greater(t, total["task_transitions"], int64(20*2))
	t.Logf("rows of the 20 ended tasks: %v", total)

	const period = time.Second
	leader := b.sibling(t, func(c *tasker.Config) {
		c.DisableMaintenance = false
		c.Namespaces = []string{"idle"} // it runs maintenance, not these tasks' steps
		c.Retention = tasker.RetentionConfig{Period: period, Interval: 100 * time.Millisecond, BatchSize: 7, MaxBatchesPerPass: 2, Archive: archive}
	})
	leader.start(t)
	require.Eventually(t, func() bool {
		for id := range ended {
			if _, err := b.engine.GetTask(ctx, id); !errors.Is(err, tasker.ErrTaskNotFound) {
				require.NoError(t, err)
				return false
			}
		}
		return true
	}, 30*time.Second, 50*time.Millisecond, "the ended tasks are purged once the period has passed")

	for id, rows := range countRows(t, b.db, tables, ended, "") {
		for table, n := range rows {
			require.Zero(t, n, "task %s keeps %d rows in %s", id, n, table)
		}
	}
	require.Equal(t, keptBefore, countRows(t, b.db, tables, kept, ""), "the tasks that did not end are untouched")
	for id := range kept {
		task, err := b.engine.GetTask(ctx, id)
		require.NoError(t, err)
		require.False(t, task.State.Terminal())
	}

	archived := countRows(t, b.db, taskTables(t, b.db, "archive_"), ended, "archive_")
	for id, rows := range before {
		want := map[string]int64{}
		if archive {
			for table, n := range rows {
				if table != "queue_messages" { // the queue's leftovers are dropped, not archived
					want[table] = n
				}
			}
		} else {
			for table := range archived[id] {
				want[table] = 0
			}
		}
		require.Equal(t, want, archived[id], "task %s in the archive", id)
	}
}

// TestRetentionConfigIsChecked: NewEngine refuses negative retention values and an interval below
// its minimum, naming the field.
func TestRetentionConfigIsChecked(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		field string
		r     tasker.RetentionConfig
	}{
		{"Retention.Period", tasker.RetentionConfig{Period: -time.Second}},
		{"Retention.Interval", tasker.RetentionConfig{Period: time.Hour, Interval: time.Millisecond}},
		{"Retention.BatchSize", tasker.RetentionConfig{Period: time.Hour, BatchSize: -1}},
		{"Retention.MaxBatchesPerPass", tasker.RetentionConfig{Period: time.Hour, MaxBatchesPerPass: -1}},
	} {
		_, err := tasker.NewEngine(tasker.Config{Store: memory.New(), Retention: c.r})
		require.ErrorIs(t, err, tasker.ErrInvalidConfig, c.field)
		var ce *tasker.ConfigError
		require.True(t, errors.As(err, &ce))
		require.Equal(t, c.field, ce.Field)
	}
	_, err := tasker.NewEngine(tasker.Config{Store: memory.New(), Retention: tasker.RetentionConfig{Period: time.Hour}})
	require.NoError(t, err, "the defaults fill the rest")
}

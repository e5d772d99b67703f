package migrations_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/migrations"
)

// TestTransitionSeqBackfill applies migration 9 to a schema at version 8 that holds a task and a
// step with transitions, live and archived: each row's transition_seq becomes the sort key of its
// latest transition, and the archive keeps its archived_at.
func TestTransitionSeqBackfill(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.New(t, testdb.WithoutMigrations())
	all := migrateTo(t, db, 8) // version 8, as Migrate records it, so that Migrate applies only 9 on
	require.Equal(t, "transition_seq", all[8].Name)
	s := pgx.Identifier{db.Schema}.Sanitize()
	archived := time.Now().Add(-24 * time.Hour).UTC().Truncate(time.Microsecond)
	for _, sql := range []string{
		`INSERT INTO ` + s + `.templates (namespace, name, version, definition, checksum) VALUES ('ns', 't', '1', '{}', 'x')`,
		`INSERT INTO ` + s + `.tasks (task_id, namespace, name, version, state, identity_hash)
		 VALUES ('00000000-0000-0000-0000-000000000001', 'ns', 't', '1', 'steps_in_process', 'h'),
		        ('00000000-0000-0000-0000-000000000002', 'ns', 't', '1', 'pending', 'h2')`,
		`INSERT INTO ` + s + `.task_transitions (task_id, from_state, to_state, event, sort_key, most_recent) VALUES
		 ('00000000-0000-0000-0000-000000000001', NULL, 'pending', 'create', 1, false),
		 ('00000000-0000-0000-0000-000000000001', 'pending', 'initializing', 'start', 2, false),
		 ('00000000-0000-0000-0000-000000000001', 'initializing', 'steps_in_process', 'enqueue', 3, true),
		 ('00000000-0000-0000-0000-000000000002', NULL, 'pending', 'create', 1, true)`,
		`INSERT INTO ` + s + `.steps (step_id, task_id, name, template_step, handler, state)
		 VALUES ('00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-000000000001', 'a', 'a', 'h', 'in_progress')`,
		`INSERT INTO ` + s + `.step_transitions (step_id, task_id, from_state, to_state, event, sort_key, most_recent) VALUES
		 ('00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-000000000001', NULL, 'pending', 'create', 1, false),
		 ('00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-000000000001', 'pending', 'enqueued', 'enqueue', 2, false),
		 ('00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-000000000001', 'enqueued', 'in_progress', 'start', 3, true)`,
		`INSERT INTO ` + s + `.archive_tasks (task_id, namespace, name, version, state, identity_hash, archived_at)
		 SELECT task_id, namespace, name, version, state, identity_hash, '` + archived.Format(time.RFC3339Nano) + `' FROM ` + s + `.tasks
		  WHERE task_id = '00000000-0000-0000-0000-000000000001'`,
		`INSERT INTO ` + s + `.archive_task_transitions SELECT *, now() FROM ` + s + `.task_transitions WHERE task_id = '00000000-0000-0000-0000-000000000001'`,
		`INSERT INTO ` + s + `.archive_steps SELECT *, now() FROM ` + s + `.steps`,
		`INSERT INTO ` + s + `.archive_step_transitions SELECT *, now() FROM ` + s + `.step_transitions`,
	} {
		_, err := db.Pool.Exec(ctx, sql)
		require.NoError(t, err, sql)
	}
	require.NoError(t, migrations.Migrate(ctx, db.Pool, migrations.WithSchema(db.Schema)))

	seqs := func(sql string) map[string]int32 {
		rows, err := db.Pool.Query(ctx, sql)
		require.NoError(t, err)
		out := map[string]int32{}
		for rows.Next() {
			var id string
			var seq int32
			require.NoError(t, rows.Scan(&id, &seq))
			out[id] = seq
		}
		require.NoError(t, rows.Err())
		return out
	}
	require.Equal(t, map[string]int32{"00000000-0000-0000-0000-000000000001": 3, "00000000-0000-0000-0000-000000000002": 1},
		seqs(`SELECT task_id::text, transition_seq FROM `+s+`.tasks`))
	require.Equal(t, map[string]int32{"00000000-0000-0000-0000-0000000000a1": 3}, seqs(`SELECT step_id::text, transition_seq FROM `+s+`.steps`))
	require.Equal(t, map[string]int32{"00000000-0000-0000-0000-000000000001": 3}, seqs(`SELECT task_id::text, transition_seq FROM `+s+`.archive_tasks`))
	require.Equal(t, map[string]int32{"00000000-0000-0000-0000-0000000000a1": 3}, seqs(`SELECT step_id::text, transition_seq FROM `+s+`.archive_steps`))
	var got time.Time
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT archived_at FROM `+s+`.archive_tasks`).Scan(&got))
	require.True(t, archived.Equal(got), "archived_at %v kept, got %v", archived, got)

	// The migrated schema is the one a fresh Migrate builds.
	ref := testdb.New(t, testdb.WithoutMigrations())
	require.NoError(t, migrations.Migrate(ctx, ref.Pool, migrations.WithSchema(ref.Schema)))
	require.Equal(t, schemaShape(t, ref), schemaShape(t, db))
}

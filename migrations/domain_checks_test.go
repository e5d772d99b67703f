package migrations_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/migrations"
)

// TestDomainChecks applies migration 12 to a schema at version 11 that holds a task, a step and
// their transitions: no table is rewritten (each keeps its storage), the rows stay, and every rule
// the table checks held is still enforced, now by the domains (and the two cross-column checks).
func TestDomainChecks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.New(t, testdb.WithoutMigrations())
	all := migrateTo(t, db, 11)
	require.Equal(t, "domain_checks", all[11].Name)
	s := pgx.Identifier{db.Schema}.Sanitize()
	exec := func(sql string, args ...any) error {
		_, err := db.Pool.Exec(ctx, sql, args...)
		return err
	}
	for _, sql := range []string{
		`INSERT INTO ` + s + `.templates (namespace, name, version, definition, checksum) VALUES ('ns', 't', '1', '{}', 'x')`,
		`INSERT INTO ` + s + `.tasks (task_id, namespace, name, version, state, identity_hash, steps_total, steps_unfinished, steps_active)
		 VALUES ('00000000-0000-0000-0000-000000000001', 'ns', 't', '1', 'steps_in_process', 'h', 1, 1, 1)`,
		`INSERT INTO ` + s + `.task_transitions (task_id, from_state, to_state, event, sort_key) VALUES
		 ('00000000-0000-0000-0000-000000000001', NULL, 'pending', 'create', 1)`,
		`INSERT INTO ` + s + `.steps (step_id, task_id, name, template_step, handler, state, failure_strategy)
		 VALUES ('00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-000000000001', 'a', 'a', 'h', 'in_progress', 'isolate')`,
		`INSERT INTO ` + s + `.step_transitions (step_id, task_id, from_state, to_state, event, sort_key) VALUES
		 ('00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-000000000001', 'enqueued', 'in_progress', 'start', 1)`,
	} {
		require.NoError(t, exec(sql), sql)
	}
	storage := func() map[string]uint32 {
		rows, err := db.Pool.Query(ctx, `SELECT relname::text, relfilenode::int8 FROM pg_class
			WHERE relnamespace = $1::regnamespace AND relname IN ('tasks', 'steps', 'task_transitions', 'step_transitions')`, db.Schema)
		require.NoError(t, err)
		out := map[string]uint32{}
		for rows.Next() {
			var name string
			var node int64
			require.NoError(t, rows.Scan(&name, &node))
			out[name] = uint32(node)
		}
		require.NoError(t, rows.Err())
		require.Len(t, out, 4)
		return out
	}
	before := storage()
	require.NoError(t, migrations.Migrate(ctx, db.Pool, migrations.WithSchema(db.Schema)))
	require.Equal(t, before, storage(), "migration 12 rewrote a table")

	var state, strategy string
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT t.state, st.failure_strategy FROM `+s+`.tasks t JOIN `+s+`.steps st USING (task_id)`).Scan(&state, &strategy))
	require.Equal(t, "steps_in_process", state)
	require.Equal(t, "isolate", strategy)

	task := `'00000000-0000-0000-0000-000000000001'`
	step := `'00000000-0000-0000-0000-0000000000a1'`
	for _, c := range []struct {
		sql, violates string
		args          []any
	}{
		{`UPDATE ` + s + `.tasks SET state = 'bogus'`, "task_state_check", nil},
		{`UPDATE ` + s + `.tasks SET state = $1`, "task_state_check", []any{"bogus"}}, // a parameter, as the store sends
		{`UPDATE ` + s + `.tasks SET steps_active = steps_active - 2`, "counter_check", nil},
		{`UPDATE ` + s + `.tasks SET steps_isolated = 1`, "tasks_isolated_check", nil},
		{`UPDATE ` + s + `.steps SET state = 'done'`, "step_state_check", nil},
		{`UPDATE ` + s + `.steps SET step_type = 'fancy'`, "step_type_check", nil},
		{`UPDATE ` + s + `.steps SET backoff = 'random'`, "step_backoff_check", nil},
		{`UPDATE ` + s + `.steps SET failure_strategy = 'ignore'`, "failure_strategy_check", nil},
		{`UPDATE ` + s + `.steps SET attempts = -1`, "counter_check", nil},
		{`UPDATE ` + s + `.steps SET max_attempts = 0`, "attempt_limit_check", nil},
		{`UPDATE ` + s + `.steps SET parents_unfinished = 1`, "steps_parents_check", nil},
		{`INSERT INTO ` + s + `.task_transitions (task_id, from_state, to_state, event, sort_key) VALUES (` + task + `, 'pending', 'nowhere', 'x', 2)`, "task_state_check", nil},
		{`INSERT INTO ` + s + `.task_transitions (task_id, from_state, to_state, event, sort_key) VALUES (` + task + `, 'nowhere', 'pending', 'x', 2)`, "task_state_check", nil},
		{`INSERT INTO ` + s + `.step_transitions (step_id, task_id, from_state, to_state, event, sort_key) VALUES (` + step + `, ` + task + `, 'in_progress', 'gone', 'x', 2)`, "step_state_check", nil},
		{`INSERT INTO ` + s + `.step_transitions (step_id, task_id, from_state, to_state, event, sort_key) VALUES (` + step + `, ` + task + `, 'in_progress', 'in_progress', 'x', 2)`, "step_transitions_changes_state", nil},
	} {
		require.ErrorContains(t, exec(c.sql, c.args...), c.violates, c.sql)
	}
	// A NULL strategy (a step outside a batch) and a NULL from_state (a first transition) are allowed.
	require.NoError(t, exec(`UPDATE `+s+`.steps SET failure_strategy = NULL`))
	require.NoError(t, exec(`INSERT INTO `+s+`.step_transitions (step_id, task_id, from_state, to_state, event, sort_key) VALUES (`+step+`, `+task+`, NULL, 'pending', 'create', 0)`))

	// The migrated schema is the one a fresh Migrate builds.
	ref := testdb.New(t, testdb.WithoutMigrations())
	require.NoError(t, migrations.Migrate(ctx, ref.Pool, migrations.WithSchema(ref.Schema)))
	require.Equal(t, schemaShape(t, ref), schemaShape(t, db))
}

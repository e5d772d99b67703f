package migrations_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/migrations"
	"github.com/tasker-systems/tasker/store/postgres"
)

// schemaShape lists the schema's tables, columns, constraints and indexes: two schemas built the
// same way have the same shape.
func schemaShape(t *testing.T, db *testdb.DB) string {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(), `
		SELECT 'col ' || table_name || '.' || column_name || ' ' || data_type
		  FROM information_schema.columns WHERE table_schema = $1
		UNION ALL
		SELECT 'con ' || conname || ' ' || replace(pg_get_constraintdef(c.oid), $1 || '.', '')
		  FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = $1
		UNION ALL
		SELECT 'idx ' || indexname || ' ' || replace(indexdef, $1 || '.', '')
		  FROM pg_indexes WHERE schemaname = $1
		ORDER BY 1`, db.Schema)
	require.NoError(t, err)
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return strings.Join(lines, "\n")
}

// migrateTo applies migrations 1 to n to db's schema, which must be unmigrated, and records them
// as Migrate does, so that a later Migrate applies only the rest. It returns every migration.
func migrateTo(t *testing.T, db *testdb.DB, n int) []migrations.Migration {
	t.Helper()
	ctx := context.Background()
	all, err := migrations.All(db.Schema)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(all), n)
	s := pgx.Identifier{db.Schema}.Sanitize()
	_, err = db.Pool.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+s)
	require.NoError(t, err)
	for _, m := range all[:n] {
		_, err := db.Pool.Exec(ctx, m.SQL)
		require.NoError(t, err, "migration %d", m.Version)
	}
	_, err = db.Pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+s+`.schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`)
	require.NoError(t, err)
	for _, m := range all[:n] {
		_, err := db.Pool.Exec(ctx, `INSERT INTO `+s+`.schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name)
		require.NoError(t, err)
	}
	return all
}

func versions(t *testing.T, db *testdb.DB) []int {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(), `SELECT version FROM `+db.Schema+`.schema_migrations ORDER BY version`)
	require.NoError(t, err)
	vs, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	require.NoError(t, err)
	out := make([]int, len(vs))
	for i, v := range vs {
		out[i] = int(v)
	}
	return out
}

func allVersions() []int {
	var out []int
	for v := 1; v <= migrations.Latest(); v++ {
		out = append(out, v)
	}
	return out
}

func TestMigrateTwiceIsIdempotent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.New(t, testdb.WithoutMigrations())
	require.ErrorIs(t, migrations.CheckVersion(ctx, db.Pool, migrations.WithSchema(db.Schema)), migrations.ErrNotMigrated)

	require.NoError(t, migrations.Migrate(ctx, db.Pool, migrations.WithSchema(db.Schema)))
	first := schemaShape(t, db)
	require.Contains(t, first, "col tasks.state text")
	require.Contains(t, first, "col steps.transition_seq integer")
	require.NotContains(t, first, "most_recent")
	require.NoError(t, migrations.Migrate(ctx, db.Pool, migrations.WithSchema(db.Schema)))
	require.Equal(t, first, schemaShape(t, db))
	require.Equal(t, allVersions(), versions(t, db))
	require.NoError(t, migrations.CheckVersion(ctx, db.Pool, migrations.WithSchema(db.Schema)))
}

func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.New(t, testdb.WithoutMigrations(), testdb.WithMaxConns(8))
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = migrations.Migrate(ctx, db.Pool, migrations.WithSchema(db.Schema))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, "goroutine %d", i)
	}
	require.Equal(t, allVersions(), versions(t, db))

	// The result is the same schema a single Migrate builds.
	ref := testdb.New(t, testdb.WithoutMigrations())
	require.NoError(t, migrations.Migrate(ctx, ref.Pool, migrations.WithSchema(ref.Schema)))
	require.Equal(t, schemaShape(t, ref), schemaShape(t, db))
}

func TestMigrateRefusesNewerSchema(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.New(t) // migrated
	_, err := db.Pool.Exec(ctx, `INSERT INTO `+db.Schema+`.schema_migrations (version, name) VALUES ($1, 'from_the_future')`, migrations.Latest()+1)
	require.NoError(t, err)

	err = migrations.Migrate(ctx, db.Pool, migrations.WithSchema(db.Schema))
	require.ErrorIs(t, err, migrations.ErrSchemaTooNew)
	var ve *migrations.VersionError
	require.True(t, errors.As(err, &ve))
	require.Equal(t, migrations.Latest()+1, ve.Database)
	require.Contains(t, err.Error(), "upgrade tasker")
	require.ErrorIs(t, migrations.CheckVersion(ctx, db.Pool, migrations.WithSchema(db.Schema)), migrations.ErrSchemaTooNew)
}

func TestCheckConstraintsHoldStateNames(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.New(t)
	s := db.Schema
	_, err := db.Pool.Exec(ctx, `INSERT INTO `+s+`.templates (namespace, name, version, definition, checksum) VALUES ('ns','t','1','{}','x')`)
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, `INSERT INTO `+s+`.tasks (task_id, namespace, name, version, state, identity_hash) VALUES (gen_random_uuid(),'ns','t','1','bogus','h')`)
	require.ErrorContains(t, err, "task_state_check")
	_, err = db.Pool.Exec(ctx, `INSERT INTO `+s+`.tasks (task_id, namespace, name, version, state, identity_hash) VALUES ('00000000-0000-0000-0000-000000000001','ns','t','1','pending','h')`)
	require.NoError(t, err)
	// Identity is unique per template.
	_, err = db.Pool.Exec(ctx, `INSERT INTO `+s+`.tasks (task_id, namespace, name, version, identity_hash) VALUES (gen_random_uuid(),'ns','t','1','h')`)
	require.ErrorContains(t, err, "tasks_identity_unique")
	// One transition per place in a task's history: the current one is at tasks.transition_seq.
	_, err = db.Pool.Exec(ctx, `INSERT INTO `+s+`.task_transitions (task_id, from_state, to_state, event, sort_key) VALUES ('00000000-0000-0000-0000-000000000001', NULL, 'pending', 'create', 1)`)
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, `INSERT INTO `+s+`.task_transitions (task_id, from_state, to_state, event, sort_key) VALUES ('00000000-0000-0000-0000-000000000001', 'pending', 'initializing', 'start', 1)`)
	require.ErrorContains(t, err, "task_transitions_sort_unique")
	// A transition must change the state.
	_, err = db.Pool.Exec(ctx, `INSERT INTO `+s+`.task_transitions (task_id, from_state, to_state, event, sort_key) VALUES ('00000000-0000-0000-0000-000000000001', 'pending', 'pending', 'noop', 3)`)
	require.ErrorContains(t, err, "task_transitions_changes_state")
}

func TestInvalidSchemaName(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"", "Tasker", "a-b", "x;drop table y", strings.Repeat("a", 64)} {
		_, err := migrations.All(name)
		require.ErrorIs(t, err, migrations.ErrInvalidSchemaName, name)
	}
}

func TestExportGoose(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.NoError(t, migrations.ExportGoose(dir, "billing_tasker"))
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, migrations.Latest())
	body, err := os.ReadFile(filepath.Join(dir, entries[0].Name()))
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(body), "-- +goose Up\n"))
	require.Contains(t, string(body), `CREATE TABLE "billing_tasker".tasks`)
	require.NotContains(t, string(body), "{schema}")

	// The exported SQL, applied as a tool would, gives a schema CheckVersion accepts.
	ctx := context.Background()
	db := testdb.New(t, testdb.WithoutMigrations())
	all, err := migrations.All(db.Schema)
	require.NoError(t, err)
	require.NoError(t, migrations.ExportGoose(filepath.Join(dir, "own"), db.Schema))
	for i := range all {
		body, err := os.ReadFile(filepath.Join(dir, "own", entries[i].Name()[:6]+"tasker_"+all[i].Name+".sql"))
		require.NoError(t, err)
		_, err = db.Pool.Exec(ctx, string(body))
		require.NoError(t, err)
	}
	require.NoError(t, migrations.CheckVersion(ctx, db.Pool, migrations.WithSchema(db.Schema)))
}

// privateDatabase creates a database of its own for a test that needs fixed schema names, so that
// parallel runs of the suite never share them; it is dropped when the test ends.
func privateDatabase(t *testing.T) *pgxpool.Pool {
	t.Helper()
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, testdb.URL(t))
	require.NoError(t, err)
	name := fmt.Sprintf("tasker_migrations_%d_%d", os.Getpid(), time.Now().UnixNano())
	_, err = admin.Exec(ctx, `CREATE DATABASE `+pgx.Identifier{name}.Sanitize())
	require.NoError(t, err)
	cfg, err := pgxpool.ParseConfig(testdb.URL(t))
	require.NoError(t, err)
	cfg.ConnConfig.Database = name
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		pool.Close()
		_, _ = admin.Exec(ctx, `DROP DATABASE IF EXISTS `+pgx.Identifier{name}.Sanitize()+` WITH (FORCE)`)
		_ = admin.Close(ctx)
	})
	return pool
}

// TestReservedWordSchema: schema names that SQL reserves pass ValidateSchemaName, so the migration
// SQL must quote them as the store does; an engine then runs a task on such a schema.
func TestReservedWordSchema(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool := privateDatabase(t)
	for _, schema := range []string{"order", "user", "select"} {
		require.NoError(t, migrations.ValidateSchemaName(schema))
		require.NoError(t, migrations.Migrate(ctx, pool, migrations.WithSchema(schema)), schema)
		require.NoError(t, migrations.Migrate(ctx, pool, migrations.WithSchema(schema)), "again: %s", schema)
		require.NoError(t, migrations.CheckVersion(ctx, pool, migrations.WithSchema(schema)), schema)

		engine, err := tasker.NewEngine(tasker.Config{Store: postgres.New(pool, postgres.WithSchema(schema)), DisableMaintenance: true})
		require.NoError(t, err)
		require.NoError(t, engine.Register(&tasker.Template{Namespace: "shop", Name: "reserved", Version: "1.0.0",
			Steps: []tasker.StepTemplate{{Name: "only", Handler: tasker.HandlerSpec{Callable: "only"}}}}))
		engine.HandleFunc("only", func(context.Context, *tasker.Step) (any, error) { return map[string]string{"schema": schema}, nil })
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- engine.RunWorkers(runCtx) }()
		task, err := engine.CreateTask(ctx, tasker.TaskRequest{Namespace: "shop", Name: "reserved", Context: map[string]any{}})
		require.NoError(t, err)
		task, err = engine.WaitTask(ctx, task.ID)
		require.NoError(t, err)
		stop()
		require.NoError(t, <-done)
		require.Equal(t, tasker.TaskComplete, task.State, schema)
		var got map[string]string
		require.NoError(t, task.Result("only", &got))
		require.Equal(t, schema, got["schema"])
	}
}

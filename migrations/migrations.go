// Package migrations holds tasker's database schema as numbered SQL files embedded in the binary,
// and applies them.
//
// Migrate is safe to call from every process at start-up: it takes a transaction-scoped advisory
// lock, applies only what is missing, records each version in <schema>.schema_migrations, and
// refuses a database that a newer tasker has migrated. Users who manage their schema with goose,
// atlas or plain psql can take the SQL instead, through All or ExportGoose.
package migrations

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// SchemaDefault is the schema tasker's tables live in unless configured otherwise.
const SchemaDefault = "tasker"

//go:embed sql/*.sql
var files embed.FS

// ErrSchemaTooNew is returned when the database was migrated by a newer tasker than this one.
var ErrSchemaTooNew = errors.New("tasker: database schema is newer than this library")

// ErrNotMigrated is returned by CheckVersion when the schema lacks migrations this library needs.
var ErrNotMigrated = errors.New("tasker: database schema is not migrated; run migrations.Migrate (or apply the SQL from migrations.All)")

// ErrInvalidSchemaName is returned for a schema name that is not a plain lower-case identifier.
var ErrInvalidSchemaName = errors.New("tasker: invalid schema name")

// VersionError reports a mismatch between the database's schema version and this library's.
type VersionError struct {
	Schema   string
	Database int // the highest version recorded in the database (0: none)
	Library  int // the highest version this library knows
}

// Error says which side is behind and what to do about it.
func (e *VersionError) Error() string {
	if e.Database > e.Library {
		return fmt.Sprintf("tasker: schema %q is at version %d, newer than this library's %d; upgrade tasker", e.Schema, e.Database, e.Library)
	}
	return fmt.Sprintf("tasker: schema %q is at version %d, this library needs %d; run migrations.Migrate", e.Schema, e.Database, e.Library)
}

// Is makes errors.Is match ErrSchemaTooNew or ErrNotMigrated, whichever applies.
func (e *VersionError) Is(target error) bool {
	if e.Database > e.Library {
		return target == ErrSchemaTooNew
	}
	return target == ErrNotMigrated
}

// Migration is one numbered SQL file with the schema name substituted.
type Migration struct {
	Version int    // 1, 2, ...
	Name    string // the file name without the number and extension, e.g. "init"
	SQL     string
}

// DB is what Migrate needs: a *pgxpool.Pool, a *pgx.Conn or anything else that can begin a
// transaction.
type DB interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Option configures Migrate and CheckVersion.
type Option func(*options)

type options struct{ schema string }

// WithSchema selects the schema tasker's tables live in (default SchemaDefault).
func WithSchema(name string) Option { return func(o *options) { o.schema = name } }

func buildOptions(opts []Option) (options, error) {
	o := options{schema: SchemaDefault}
	for _, opt := range opts {
		opt(&o)
	}
	return o, ValidateSchemaName(o.schema)
}

var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// ValidateSchemaName reports whether name can be used as tasker's schema: lower-case letters,
// digits and underscores, starting with a letter or underscore, at most 63 bytes.
func ValidateSchemaName(name string) error {
	if !schemaName.MatchString(name) {
		return fmt.Errorf("%w %q: use lower-case letters, digits and underscores", ErrInvalidSchemaName, name)
	}
	return nil
}

var fileName = regexp.MustCompile(`^(\d{4})_([a-z0-9_]+)\.sql$`)

// All returns every migration in order, with {schema} replaced by the given schema name, quoted as
// an identifier so that a name such as "order" or "user", which SQL reserves, works as well as any.
func All(schema string) ([]Migration, error) {
	if err := ValidateSchemaName(schema); err != nil {
		return nil, err
	}
	entries, err := fs.ReadDir(files, "sql")
	if err != nil {
		return nil, err
	}
	quoted := pgx.Identifier{schema}.Sanitize()
	var out []Migration
	for _, e := range entries {
		m := fileName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migrations: unexpected file %q", e.Name())
		}
		v, _ := strconv.Atoi(m[1])
		body, err := files.ReadFile("sql/" + e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{Version: v, Name: m[2], SQL: strings.ReplaceAll(string(body), "{schema}", quoted)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i, m := range out {
		if m.Version != i+1 {
			return nil, fmt.Errorf("migrations: versions must run 1..n without gaps, found %d at position %d", m.Version, i+1)
		}
	}
	return out, nil
}

// Latest is the highest schema version this library knows.
func Latest() int {
	ms, err := All(SchemaDefault)
	if err != nil {
		panic(err) // the embedded files are part of the build; a bad one is a programming error
	}
	return len(ms)
}

// Migrate brings the schema up to date. It is idempotent and safe to run from many processes at
// once: they serialize on an advisory lock, and all pending migrations apply in one transaction.
// It returns a *VersionError matching ErrSchemaTooNew when the database is ahead of this library.
func Migrate(ctx context.Context, db DB, opts ...Option) error {
	o, err := buildOptions(opts)
	if err != nil {
		return err
	}
	tx, err := db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("migrate %s: begin: %w", o.schema, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := MigrateTx(ctx, tx, opts...); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("migrate %s: commit: %w", o.schema, err)
	}
	return nil
}

// MigrateTx is Migrate inside the caller's transaction; nothing is applied unless it commits.
func MigrateTx(ctx context.Context, tx pgx.Tx, opts ...Option) error {
	o, err := buildOptions(opts)
	if err != nil {
		return err
	}
	all, err := All(o.schema)
	if err != nil {
		return err
	}
	q := pgx.Identifier{o.schema}.Sanitize()
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('tasker.migrate.' || $1::text, 0))`, o.schema); err != nil {
		return fmt.Errorf("migrate %s: lock: %w", o.schema, err)
	}
	if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+q); err != nil {
		return fmt.Errorf("migrate %s: create schema: %w", o.schema, err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+q+`.schema_migrations (
		version    integer     PRIMARY KEY,
		name       text        NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("migrate %s: version table: %w", o.schema, err)
	}
	var current int
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM `+q+`.schema_migrations`).Scan(&current); err != nil {
		return fmt.Errorf("migrate %s: read version: %w", o.schema, err)
	}
	if current > len(all) {
		return &VersionError{Schema: o.schema, Database: current, Library: len(all)}
	}
	for _, m := range all[current:] {
		if _, err := tx.Exec(ctx, m.SQL); err != nil {
			return fmt.Errorf("migrate %s: apply %04d_%s: %w", o.schema, m.Version, m.Name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+q+`.schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name); err != nil {
			return fmt.Errorf("migrate %s: record %04d: %w", o.schema, m.Version, err)
		}
	}
	return nil
}

// Querier is what CheckVersion needs: a pool, a connection or a transaction.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// CheckVersion returns nil when the schema is exactly at this library's version, and otherwise a
// *VersionError that matches ErrNotMigrated or ErrSchemaTooNew. Engines call it at start-up so that
// a missing migration is reported in words rather than as a failing query later.
func CheckVersion(ctx context.Context, db Querier, opts ...Option) error {
	o, err := buildOptions(opts)
	if err != nil {
		return err
	}
	var current int
	err = db.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM `+pgx.Identifier{o.schema}.Sanitize()+`.schema_migrations`).Scan(&current)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "3F000") { // undefined table / schema
		current, err = 0, nil
	}
	if err != nil {
		return fmt.Errorf("check schema %s: %w", o.schema, err)
	}
	if latest := Latest(); current != latest {
		return &VersionError{Schema: o.schema, Database: current, Library: latest}
	}
	return nil
}

// ExportGoose writes the migrations into dir as goose SQL files (NNNNN_name.sql with
// "-- +goose Up" markers), with the schema name substituted, for users who run goose. Each file's
// first statement creates the schema if needed, and each records its version in schema_migrations
// so that engines' CheckVersion accepts the result. Plain SQL tools (atlas, psql) can use All instead.
func ExportGoose(dir, schema string) error {
	all, err := All(schema)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, m := range all {
		var b strings.Builder
		b.WriteString("-- +goose Up\n-- +goose StatementBegin\n")
		q := pgx.Identifier{schema}.Sanitize()
		if m.Version == 1 {
			fmt.Fprintf(&b, "CREATE SCHEMA IF NOT EXISTS %s;\n", q)
			fmt.Fprintf(&b, "CREATE TABLE IF NOT EXISTS %s.schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());\n", q)
		}
		b.WriteString(m.SQL)
		fmt.Fprintf(&b, "\nINSERT INTO %s.schema_migrations (version, name) VALUES (%d, '%s');\n", q, m.Version, m.Name)
		b.WriteString("\n-- +goose StatementEnd\n")
		name := filepath.Join(dir, fmt.Sprintf("%05d_tasker_%s.sql", m.Version, m.Name))
		if err := os.WriteFile(name, []byte(b.String()), 0o644); err != nil {
			return err
		}
	}
	return nil
}

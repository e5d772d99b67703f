package migrations

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// RowsQuerier is what Applied needs: a pool, a connection or a transaction.
type RowsQuerier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// AppliedMigration is one row of <schema>.schema_migrations: a version Migrate (or goose, with
// ExportGoose's files) applied, and when.
type AppliedMigration struct {
	Version   int
	Name      string
	AppliedAt time.Time
}

// Applied lists the migrations the schema records as applied, in version order; none (and no
// error) when the schema or its version table does not exist yet. Operators' tools show it
// beside All to say what is pending.
func Applied(ctx context.Context, db RowsQuerier, opts ...Option) ([]AppliedMigration, error) {
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	rows, err := db.Query(ctx, `SELECT version, name, applied_at FROM `+pgx.Identifier{o.schema}.Sanitize()+`.schema_migrations ORDER BY version`)
	var out []AppliedMigration
	if err == nil {
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (AppliedMigration, error) {
			var m AppliedMigration
			err := r.Scan(&m.Version, &m.Name, &m.AppliedAt)
			return m, err
		})
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "3F000") { // undefined table / schema
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s.schema_migrations: %w", o.schema, err)
	}
	return out, nil
}

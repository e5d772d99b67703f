package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/tasker/store"
)

// ListTemplates returns every row of the template registry (store.TemplateLister).
func (s *Store) ListTemplates(ctx context.Context) ([]store.TemplateRecord, error) {
	rows, err := s.pool.Query(ctx, s.q(`
		SELECT namespace, name, version, definition, checksum, created_at
		  FROM {s}.templates
		 ORDER BY namespace, name, created_at, version`))
	if err != nil {
		return nil, fmt.Errorf("list templates: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.TemplateRecord, error) {
		var t store.TemplateRecord
		err := r.Scan(&t.Namespace, &t.Name, &t.Version, &t.Definition, &t.Checksum, &t.CreatedAt)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("list templates: %w", err)
	}
	return out, nil
}

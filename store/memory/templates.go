package memory

import (
	"context"
	"slices"
	"strings"

	"github.com/tasker-systems/tasker/store"
)

// ListTemplates returns every row of the template registry (store.TemplateLister), in
// store/postgres's order.
func (s *Store) ListTemplates(ctx context.Context) ([]store.TemplateRecord, error) {
	var out []store.TemplateRecord
	err := s.read(ctx, func() error {
		for k, row := range s.templates {
			out = append(out, store.TemplateRecord{Namespace: k.namespace, Name: k.name, Version: k.version,
				Definition: slices.Clone(row.definition), Checksum: row.checksum, CreatedAt: row.createdAt})
		}
		return nil
	})
	slices.SortFunc(out, func(a, b store.TemplateRecord) int {
		if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
			return c
		}
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.Version, b.Version)
	})
	return out, err
}

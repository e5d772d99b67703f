package store

import (
	"context"
	"encoding/json"
	"time"
)

// TemplateLister is implemented by stores that can list their template registry (store/postgres
// and store/memory), so that Engine.RegisteredTemplates can show operators the templates the
// database knows, including those registered by other processes.
type TemplateLister interface {
	// ListTemplates returns every registry row, ordered by namespace, name and creation.
	ListTemplates(ctx context.Context) ([]TemplateRecord, error)
}

// TemplateRecord is one row of the template registry.
type TemplateRecord struct {
	Namespace, Name, Version string
	// Definition is the template as the engine registered it (the JSON of its Template), as the
	// store keeps it: PostgreSQL's jsonb does not keep the key order.
	Definition json.RawMessage
	Checksum   string
	CreatedAt  time.Time
}

package tasker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/tasker-systems/tasker/store"
)

// RegisteredTemplate is one template of the database's registry: every version any engine
// sharing the store has registered (Register writes it when a task is first created or the
// workers start), not only this engine's.
type RegisteredTemplate struct {
	Namespace, Name, Version string
	// Definition is the template's JSON as the registry keeps it; Template decodes it.
	Definition json.RawMessage
	// Checksum is the SHA-256 of the definition as it was registered.
	Checksum  string
	CreatedAt time.Time
}

// RegisteredTemplates lists the store's template registry, ordered by namespace, name and
// registration. A store that cannot list its registry (not store/postgres nor store/memory) makes
// it return an error matching ErrUnsupported.
func (e *Engine) RegisteredTemplates(ctx context.Context) ([]RegisteredTemplate, error) {
	l, ok := e.store.(store.TemplateLister)
	if !ok {
		return nil, fmt.Errorf("%w: the store %T cannot list its templates", ErrUnsupported, e.store)
	}
	recs, err := l.ListTemplates(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]RegisteredTemplate, len(recs))
	for i, r := range recs {
		out[i] = RegisteredTemplate{Namespace: r.Namespace, Name: r.Name, Version: r.Version,
			Definition: r.Definition, Checksum: r.Checksum, CreatedAt: r.CreatedAt}
	}
	return out, nil
}

// Template decodes the registered definition into a Template that Register accepts, so that a
// process without the template's source (an operator's tool) can create its tasks. The registry
// does not keep the order of the input_schema's keys; Template orders them as ParseTemplate does
// (by name), so that a template parsed from YAML registers again under the stored checksum. A
// template built in Go whose InputSchema lists its keys in another order does not: Register
// accepts the result, but creating a task from it fails with a *TemplateConflictError.
func (r RegisteredTemplate) Template() (*Template, error) {
	var t Template
	if err := json.Unmarshal(r.Definition, &t); err != nil {
		return nil, fmt.Errorf("tasker: registered template %s/%s@%s: %w", r.Namespace, r.Name, r.Version, err)
	}
	if len(t.InputSchema) > 0 {
		d := json.NewDecoder(bytes.NewReader(t.InputSchema))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err != nil {
			return nil, fmt.Errorf("tasker: registered template %s/%s@%s: input_schema: %w", r.Namespace, r.Name, r.Version, err)
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("tasker: registered template %s/%s@%s: input_schema: %w", r.Namespace, r.Name, r.Version, err)
		}
		t.InputSchema = b
	}
	return &t, nil
}

package tasker

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// SchemaLoader loads a JSON Schema document that a template's input_schema refers to outside
// itself ($ref or $schema naming a file:// or http(s):// URL, say): it returns the document
// decoded from JSON (as jsonschema.UnmarshalJSON does), given its absolute URL. It has the
// method set of jsonschema.URLLoader (github.com/santhosh-tekuri/jsonschema/v6), so that
// package's FileLoader, HTTPLoader and SchemeURLLoader serve as they are; a loader of your own
// can serve a fixed set of documents, or only one directory.
//
// Without a loader such references are refused (*SchemaRefError), so that a template cannot
// make the process read its host's files or fetch URLs. References inside the schema
// (#/definitions/..., #/$defs/..., an embedded $id) and the standard meta-schemas need none.
type SchemaLoader interface {
	Load(url string) (any, error)
}

// WithInputSchemaLoader makes ParseTemplate resolve the input_schema's references to documents
// outside the template through l, and sets the parsed template's InputSchemaLoader to l so that
// Register resolves them the same way. nil refuses them (the default).
func WithInputSchemaLoader(l SchemaLoader) ParseOption {
	return func(o *parseOptions) { o.loader = l }
}

// ErrSchemaRefNotAllowed is matched (errors.Is) by every *SchemaRefError.
var ErrSchemaRefNotAllowed = errors.New("tasker: input_schema refers to a document outside the template")

// SchemaRefError reports an input_schema that refers to a document outside the template, which
// is refused because the template has no InputSchemaLoader. Nothing was read from the URL.
type SchemaRefError struct {
	// URL is the absolute URL of the document referred to.
	URL string
}

// Error names the URL and how to allow it.
func (e *SchemaRefError) Error() string {
	return fmt.Sprintf("%s: %q is not loaded; set Template.InputSchemaLoader (or parse with tasker.WithInputSchemaLoader) to allow it",
		ErrSchemaRefNotAllowed.Error(), e.URL)
}

// Is makes errors.Is(err, ErrSchemaRefNotAllowed) true.
func (e *SchemaRefError) Is(target error) bool { return target == ErrSchemaRefNotAllowed }

// refusingLoader refuses every document and remembers the first URL asked for.
type refusingLoader struct{ url string }

func (l *refusingLoader) Load(url string) (any, error) {
	if l.url == "" {
		l.url = url
	}
	return nil, &SchemaRefError{URL: url}
}

// compileInputSchema compiles a template's input_schema (draft 2020-12 unless the schema names
// another draft), loading the documents it refers to outside itself through loader, or refusing
// them with a *SchemaRefError when loader is nil. The engine uses it to check a task's context.
func compileInputSchema(raw []byte, loader SchemaLoader) (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	const loc = "tasker:input_schema.json"
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	refuse := &refusingLoader{}
	if loader != nil {
		c.UseLoader(loader)
	} else {
		c.UseLoader(refuse)
	}
	err = c.AddResource(loc, doc)
	var s *jsonschema.Schema
	if err == nil {
		s, err = c.Compile(loc)
	}
	if err != nil && refuse.url != "" {
		// The compiler's error does not wrap the loader's; report the refusal itself.
		return nil, &SchemaRefError{URL: refuse.url}
	}
	return s, err
}

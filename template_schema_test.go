package tasker

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"
)

// schemaTemplate is a template whose input_schema is the given JSON.
func schemaTemplate(schema string) string {
	return withHeader("input_schema: "+schema, "steps: [{name: s, handler: {callable: h}}]")
}

// secretFiles writes a file that is not JSON, whose content an error could leak, and a file
// that is a valid schema, which a template could use if the file were read.
func secretFiles(t *testing.T) (secret, schema string) {
	dir := t.TempDir()
	secret = filepath.Join(dir, "secret.txt")
	require.NoError(t, os.WriteFile(secret, []byte("Zebra-secret-4711\n"), 0o600))
	schema = filepath.Join(dir, "string.json")
	require.NoError(t, os.WriteFile(schema, []byte(`{"type": "string", "maxLength": 3}`), 0o600))
	return secret, schema
}

func TestInputSchemaExternalRefRefused(t *testing.T) {
	t.Parallel()
	secret, schema := secretFiles(t)
	refs := map[string]string{
		"file ref":               `{"$ref": "file://` + secret + `"}`,
		"valid file":             `{"type": "object", "properties": {"code": {"$ref": "file://` + schema + `"}}}`,
		"https ref":              `{"$ref": "https://example.com/schema.json"}`,
		"http ref":               `{"$ref": "http://127.0.0.1:1/schema.json"}`,
		"relative to a file $id": `{"$id": "file://` + filepath.Dir(secret) + `/", "$ref": "secret.txt"}`,
		"file meta-schema":       `{"$schema": "file://` + secret + `"}`,
	}
	for name, s := range refs {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseTemplate([]byte(schemaTemplate(s)))
			require.ErrorIs(t, err, ErrSchemaRefNotAllowed)
			var re *SchemaRefError
			require.ErrorAs(t, err, &re)
			require.NotEmpty(t, re.URL)
			p := requireProblem(t, err, CodeInvalidInputSchema)
			require.Equal(t, "input_schema", p.Field)
			require.Contains(t, err.Error(), "InputSchemaLoader")
			for _, leak := range []string{"Zebra", "secret-4711", "invalid character", "'Z'"} {
				require.NotContains(t, err.Error(), leak)
			}
		})
	}

	// A template built in Go is refused by Validate in the same way.
	tmpl := &Template{Namespace: "n", Name: "t", InputSchema: []byte(refs["valid file"]),
		Steps: []StepTemplate{{Name: "s", Handler: HandlerSpec{Callable: "h"}}}}
	require.ErrorIs(t, tmpl.Validate(), ErrSchemaRefNotAllowed)
}

func TestInputSchemaInDocumentRefs(t *testing.T) {
	t.Parallel()
	schemas := []string{
		`{"$defs": {"code": {"type": "string", "maxLength": 3}}, "type": "object", "properties": {"code": {"$ref": "#/$defs/code"}}}`,
		`{"$schema": "http://json-schema.org/draft-07/schema#", "definitions": {"code": {"type": "string", "maxLength": 3}}, "type": "object", "properties": {"code": {"$ref": "#/definitions/code"}}}`,
		`{"$id": "https://example.com/order", "$defs": {"c": {"$id": "https://example.com/code", "type": "string", "maxLength": 3}}, "type": "object", "properties": {"code": {"$ref": "https://example.com/code"}}}`,
	}
	for _, s := range schemas {
		tmpl, err := ParseTemplate([]byte(schemaTemplate(s)))
		require.NoError(t, err, s)
		compiled, err := compileInputSchema(tmpl.InputSchema, nil)
		require.NoError(t, err)
		require.NoError(t, compiled.Validate(map[string]any{"code": "abc"}))
		require.Error(t, compiled.Validate(map[string]any{"code": "abcd"}))
	}
}

func TestInputSchemaExternalRefAllowed(t *testing.T) {
	t.Parallel()
	_, schema := secretFiles(t)
	y := schemaTemplate(`{"type": "object", "properties": {"code": {"$ref": "file://` + schema + `"}}}`)
	tmpl, err := ParseTemplate([]byte(y), WithInputSchemaLoader(jsonschema.FileLoader{}))
	require.NoError(t, err)
	require.NotNil(t, tmpl.InputSchemaLoader)
	require.NoError(t, tmpl.Validate())
	compiled, err := compileInputSchema(tmpl.InputSchema, tmpl.InputSchemaLoader)
	require.NoError(t, err)
	require.NoError(t, compiled.Validate(map[string]any{"code": "abc"}))
	require.Error(t, compiled.Validate(map[string]any{"code": "abcd"}))

	// The loader is the user's to choose: one that serves only the documents it knows refuses
	// the others with its own error.
	served := map[string]any{"https://schemas.example.com/code.json": map[string]any{"type": "string"}}
	loader := mapLoader(served)
	_, err = ParseTemplate([]byte(schemaTemplate(`{"$ref": "https://schemas.example.com/code.json"}`)), WithInputSchemaLoader(loader))
	require.NoError(t, err)
	_, err = ParseTemplate([]byte(schemaTemplate(`{"$ref": "file:///etc/passwd"}`)), WithInputSchemaLoader(loader))
	p := requireProblem(t, err, CodeInvalidInputSchema)
	require.Contains(t, p.Message, "file does not exist")
	require.False(t, strings.Contains(err.Error(), "root:"))
}

type mapLoader map[string]any

func (m mapLoader) Load(url string) (any, error) {
	if doc, ok := m[url]; ok {
		return doc, nil
	}
	return nil, os.ErrNotExist
}

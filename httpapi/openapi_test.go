package httpapi

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/stretchr/testify/require"
)

// TestOpenAPIDocument: the document is OpenAPI 3.1 that kin-openapi loads and validates (every
// $ref resolves, every schema is well-formed); it lists exactly the handler's routes, each with
// the Authorizer's action it asks for; and every operation documents the problems all routes
// can answer.
func TestOpenAPIDocument(t *testing.T) {
	t.Parallel()
	var raw map[string]any
	require.NoError(t, json.Unmarshal(openAPI, &raw), "the document is JSON")
	require.Equal(t, "3.1.0", raw["openapi"])

	doc, err := openapi3.NewLoader().LoadFromData(openAPI)
	require.NoError(t, err)
	require.NoError(t, doc.Validate(context.Background()))

	inDoc := map[string]*openapi3.Operation{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			inDoc[method+" "+path] = op
		}
	}
	inMux := map[string]route{}
	for _, rt := range routes {
		inMux[rt.method+" "+rt.path] = rt
	}
	require.ElementsMatch(t, keys(inMux), keys(inDoc), "the document's operations are the handler's routes")
	for key, rt := range inMux {
		op := inDoc[key]
		action, _ := op.Extensions["x-tasker-action"].(string)
		if rt.action != "" {
			require.Equal(t, string(rt.action), action, key)
		} else {
			for _, a := range strings.Split(action, " | ") {
				require.Contains(t, stepActions, strings.TrimPrefix(a, "steps:"), key)
			}
		}
		for _, code := range []string{"400", "401", "403", "500"} {
			require.NotNil(t, op.Responses.Value(code), "%s documents %s", key, code)
		}
		require.NotEmpty(t, op.OperationID, key)
	}
	require.Equal(t, len(Actions), countActions(doc), "every action is used by some operation")
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func countActions(doc *openapi3.T) int {
	seen := map[string]bool{}
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			a, _ := op.Extensions["x-tasker-action"].(string)
			for _, x := range strings.Split(a, " | ") {
				seen[x] = true
			}
		}
	}
	return len(seen)
}

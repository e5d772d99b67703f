package memory

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestContextTextMatchesPostgres: PostgreSQL's ->> gives an object and a string holding
// that object's jsonb text the same value ({"a": 2, "b": 1}), so they share a limit group.
func TestContextTextMatchesPostgres(t *testing.T) {
	obj, err := jsonb([]byte(`{"k": {"b": 1, "a": 2}}`))
	require.NoError(t, err)
	str, err := jsonb([]byte(`{"k": "{\"a\": 2, \"b\": 1}"}`))
	require.NoError(t, err)
	a, _ := contextText(obj, "k")
	b, _ := contextText(str, "k")
	require.Equal(t, `{"a": 2, "b": 1}`, b)
	require.Equal(t, b, a, "PostgreSQL groups them together")
}

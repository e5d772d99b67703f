package jsonsafe_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/jsonsafe"
	"github.com/tasker-systems/tasker/internal/testdb"
)

// checkCases are documents on both sides of each rule, with the path and a piece of the reason
// that Check gives for the refused ones.
var checkCases = []struct {
	name   string
	doc    string
	path   string // "" with ok
	reason string
	ok     bool
}{
	{name: "object", doc: `{"a": [1, 2.5, -3e2, true, false, null, "x\n\u00e9\ud83d\ude00"]}`, ok: true},
	{name: "nul escape", doc: `{"a": {"b": ["x", "\u0000"]}}`, path: "/a/b/1", reason: `\u0000`},
	{name: "nul escape in a key", doc: `{"a\u0000": 1}`, path: "", reason: "object key"},
	{name: "invalid UTF-8", doc: "{\"a\": \"\xff\"}", path: "/a", reason: "not UTF-8"},
	{name: "CESU-8 surrogate bytes", doc: "[\"\xed\xa0\x80\"]", path: "/0", reason: "not UTF-8"},
	{name: "lone high surrogate", doc: `{"s": "\ud800"}`, path: "/s", reason: "high surrogate"},
	{name: "high surrogate then text", doc: `{"s": "\ud800x"}`, path: "/s", reason: "high surrogate"},
	{name: "high surrogate then high", doc: `{"s": "\ud800\ud800"}`, path: "/s", reason: "high surrogate"},
	{name: "lone low surrogate", doc: `["\udc00"]`, path: "/0", reason: "low surrogate"},
	{name: "surrogate pair", doc: `["\ud800\udc00", "\uDBFF\uDFFF"]`, ok: true},
	{name: "key with slash and tilde in the path", doc: `{"a/b~c": 1e1000000}`, path: "/a~1b~0c", reason: "numeric"},
	{name: "exponent too large", doc: `1e1000000`, reason: "numeric"},
	{name: "largest integer part", doc: `1e131071`, ok: true},
	{name: "integer part one digit too long", doc: `1e131072`, reason: "numeric"},
	{name: "integer part written out", doc: "1" + strings.Repeat("0", 131071) + ".5", ok: true},
	{name: "integer part written out, too long", doc: "1" + strings.Repeat("0", 131072), reason: "numeric"},
	{name: "fraction and exponent", doc: `0.1e131072`, ok: true},
	{name: "fraction and exponent, too large", doc: `0.1e131073`, reason: "numeric"},
	{name: "many digits then exponent", doc: `9999e131068`, ok: true},
	{name: "trailing zeros do not count before the point", doc: `1.0000e131071`, ok: true},
	{name: "smallest scale", doc: `1e-16383`, ok: true},
	{name: "scale too large", doc: `1e-16384`, reason: "numeric"},
	{name: "trailing zeros count after the point", doc: "1." + strings.Repeat("0", 16384), reason: "numeric"},
	{name: "scale at the limit written out", doc: "0." + strings.Repeat("0", 16382) + "1", ok: true},
	{name: "fraction and negative exponent", doc: `0.5e-16382`, ok: true},
	{name: "fraction and negative exponent, too small", doc: `0.5e-16383`, reason: "numeric"},
	{name: "zero with a huge exponent", doc: `0e1073741822`, ok: true},
	{name: "zero with an exponent past numeric's bound", doc: `0e1073741823`, reason: "numeric"},
	{name: "zero with a huge negative exponent", doc: `-0e-16383`, ok: true},
	{name: "zero with too small an exponent", doc: `-0e-16384`, reason: "numeric"},
	{name: "exponent with leading zeros", doc: `[1E+0005, 2e-000]`, ok: true},
	{name: "exponent of many digits", doc: `1e99999999999999999999999`, reason: "numeric"},
	{name: "deep but allowed", doc: strings.Repeat("[", jsonsafe.MaxDepth) + strings.Repeat("]", jsonsafe.MaxDepth), ok: true},
	{name: "too deep", doc: strings.Repeat(`{"a":`, jsonsafe.MaxDepth+1) + "1" + strings.Repeat("}", jsonsafe.MaxDepth+1), path: "/a/a/a/a…/a/a/a", reason: "nested deeper"},
	{name: "not JSON", doc: `{"a": }`, path: "/a", reason: "invalid character"},
	{name: "leading zero", doc: `[01]`, path: "/0", reason: "leading zero"},
	{name: "raw control character", doc: "[\"a\tb\"]", path: "/0", reason: "control character"},
	{name: "two documents", doc: `{} {}`, reason: "after the JSON document"},
	{name: "empty", doc: ``, reason: "end of JSON"},
	{name: "whitespace around", doc: " \t\r\n{\"a\" : [ ] }\n", ok: true},
	{name: "truncated", doc: `{"a": [1, 2`, path: "/a", reason: "end of JSON"},
	{name: "bad escape", doc: `["\x"]`, path: "/0", reason: "invalid escape"},
}

// TestCheck checks each rule's both sides and the location Check reports.
func TestCheck(t *testing.T) {
	t.Parallel()
	for _, tc := range checkCases {
		err := jsonsafe.Check([]byte(tc.doc))
		if tc.ok {
			require.NoError(t, err, tc.name)
			continue
		}
		var je *jsonsafe.Error
		require.ErrorAs(t, err, &je, tc.name)
		if head, tail, ok := strings.Cut(tc.path, "…"); ok {
			require.True(t, strings.HasPrefix(je.Path, head) && strings.HasSuffix(je.Path, tail), "%s: a long path is shortened", tc.name)
			require.LessOrEqual(t, len(je.Path), 260, tc.name)
		} else {
			require.Equal(t, tc.path, je.Path, "%s: %.300v", tc.name, err)
		}
		require.Contains(t, je.Reason, tc.reason, tc.name)
		require.LessOrEqual(t, je.Offset, len(tc.doc), tc.name)
	}
}

// TestCheckAgreesWithPostgreSQL feeds every case to the server's jsonb input: Check accepts
// exactly what PostgreSQL accepts.
func TestCheckAgreesWithPostgreSQL(t *testing.T) {
	t.Parallel()
	db := testdb.New(t, testdb.WithoutMigrations())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, tc := range checkCases {
		if tc.name == "too deep" || tc.name == "empty" {
			continue // PostgreSQL's own limit there is its stack, not a fixed depth; "" is checked below
		}
		var n int
		pgErr := db.Pool.QueryRow(ctx, `SELECT length($1::text::jsonb::text)`, tc.doc).Scan(&n)
		require.Equal(t, pgErr == nil, jsonsafe.Check([]byte(tc.doc)) == nil, "%s: PostgreSQL says %v", tc.name, pgErr)
	}
	require.Error(t, db.Pool.QueryRow(ctx, `SELECT length($1::text::jsonb::text)`, "").Scan(new(int)))
	for _, s := range []string{"a\x00b", "\xff", "ok é"} {
		var got string
		pgErr := db.Pool.QueryRow(ctx, `SELECT $1::text`, s).Scan(&got)
		require.Equal(t, pgErr == nil, jsonsafe.CheckText(s) == nil, "%q: PostgreSQL says %v", s, pgErr)
	}
}

func TestCheckText(t *testing.T) {
	t.Parallel()
	require.NoError(t, jsonsafe.CheckText("plain é 😀"))
	var je *jsonsafe.Error
	require.ErrorAs(t, jsonsafe.CheckText("ab\x00"), &je)
	require.Equal(t, 2, je.Offset)
	require.Contains(t, je.Reason, "NUL")
	require.ErrorAs(t, jsonsafe.CheckText("é\xc3"), &je)
	require.Equal(t, 2, je.Offset)
	require.Contains(t, je.Reason, "0xc3")
}

func TestSanitize(t *testing.T) {
	t.Parallel()
	require.Equal(t, "plain", jsonsafe.Sanitize("plain"))
	got := jsonsafe.Sanitize("a\x00b\xff\xfec\xed\xa0\x80")
	require.NoError(t, jsonsafe.CheckText(got))
	require.Equal(t, "a\uFFFDb\uFFFDc\uFFFD", got)
}

func TestTruncate(t *testing.T) {
	t.Parallel()
	require.Equal(t, "short", jsonsafe.Truncate("short", 10))
	long := strings.Repeat("é", 1000) // 2000 bytes
	got := jsonsafe.Truncate(long, 101)
	require.LessOrEqual(t, len(got), 101)
	require.NoError(t, jsonsafe.CheckText(got), "cut at a character boundary")
	require.Contains(t, got, "truncated: 2000 bytes in all")
	require.True(t, strings.HasPrefix(got, "éé"))
	require.Equal(t, "abc", jsonsafe.Truncate("abcdef", 3), "a limit below the note's length cuts without it")
}

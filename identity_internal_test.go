package tasker

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCanonicalNumber(t *testing.T) {
	t.Parallel()
	forms := map[string][]string{
		"1":                      {"1", "1.0", "1.00", "1e0", "1E0", "1e+0", "10e-1", "0.1e1", "100e-2", "0.001e3"},
		"0":                      {"0", "-0", "0.0", "-0.0", "0e0", "0e999999999999999999999", "-0.000e-999999999999999999999"},
		"-1.5":                   {"-1.5", "-1.50", "-15e-1", "-0.15e1", "-150E-2"},
		"100":                    {"100", "1e2", "1E+2", "100.000", "0.1e3"},
		"0.5":                    {"0.5", "5e-1", "0.50", "50e-2"},
		"0.000001":               {"0.000001", "1e-6", "0.0000010"},
		"1e-7":                   {"1e-7", "0.0000001", "10e-8"},
		"1.25e-7":                {"0.000000125", "125e-9"},
		"1e21":                   {"1e21", "10e20", "1000000000000000000000", "1E+21"},
		"100000000000000000000":  {"100000000000000000000", "1e20"},
		"12345678901234567890":   {"12345678901234567890", "1234567890123456789e1", "12345678901234567890.0"},
		"1e9223372036854775808":  {"1e9223372036854775808", "10e9223372036854775807", "0.1e9223372036854775809"},
		"1e-9223372036854775809": {"1e-9223372036854775809", "0.1e-9223372036854775808", "10e-9223372036854775810"},
		"-2.5e1000001":           {"-25e1000000", "-0.25E1000002"},
	}
	for want, lits := range forms {
		for _, lit := range lits {
			require.Equal(t, want, canonicalNumber(lit), "canonical form of %s", lit)
		}
	}

	distinct := [][2]string{
		{"12345678901234567890", "12345678901234567891"},
		{"1", "1.0000000000000000000000001"},
		{"1e400", "1e401"},
		{"1e-400", "1e-401"},
		{"1", "-1"},
		{"0.1", "0.01"},
		{"1e20", "1e21"},
		{"10", "1"},
		{"9007199254740993", "9007199254740992"}, // equal as float64
	}
	for _, p := range distinct {
		require.NotEqual(t, canonicalNumber(p[0]), canonicalNumber(p[1]), "%s and %s", p[0], p[1])
	}

	// The form stays short whatever the exponent.
	require.Equal(t, "1e"+strings.Repeat("9", 30), canonicalNumber("1e"+strings.Repeat("9", 30)))
	require.Equal(t, "1e1000000", canonicalNumber("1"+strings.Repeat("0", 1000000)))
}

func TestCanonicalJSONNumbers(t *testing.T) {
	t.Parallel()
	same := [][2]string{
		{`{"amount":1}`, `{"amount":1.0}`},
		{`{"a":[1,2.50,{"b":-0}]}`, `{ "a" : [ 1e0, 25e-1, {"b": 0.0} ] }`},
		{`{"x":1e1000000,"y":"1.0"}`, `{"y":"1.0","x":10e999999}`},
	}
	for _, p := range same {
		a, err := canonicalJSON([]byte(p[0]))
		require.NoError(t, err)
		b, err := canonicalJSON([]byte(p[1]))
		require.NoError(t, err)
		require.Equal(t, string(a), string(b), "%s and %s", p[0], p[1])
	}
	differ := [][2]string{
		{`{"amount":1}`, `{"amount":"1"}`}, // a string is not a number
		{`{"id":12345678901234567890}`, `{"id":12345678901234567891}`},
		{`{"a":[1,2]}`, `{"a":[2,1]}`},
	}
	for _, p := range differ {
		a, err := canonicalJSON([]byte(p[0]))
		require.NoError(t, err)
		b, err := canonicalJSON([]byte(p[1]))
		require.NoError(t, err)
		require.NotEqual(t, string(a), string(b), "%s and %s", p[0], p[1])
	}
	got, err := canonicalJSON([]byte(`{"b":1.50,"a":[1E2,-0]}`))
	require.NoError(t, err)
	require.Equal(t, `{"a":[100,0],"b":1.5}`, string(got))
}

package tasker

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// requireLimit asserts that err is ParseTemplate's refusal for the given limit, and returns it.
func requireLimit(t *testing.T, err error, which TemplateLimit) *LimitError {
	t.Helper()
	require.ErrorIs(t, err, ErrTemplateTooLarge)
	require.ErrorIs(t, err, ErrInvalidTemplate)
	var le *LimitError
	require.ErrorAs(t, err, &le)
	require.Equal(t, which, le.Limit, "%v", err)
	p := requireProblem(t, err, CodeTemplateTooLarge)
	require.Same(t, le, p.Err)
	return le
}

// aliasBomb is a template of a few hundred bytes whose metadata expands, through levels of
// anchors of nine aliases each, to 9^levels strings (six levels: 531,441).
func aliasBomb(levels int) string {
	nine := func(s string) string { return "[" + strings.TrimSuffix(strings.Repeat(s+",", 9), ",") + "]" }
	lines := []string{"name: bomb", "namespace_name: ns", `x-a: &a ` + nine(`"lol"`)}
	for i := 1; i < levels; i++ {
		lines = append(lines, fmt.Sprintf("x-%c: &%c %s", 'a'+i, 'a'+i, nine(fmt.Sprintf("*%c", 'a'+i-1))))
	}
	lines = append(lines, fmt.Sprintf("metadata: {bomb: *%c}", 'a'+levels-1))
	return yamlLines(append(lines, "steps: [{name: s, handler: {callable: h}}]")...)
}

func TestParseTemplateAliasBomb(t *testing.T) {
	t.Parallel()
	bomb := aliasBomb(6)
	require.Less(t, len(bomb), 500)
	start := time.Now()
	_, err := ParseTemplate([]byte(bomb))
	require.Less(t, time.Since(start), time.Second)
	le := requireLimit(t, err, LimitNodes)
	require.Equal(t, MaxTemplateNodesDefault, le.Max)
	require.Contains(t, err.Error(), "WithMaxTemplateNodes")
	require.Contains(t, err.Error(), "aliases expanded")

	// Three levels (9^3 strings, twice: once in the anchors, once in the metadata) pass, unless
	// the limit is lowered below their count.
	tmpl, err := ParseTemplate([]byte(aliasBomb(3)))
	require.NoError(t, err)
	require.Len(t, tmpl.Metadata["bomb"], 9)
	_, err = ParseTemplate([]byte(aliasBomb(3)), WithMaxTemplateNodes(1000))
	requireLimit(t, err, LimitNodes)
}

func TestParseTemplateDeepNesting(t *testing.T) {
	t.Parallel()
	const deep = 30_000
	tests := map[string]struct {
		yaml string
		line int
	}{
		"flow list":    {withHeader("metadata: {x: " + strings.Repeat("[", deep) + strings.Repeat("]", deep) + "}"), 4},
		"flow mapping": {withHeader("metadata: " + strings.Repeat("{a: ", deep) + "x" + strings.Repeat("}", deep)), 4},
		"block list":   {withHeader("metadata:", "  x:", "    "+strings.Repeat("- ", deep)+"x"), 6},
		"unclosed":     {withHeader("metadata: {x: " + strings.Repeat("[", deep)), 4},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			_, err := ParseTemplate([]byte(tt.yaml))
			require.Less(t, time.Since(start), time.Second)
			le := requireLimit(t, err, LimitDepth)
			require.Equal(t, tt.line, le.Line)
			require.NotContains(t, err.Error(), "alias")
			require.Contains(t, err.Error(), "WithMaxTemplateDepth")
		})
	}
}

func TestParseTemplateDepthCounted(t *testing.T) {
	t.Parallel()
	// Nesting by indentation, which the byte scan does not see, and nesting through aliases,
	// which no scan of the source sees, count as well.
	var b strings.Builder
	b.WriteString(withHeader("steps: [{name: s, handler: {callable: h}}]", "metadata:"))
	for i := range 120 {
		fmt.Fprintf(&b, "%sk:\n", strings.Repeat(" ", 2*(i+1)))
	}
	_, err := ParseTemplate([]byte(b.String()))
	requireLimit(t, err, LimitDepth)
	_, err = ParseTemplate([]byte(b.String()), WithMaxTemplateDepth(200))
	require.NoError(t, err)

	lines := []string{"x-0: &a0 [leaf]"}
	for i := 1; i <= 60; i++ {
		lines = append(lines, fmt.Sprintf("x-%d: &a%d [*a%d, *a%d]", i, i, i-1, i-1))
	}
	y := withHeader(append(lines, "metadata: {deep: *a60}", "steps: [{name: s, handler: {callable: h}}]")...)
	_, err = ParseTemplate([]byte(y), WithMaxTemplateDepth(50), WithMaxTemplateNodes(-1))
	requireLimit(t, err, LimitDepth)
	// 2^61 nodes: counted without expanding them, and refused.
	_, err = ParseTemplate([]byte(y), WithMaxTemplateDepth(-1))
	requireLimit(t, err, LimitNodes)
}

func TestParseTemplateRecursiveAlias(t *testing.T) {
	t.Parallel()
	_, err := ParseTemplate([]byte(withHeader("x-a: &a [1, *a]", "metadata: {a: *a}", "steps: [{name: s, handler: {callable: h}}]")))
	p := requireProblem(t, err, CodeInvalidYAML)
	require.Equal(t, 4, p.Line)
	require.Contains(t, p.Message, "inside its own anchor")
}

func TestParseTemplateInputSize(t *testing.T) {
	t.Parallel()
	y := withHeader("steps: [{name: s, handler: {callable: h}}]", "# "+strings.Repeat("x", MaxTemplateBytesDefault))
	start := time.Now()
	_, err := ParseTemplate([]byte(y))
	require.Less(t, time.Since(start), 100*time.Millisecond)
	le := requireLimit(t, err, LimitBytes)
	require.Equal(t, MaxTemplateBytesDefault, le.Max)
	require.Equal(t, len(y), le.Value)
	require.Contains(t, err.Error(), fmt.Sprint(len(y)))
	require.Contains(t, err.Error(), "WithMaxTemplateBytes")

	_, err = ParseTemplate([]byte(y), WithMaxTemplateBytes(len(y)))
	require.NoError(t, err)
	_, err = ParseTemplate([]byte(withHeader("steps: [{name: s, handler: {callable: h}}]")), WithMaxTemplateBytes(10))
	requireLimit(t, err, LimitBytes)

	path := filepath.Join(t.TempDir(), "big.yaml")
	require.NoError(t, os.WriteFile(path, []byte(y), 0o600))
	_, err = ParseTemplateFile(path)
	le = requireLimit(t, err, LimitBytes)
	require.Equal(t, len(y), le.Value)
	_, err = ParseTemplateFile(path, WithMaxTemplateBytes(-1))
	require.NoError(t, err)
	// A file that never ends is read only up to the limit.
	if _, err := os.Stat("/dev/zero"); err == nil {
		_, err = ParseTemplateFile("/dev/zero")
		le = requireLimit(t, err, LimitBytes)
		require.Equal(t, MaxTemplateBytesDefault+1, le.Value)
	}
}

// largeTemplate writes a template of many steps with an input_schema of nested objects, in the
// style of a generated API schema.
func largeTemplate(steps, props int) string {
	var b strings.Builder
	b.WriteString(withHeader("input_schema:", "  type: object", "  properties:"))
	n := 0
	var object func(indent string, level int)
	object = func(indent string, level int) {
		for i := 0; i < 8 && n < props; i++ {
			n++
			fmt.Fprintf(&b, "%sfield_%d_%d:\n", indent, level, i)
			if level < 10 && i%3 == 0 {
				fmt.Fprintf(&b, "%s  type: object\n%s  description: nested object %d at level %d\n%s  properties:\n", indent, indent, i, level, indent)
				object(indent+"    ", level+1)
				continue
			}
			fmt.Fprintf(&b, "%s  type: string\n%s  description: a field at level %d\n%s  maxLength: 256\n%s  pattern: \"^[a-z0-9_]+$\"\n",
				indent, indent, level, indent, indent)
		}
	}
	for n < props {
		object("    ", 0)
	}
	b.WriteString("steps:\n")
	for i := range steps {
		fmt.Fprintf(&b, "  - name: step_%d\n    handler:\n      callable: handler_%d\n      initialization: {url: \"https://example.com/%d\"}\n", i, i%10, i)
		if i > 0 {
			fmt.Fprintf(&b, "    dependencies: [step_%d]\n", i-1)
		}
		b.WriteString("    retry: {max_attempts: 3, backoff: exponential, backoff_base_ms: 1000}\n    timeout_seconds: 30\n")
	}
	return b.String()
}

func TestParseTemplateLargeTemplateParses(t *testing.T) {
	t.Parallel()
	// About 300 KB and 12,000 nodes, nesting 24 deep (the benchmark parses one twice as large);
	// at 15 to 20 bytes per node, a template of the full 1 MiB written this way stays under the
	// node limit.
	y := largeTemplate(150, 900)
	require.Greater(t, len(y), 250_000)
	tmpl, err := ParseTemplate([]byte(y))
	require.NoError(t, err)
	require.Len(t, tmpl.Steps, 150)
	require.Greater(t, len(tmpl.InputSchema), 50_000)
}

// BenchmarkParseTemplateLimits measures what refusing a hostile template costs next to parsing
// a large legitimate one.
func BenchmarkParseTemplateLimits(b *testing.B) {
	for name, y := range map[string]string{
		"alias_bomb":   aliasBomb(6),
		"deep_flow":    withHeader("metadata: " + strings.Repeat("[", 30_000)),
		"large_650KiB": largeTemplate(300, 2000),
	} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(y)))
			for b.Loop() {
				_, _ = ParseTemplate([]byte(y))
			}
		})
	}
}

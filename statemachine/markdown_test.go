package statemachine_test

import (
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	sm "github.com/tasker-systems/tasker/statemachine"
)

var update = flag.Bool("update", false, "rewrite docs/state-machines.md from MarkdownDoc")

const docPath = "../docs/state-machines.md"

func TestDocUpToDate(t *testing.T) {
	t.Parallel()

	want := sm.MarkdownDoc()
	if *update {
		require.NoError(t, os.WriteFile(docPath, []byte(want), 0o644))
		return
	}
	got, err := os.ReadFile(docPath)
	require.NoError(t, err, "%s is missing; generate it with: go test ./statemachine -run TestDocUpToDate -update", docPath)
	require.Equal(t, want, string(got),
		"%s is out of date with the transition tables; regenerate it with: go test ./statemachine -run TestDocUpToDate -update", docPath)
}

func TestMarkdownDocContents(t *testing.T) {
	t.Parallel()

	doc := sm.MarkdownDoc()
	require.Equal(t, doc, sm.MarkdownDoc())
	require.True(t, strings.HasPrefix(doc, "<!-- Code generated"), "generated marker first")
	require.Contains(t, doc, "# State machines\n")
	require.Contains(t, doc, "```mermaid\n"+sm.TaskMermaid()+"```\n")
	require.Contains(t, doc, "```mermaid\n"+sm.StepMermaid()+"```\n")
	require.Contains(t, doc, "enqueued_as_error_for_orchestration")
	require.Contains(t, doc, "one database transaction")
	require.Contains(t, doc, "`operator_fix`")
	require.Contains(t, doc, "## Terminal states")
	require.Contains(t, doc, "| `blocked_by_failures` | settled, not terminal;")
	require.Contains(t, doc, "| `error` | terminal | not terminal; left by `reset`, `resolve_manually`, `complete_manually`, `cancel` |")
	require.Contains(t, doc, "| `cancelled` | terminal | terminal; does not satisfy dependents |")
	for _, r := range sm.TaskTable() {
		require.Contains(t, doc, "| `"+string(r.From)+"` | `"+string(r.Event)+"` | `"+string(r.To)+"` |")
	}
	for _, r := range sm.StepTable() {
		require.Contains(t, doc, "| `"+string(r.From)+"` | `"+string(r.Event)+"` | `"+string(r.To)+"` |")
	}
}

func TestMermaid(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name     string
		render   func() string
		start    string
		rows     [][3]string
		terminal []string
	}{
		{name: "Task", render: sm.TaskMermaid, start: "pending", rows: taskRows(), terminal: []string{"complete", "error", "cancelled", "resolved_manually"}},
		{name: "Step", render: sm.StepMermaid, start: "pending", rows: stepRows(), terminal: []string{"complete", "cancelled", "resolved_manually"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out := tt.render()
			require.Equal(t, out, tt.render(), "mermaid output must be deterministic")
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			require.Equal(t, "stateDiagram-v2", lines[0])
			require.Equal(t, "    [*] --> "+tt.start, lines[1])

			// Every row appears on the arrow for its (from, to) pair.
			for _, r := range tt.rows {
				prefix := "    " + r[0] + " --> " + r[2] + " : "
				var label string
				for _, l := range lines {
					if strings.HasPrefix(l, prefix) {
						require.Empty(t, label, "two arrows for %s -> %s", r[0], r[2])
						label = strings.TrimPrefix(l, prefix)
					}
				}
				require.Contains(t, strings.Split(label, ", "), r[1], "arrow %s -> %s lacks %s", r[0], r[2], r[1])
			}
			for _, s := range tt.terminal {
				require.Contains(t, lines, "    "+s+" --> [*]")
			}
			require.Equal(t, len(tt.terminal), strings.Count(out, "--> [*]"))
		})
	}
}

func taskRows() [][3]string {
	var out [][3]string
	for _, r := range sm.TaskTable() {
		out = append(out, [3]string{string(r.From), string(r.Event), string(r.To)})
	}
	return out
}

func stepRows() [][3]string {
	var out [][3]string
	for _, r := range sm.StepTable() {
		out = append(out, [3]string{string(r.From), string(r.Event), string(r.To)})
	}
	return out
}

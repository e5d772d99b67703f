package statemachine

import (
	"slices"
	"strings"
)

// TaskMermaid returns the task machine as a Mermaid stateDiagram-v2, generated
// from the table. The output is the same on every call.
func TaskMermaid() string { return taskMachine.mermaid(TaskPending) }

// StepMermaid returns the step machine as a Mermaid stateDiagram-v2, generated
// from the table. The output is the same on every call.
func StepMermaid() string { return stepMachine.mermaid(StepPending) }

// mermaid draws one arrow per (from, to) pair in table order; events that
// share an arrow are joined into one label so the diagram stays readable.
func (m *machine[S, E]) mermaid(start S) string {
	type edge struct {
		from, to S
		events   []string
	}
	var edges []*edge
	for _, r := range m.rows {
		i := slices.IndexFunc(edges, func(e *edge) bool { return e.from == r.from && e.to == r.to })
		if i < 0 {
			edges = append(edges, &edge{from: r.from, to: r.to})
			i = len(edges) - 1
		}
		edges[i].events = append(edges[i].events, string(r.ev))
	}

	var b strings.Builder
	b.WriteString("stateDiagram-v2\n")
	b.WriteString("    [*] --> " + string(start) + "\n")
	for _, e := range edges {
		b.WriteString("    " + string(e.from) + " --> " + string(e.to) + " : " + strings.Join(e.events, ", ") + "\n")
	}
	for _, s := range m.states {
		if m.terminal(s) {
			b.WriteString("    " + string(s) + " --> [*]\n")
		}
	}
	return b.String()
}

// Package diagram draws a DAG of steps as Mermaid flowchart text or Graphviz DOT text: a
// template's steps and their dependencies, or a task's steps coloured by state. It is pure (no
// I/O) and deterministic: the same graph gives the same bytes on every call, whatever the order of
// its nodes and edges, so that pictures can be compared with golden files and diffed in review.
//
// Most users call the root package's Template.Mermaid, Template.DOT, Engine.TaskMermaid and
// Engine.TaskDOT, which build a Graph and render it; a CLI or a web page that has a task's steps
// from elsewhere builds the Graph itself.
//
// Names are never trusted: a node's identifier in the output is derived from its name
// (letters, digits and underscores only, with a prefix and a numeric suffix where two names
// collide), and labels are escaped for each language, so a step called `end`, `a"b` or
// `<script>` draws as itself and cannot break out of its label.
package diagram

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
)

// Shape is how a node is drawn; it follows the step type.
type Shape string

// The shapes, one per step type of tasker's templates.
const (
	// ShapeStandard is a rounded box (standard steps, and any unknown type).
	ShapeStandard Shape = "standard"
	// ShapeDecision is a rhombus (decision points).
	ShapeDecision Shape = "decision"
	// ShapeBatchable is a box with double sides (batchable steps).
	ShapeBatchable Shape = "batchable"
	// ShapeBatchWorker is a parallelogram (a batch worker's blueprint and its numbered copies).
	ShapeBatchWorker Shape = "batch_worker"
	// ShapeConvergence is a stadium (deferred convergence steps).
	ShapeConvergence Shape = "deferred_convergence"
)

// Status is the colour a node is drawn in: where its step stands. The zero value draws the node
// uncoloured, as in a template's picture.
type Status string

// The statuses of a task's steps.
const (
	// StatusNone: no colour (a template's step).
	StatusNone Status = ""
	// StatusPending: not reached yet (pending).
	StatusPending Status = "pending"
	// StatusInProgress: ready or running (enqueued, in_progress, enqueued_for_orchestration).
	StatusInProgress Status = "in_progress"
	// StatusRetrying: failed and waiting for its next attempt (waiting_for_retry).
	StatusRetrying Status = "retrying"
	// StatusError: failed for good, waiting for an operator (error).
	StatusError Status = "error"
	// StatusComplete: done (complete).
	StatusComplete Status = "complete"
	// StatusResolved: settled by an operator (resolved_manually).
	StatusResolved Status = "resolved"
	// StatusCancelled: cancelled with its task.
	StatusCancelled Status = "cancelled"
)

// style is a status's colours, the same in both languages.
type style struct{ fill, stroke, font string }

// statuses lists the statuses in the order their styles are written.
var statuses = []Status{StatusPending, StatusInProgress, StatusRetrying, StatusError, StatusComplete, StatusResolved, StatusCancelled}

var styles = map[Status]style{
	StatusPending:    {fill: "#f4f4f5", stroke: "#a1a1aa", font: "#3f3f46"},
	StatusInProgress: {fill: "#dbeafe", stroke: "#2563eb", font: "#1e3a8a"},
	StatusRetrying:   {fill: "#fef3c7", stroke: "#d97706", font: "#78350f"},
	StatusError:      {fill: "#fee2e2", stroke: "#dc2626", font: "#7f1d1d"},
	StatusComplete:   {fill: "#dcfce7", stroke: "#16a34a", font: "#14532d"},
	StatusResolved:   {fill: "#e0e7ff", stroke: "#4f46e5", font: "#312e81"},
	StatusCancelled:  {fill: "#e5e7eb", stroke: "#6b7280", font: "#374151"},
}

// Node is one step.
type Node struct {
	// Name identifies the node within its graph (a step name); edges refer to it. Nodes with the
	// same name are drawn once, with the first one's settings.
	Name string
	// Detail, when not empty, is a second line under the name (a state and its attempts).
	Detail string
	// Shape is how the node is drawn; "" means ShapeStandard.
	Shape Shape
	// Status is its colour; StatusNone draws it plain.
	Status Status
}

// Edge is a dependency: To runs after From.
type Edge struct {
	From, To string
}

// Graph is what is drawn.
type Graph struct {
	// Title names the picture (a template key, a task ID); it is written as a comment in Mermaid
	// and as the graph's name in DOT.
	Title string
	// Nodes and Edges are the steps and their dependencies, in any order. An edge whose ends are
	// not both among the nodes is left out, as is a repeated edge.
	Nodes []Node
	Edges []Edge
}

// prepared is a graph in the order it is drawn, with identifiers assigned.
type prepared struct {
	nodes []Node
	ids   map[string]string // node name -> identifier
	edges []Edge
	used  []Status // the statuses that occur, in the order of statuses
}

// prepare sorts the graph by name, drops repeated nodes and dangling or repeated edges, and
// gives each node a safe identifier.
func prepare(g Graph) prepared {
	nodes := slices.Clone(g.Nodes)
	slices.SortStableFunc(nodes, func(a, b Node) int { return cmp.Compare(a.Name, b.Name) })
	nodes = slices.CompactFunc(nodes, func(a, b Node) bool { return a.Name == b.Name })
	p := prepared{nodes: nodes, ids: make(map[string]string, len(nodes))}
	taken := map[string]bool{}
	seen := map[Status]bool{}
	for _, n := range nodes {
		id := "s_" + sanitize(n.Name)
		if taken[id] {
			for i := 2; ; i++ {
				if c := id + "_" + strconv.Itoa(i); !taken[c] {
					id = c
					break
				}
			}
		}
		taken[id] = true
		p.ids[n.Name] = id
		seen[n.Status] = true
	}
	for _, s := range statuses {
		if seen[s] {
			p.used = append(p.used, s)
		}
	}
	edges := make([]Edge, 0, len(g.Edges))
	for _, e := range g.Edges {
		_, from := p.ids[e.From]
		_, to := p.ids[e.To]
		if from && to {
			edges = append(edges, e)
		}
	}
	slices.SortFunc(edges, func(a, b Edge) int { return cmp.Or(cmp.Compare(a.From, b.From), cmp.Compare(a.To, b.To)) })
	p.edges = slices.Compact(edges)
	return p
}

// sanitize keeps ASCII letters, digits and underscores of a name and replaces every other byte
// run with one underscore, so that the identifier is valid in both languages.
func sanitize(name string) string {
	var b strings.Builder
	under := false
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' {
			b.WriteByte(c)
			under = false
			continue
		}
		if !under {
			b.WriteByte('_')
			under = true
		}
	}
	return b.String()
}

// oneLine replaces line breaks and other control characters by spaces: a comment or a title must
// stay on its line.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
}

package dag

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// n is shorthand for a Node in table tests.
func n(name string, deps ...string) Node { return Node{Name: name, Deps: deps} }

// requireValidTopo checks that order is a permutation of the graph's steps
// with every edge pointing forward.
func requireValidTopo(t *testing.T, g *Graph, order []int) {
	t.Helper()
	require.Len(t, order, g.Len())
	pos := make([]int, g.Len())
	for i := range pos {
		pos[i] = -1
	}
	for k, v := range order {
		require.Equal(t, -1, pos[v], "step %d appears twice", v)
		pos[v] = k
	}
	for v := range g.Len() {
		for _, p := range g.Parents(v) {
			require.Less(t, pos[p], pos[v], "edge %s -> %s goes backward", g.Name(p), g.Name(v))
		}
	}
}

// requireRealCycle checks that path is a cycle of dependency edges in nodes.
func requireRealCycle(t *testing.T, nodes []Node, path []string) {
	t.Helper()
	require.GreaterOrEqual(t, len(path), 3, "a cycle without self loops needs two steps")
	require.Equal(t, path[0], path[len(path)-1], "path must close")
	edges := edgeSet(nodes)
	for k := 0; k+1 < len(path); k++ {
		require.True(t, edges[[2]string{path[k], path[k+1]}], "%q does not depend on %q", path[k], path[k+1])
	}
	inner := map[string]bool{}
	for _, s := range path[:len(path)-1] {
		require.False(t, inner[s], "cycle repeats %q", s)
		inner[s] = true
	}
}

// edgeSet returns the (dependent, dependency) name pairs listed in nodes.
func edgeSet(nodes []Node) map[[2]string]bool {
	edges := map[[2]string]bool{}
	for _, nd := range nodes {
		for _, d := range nd.Deps {
			edges[[2]string{nd.Name, d}] = true
		}
	}
	return edges
}

func buildErr(t *testing.T, nodes []Node) *Error {
	t.Helper()
	g, err := Build(nodes)
	require.Error(t, err)
	require.Nil(t, g)
	var de *Error
	require.True(t, errors.As(err, &de))
	return de
}

func codes(e *Error) []Code {
	out := make([]Code, len(e.Problems))
	for i, p := range e.Problems {
		out[i] = p.Code
	}
	return out
}

func TestBuildProblems(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name  string
		nodes []Node
		want  []Problem // Path is checked separately for cycles
	}{
		{
			name:  "empty name",
			nodes: []Node{n("a"), n("")},
			want:  []Problem{{Code: CodeEmptyStepName, Index: 1}},
		},
		{
			name:  "duplicate name reported per extra occurrence",
			nodes: []Node{n("a"), n("b"), n("a"), n("a")},
			want: []Problem{
				{Code: CodeDuplicateStepName, Step: "a", Index: 2},
				{Code: CodeDuplicateStepName, Step: "a", Index: 3},
			},
		},
		{
			name:  "missing dependency",
			nodes: []Node{n("a"), n("b", "a", "ghost")},
			want:  []Problem{{Code: CodeMissingDepRef, Step: "b", Index: 1, Dep: "ghost"}},
		},
		{
			name:  "empty dependency name is missing",
			nodes: []Node{n("a", "")},
			want:  []Problem{{Code: CodeMissingDepRef, Step: "a", Dep: ""}},
		},
		{
			name:  "self dependency is not also a cycle",
			nodes: []Node{n("a", "a")},
			want:  []Problem{{Code: CodeSelfDependency, Step: "a", Dep: "a"}},
		},
		{
			name:  "duplicate dependency",
			nodes: []Node{n("a"), n("b", "a", "a", "a")},
			want: []Problem{
				{Code: CodeDuplicateDep, Step: "b", Index: 1, Dep: "a"},
				{Code: CodeDuplicateDep, Step: "b", Index: 1, Dep: "a"},
			},
		},
		{
			name:  "two-step cycle",
			nodes: []Node{n("a", "b"), n("b", "a")},
			want:  []Problem{{Code: CodeCycleDetected, Step: "a"}},
		},
		{
			name:  "three-step cycle behind a good prefix",
			nodes: []Node{n("root"), n("a", "root", "c"), n("b", "a"), n("c", "b"), n("tail", "c")},
			want:  []Problem{{Code: CodeCycleDetected, Step: "a", Index: 1}},
		},
		{
			name: "two separate cycles reported once each",
			nodes: []Node{
				n("a", "b"), n("b", "a"),
				n("x", "z"), n("y", "x"), n("z", "y"),
			},
			want: []Problem{
				{Code: CodeCycleDetected, Step: "a"},
				{Code: CodeCycleDetected, Step: "x", Index: 2},
			},
		},
		{
			name: "one component with several cycles reported once",
			nodes: []Node{
				n("a", "b", "c"), n("b", "a"), n("c", "a"),
			},
			want: []Problem{{Code: CodeCycleDetected, Step: "a"}},
		},
		{
			name: "everything at once, cycle still found",
			nodes: []Node{
				n("a", "c", "ghost"),
				n(""),
				n("b", "a", "b"),
				n("c", "b", "b"),
				n("a"),
			},
			want: []Problem{
				{Code: CodeEmptyStepName, Index: 1},
				{Code: CodeDuplicateStepName, Step: "a", Index: 4},
				{Code: CodeMissingDepRef, Step: "a", Dep: "ghost"},
				{Code: CodeSelfDependency, Step: "b", Index: 2, Dep: "b"},
				{Code: CodeDuplicateDep, Step: "c", Index: 3, Dep: "b"},
				{Code: CodeCycleDetected, Step: "a"},
			},
		},
		{
			name: "edge to a duplicate resolves to the first occurrence",
			// The second "a" depends on b, but b's dependency means the
			// first "a", which has none: no cycle.
			nodes: []Node{n("a"), n("b", "a"), n("a", "b")},
			want:  []Problem{{Code: CodeDuplicateStepName, Step: "a", Index: 2}},
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := buildErr(t, tt.nodes)
			require.Len(t, e.Problems, len(tt.want), "got:\n%s", e)
			for i, want := range tt.want {
				got := e.Problems[i]
				require.Equal(t, want.Code, got.Code, "problem %d", i)
				require.Equal(t, want.Step, got.Step, "problem %d", i)
				require.Equal(t, want.Index, got.Index, "problem %d", i)
				require.Equal(t, want.Dep, got.Dep, "problem %d", i)
				require.True(t, e.Has(want.Code))
				require.NotEmpty(t, got.Message)
				if got.Code == CodeCycleDetected {
					requireRealCycle(t, tt.nodes, got.Path)
					require.Equal(t, got.Step, got.Path[0])
					require.Equal(t, "cycle "+strings.Join(got.Path, " -> "), got.Message)
				} else {
					require.Nil(t, got.Path)
				}
				if got.Code == CodeMissingDepRef {
					require.Contains(t, got.Message, fmt.Sprintf("%q", got.Dep))
				}
			}
			lines := strings.Split(e.Error(), "\n")
			require.Len(t, lines, len(e.Problems))
			for i, line := range lines {
				require.True(t, strings.HasPrefix(line, string(e.Problems[i].Code)+": "), line)
			}
		})
	}
}

func TestErrorFormat(t *testing.T) {
	t.Parallel()

	e := buildErr(t, []Node{n("a", "b"), n("b", "c"), n("c", "a"), n("")})
	require.Equal(t,
		"EMPTY_STEP_NAME: step at index 3: step name is empty\n"+
			`CYCLE_DETECTED: step "a": cycle a -> b -> c -> a`,
		e.Error())
	require.Equal(t, []string{"a", "b", "c", "a"}, e.Problems[1].Path)
	require.True(t, e.Has(CodeCycleDetected))
	require.False(t, e.Has(CodeMissingDepRef))
	require.Equal(t, []Code{CodeEmptyStepName, CodeCycleDetected}, codes(e))
}

func TestCyclePathIsShortestThroughFirstStep(t *testing.T) {
	t.Parallel()

	// a -> b -> c -> d -> a is a cycle, but a -> d -> a is shorter.
	nodes := []Node{n("a", "b", "d"), n("b", "c"), n("c", "d"), n("d", "a")}
	e := buildErr(t, nodes)
	require.Len(t, e.Problems, 1)
	require.Equal(t, []string{"a", "d", "a"}, e.Problems[0].Path)
}

func TestLongChains(t *testing.T) {
	t.Parallel()

	const size = 100_000
	chain := func(closed bool) []Node {
		nodes := make([]Node, size)
		for i := range nodes {
			nodes[i].Name = fmt.Sprintf("s%d", i)
			if i > 0 {
				nodes[i].Deps = []string{nodes[i-1].Name}
			}
		}
		if closed {
			nodes[0].Deps = []string{nodes[size-1].Name}
		}
		return nodes
	}

	t.Run("valid", func(t *testing.T) {
		t.Parallel()
		g, err := Build(chain(false))
		require.NoError(t, err)
		require.Len(t, g.Levels(), size)
		require.Len(t, g.Ancestors(size-1), size-1)
		require.Len(t, g.Descendants(0), size-1)
		requireValidTopo(t, g, g.TopoOrder())
	})
	t.Run("one big cycle", func(t *testing.T) {
		t.Parallel()
		nodes := chain(true)
		e := buildErr(t, nodes)
		require.Len(t, e.Problems, 1)
		require.Len(t, e.Problems[0].Path, size+1)
		requireRealCycle(t, nodes, e.Problems[0].Path)
	})
}

func TestShapes(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name        string
		nodes       []Node
		roots       []int
		leaves      []int
		topo        []int
		levels      [][]int
		ancestors   map[int][]int
		descendants map[int][]int
	}{
		{
			name:   "empty",
			nodes:  nil,
			topo:   []int{},
			levels: [][]int{},
		},
		{
			name:        "single",
			nodes:       []Node{n("a")},
			roots:       []int{0},
			leaves:      []int{0},
			topo:        []int{0},
			levels:      [][]int{{0}},
			ancestors:   map[int][]int{0: nil},
			descendants: map[int][]int{0: nil},
		},
		{
			name:        "chain listed backwards",
			nodes:       []Node{n("c", "b"), n("b", "a"), n("a")},
			roots:       []int{2},
			leaves:      []int{0},
			topo:        []int{2, 1, 0},
			levels:      [][]int{{2}, {1}, {0}},
			ancestors:   map[int][]int{0: {1, 2}, 1: {2}, 2: nil},
			descendants: map[int][]int{0: nil, 1: {0}, 2: {0, 1}},
		},
		{
			name:        "diamond",
			nodes:       []Node{n("top"), n("left", "top"), n("right", "top"), n("bottom", "right", "left")},
			roots:       []int{0},
			leaves:      []int{3},
			topo:        []int{0, 1, 2, 3},
			levels:      [][]int{{0}, {1, 2}, {3}},
			ancestors:   map[int][]int{3: {0, 1, 2}, 1: {0}},
			descendants: map[int][]int{0: {1, 2, 3}, 2: {3}},
		},
		{
			name: "tree",
			nodes: []Node{
				n("root"),
				n("a", "root"), n("b", "root"),
				n("a1", "a"), n("a2", "a"), n("b1", "b"),
			},
			roots:       []int{0},
			leaves:      []int{3, 4, 5},
			topo:        []int{0, 1, 2, 3, 4, 5},
			levels:      [][]int{{0}, {1, 2}, {3, 4, 5}},
			ancestors:   map[int][]int{4: {0, 1}, 5: {0, 2}},
			descendants: map[int][]int{0: {1, 2, 3, 4, 5}, 1: {3, 4}, 2: {5}},
		},
		{
			name: "disconnected components, longest path decides level",
			nodes: []Node{
				n("x2", "x1"), n("y"), n("x1"), n("z", "x1", "x2"), n("w", "y"),
			},
			roots:       []int{1, 2},
			leaves:      []int{3, 4},
			topo:        []int{1, 2, 0, 3, 4},
			levels:      [][]int{{1, 2}, {0, 4}, {3}},
			ancestors:   map[int][]int{3: {0, 2}, 4: {1}},
			descendants: map[int][]int{2: {0, 3}, 1: {4}},
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g, err := Build(tt.nodes)
			require.NoError(t, err)
			require.Equal(t, len(tt.nodes), g.Len())
			require.Equal(t, tt.roots, g.Roots())
			require.Equal(t, tt.leaves, g.Leaves())
			require.Equal(t, tt.topo, g.TopoOrder())
			requireValidTopo(t, g, g.TopoOrder())
			require.Equal(t, tt.levels, g.Levels())
			for i, want := range tt.ancestors {
				require.Equal(t, want, g.Ancestors(i), "ancestors of %d", i)
				names, err := g.AncestorNames(g.Name(i))
				require.NoError(t, err)
				require.Equal(t, g.Names(want), names)
			}
			for i, want := range tt.descendants {
				require.Equal(t, want, g.Descendants(i), "descendants of %d", i)
				names, err := g.DescendantNames(g.Name(i))
				require.NoError(t, err)
				require.Equal(t, g.Names(want), names)
			}
			for i, nd := range tt.nodes {
				require.Equal(t, nd.Name, g.Name(i))
				idx, ok := g.Index(nd.Name)
				require.True(t, ok)
				require.Equal(t, i, idx)
			}
		})
	}
}

func TestParentsAndChildren(t *testing.T) {
	t.Parallel()

	g, err := Build([]Node{n("a"), n("b"), n("c", "b", "a"), n("d", "a")})
	require.NoError(t, err)
	require.Equal(t, []int{1, 0}, g.Parents(2), "parents keep input order")
	require.Equal(t, []int{2, 3}, g.Children(0), "children ascend")
	require.Empty(t, g.Parents(0))
	require.Empty(t, g.Children(3))
}

func TestIndexUnknown(t *testing.T) {
	t.Parallel()

	g, err := Build([]Node{n("a")})
	require.NoError(t, err)
	_, ok := g.Index("nope")
	require.False(t, ok)
	_, ok = g.Index("")
	require.False(t, ok)
	_, err = g.AncestorNames("nope")
	require.ErrorIs(t, err, ErrUnknownStep)
	require.ErrorContains(t, err, `"nope"`)
	_, err = g.DescendantNames("nope")
	require.ErrorIs(t, err, ErrUnknownStep)
}

func TestGraphIsImmutable(t *testing.T) {
	t.Parallel()

	nodes := []Node{n("a"), n("b", "a"), n("c", "b")}
	g, err := Build(nodes)
	require.NoError(t, err)

	// Mutating the input or any returned slice must not change the graph.
	nodes[1].Deps[0] = "c"
	nodes[0].Name = "zzz"
	g.Parents(1)[0] = 2
	g.Children(0)[0] = 2
	g.TopoOrder()[0] = 2
	g.Levels()[0][0] = 2
	g.Ancestors(2)[0] = 2

	require.Equal(t, "a", g.Name(0))
	require.Equal(t, []int{0}, g.Parents(1))
	require.Equal(t, []int{1}, g.Children(0))
	require.Equal(t, []int{0, 1, 2}, g.TopoOrder())
	require.Equal(t, [][]int{{0}, {1}, {2}}, g.Levels())
	require.Equal(t, []int{0, 1}, g.Ancestors(2))
}

func TestTopoOrderKeepsInputOrderWhenPossible(t *testing.T) {
	t.Parallel()

	// After "c" the ready set is {d, b}; d has the smaller index although
	// b became ready first, so FIFO Kahn would give 0 1 3 4 2.
	g, err := Build([]Node{n("e"), n("a"), n("d", "c"), n("c", "a"), n("b", "a")})
	require.NoError(t, err)
	require.Equal(t, []int{0, 1, 3, 2, 4}, g.TopoOrder())
}

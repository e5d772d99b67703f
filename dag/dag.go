// Package dag validates the dependency graph of a workflow's steps and
// answers structural questions about it: topological order, levels,
// roots, leaves, ancestors and descendants.
//
// The package is pure: no I/O, no goroutines, standard library only. A
// Graph is immutable once built, so it is safe for concurrent use. Steps are
// identified by their position in the slice given to Build; every slice a
// Graph returns is a fresh copy the caller may modify.
//
// All work is linear in steps plus edges, except the topological order,
// which costs an extra log factor in the number of steps because ties are
// broken by input position (so an input that is already in dependency order
// keeps its order). Nothing recurses, so chains of any length are fine.
package dag

import (
	"fmt"
)

// Node is one step as the graph sees it.
type Node struct {
	// Name identifies the step; it must be non-empty and unique.
	Name string
	// Deps names the steps that must finish before this one.
	Deps []string
}

// Graph is an immutable validated DAG; indices are positions in the input
// slice given to Build.
type Graph struct {
	names    []string
	index    map[string]int
	parents  [][]int
	children [][]int
	topo     []int
	levels   [][]int
}

// Build validates nodes and returns the graph they describe. On failure it
// returns a nil Graph and an *Error holding every problem found.
func Build(nodes []Node) (*Graph, error) {
	n := len(nodes)
	var problems []Problem

	// Names: the first occurrence of a name wins, so later references and
	// Index resolve to it.
	index := make(map[string]int, n)
	for i, nd := range nodes {
		if nd.Name == "" {
			problems = append(problems, Problem{
				Code: CodeEmptyStepName, Index: i,
				Message: "step name is empty",
			})
			continue
		}
		if first, ok := index[nd.Name]; ok {
			problems = append(problems, Problem{
				Code: CodeDuplicateStepName, Step: nd.Name, Index: i,
				Message: fmt.Sprintf("duplicate step name (first defined at index %d)", first),
			})
			continue
		}
		index[nd.Name] = i
	}

	// Dependencies: keep only the good edges so cycle detection can still
	// run when other problems exist. All parent lists share one backing
	// array to keep allocations independent of the step count.
	total := 0
	for _, nd := range nodes {
		total += len(nd.Deps)
	}
	flat := make([]int, 0, total)
	parents := make([][]int, n)
	var seen map[string]struct{} // only for long dependency lists
	for i, nd := range nodes {
		start := len(flat)
		if len(nd.Deps) > shortDeps {
			if seen == nil {
				seen = make(map[string]struct{})
			}
			clear(seen)
		}
		for k, d := range nd.Deps {
			if repeatedDep(nd.Deps, k, seen) {
				problems = append(problems, Problem{
					Code: CodeDuplicateDep, Step: nd.Name, Index: i, Dep: d,
					Message: fmt.Sprintf("lists dependency %q more than once", d),
				})
				continue
			}
			if d == nd.Name && d != "" {
				problems = append(problems, Problem{
					Code: CodeSelfDependency, Step: nd.Name, Index: i, Dep: d,
					Message: "depends on itself",
				})
				continue
			}
			j, ok := index[d]
			if !ok {
				problems = append(problems, Problem{
					Code: CodeMissingDepRef, Step: nd.Name, Index: i, Dep: d,
					Message: fmt.Sprintf("depends on unknown step %q", d),
				})
				continue
			}
			flat = append(flat, j)
		}
		if len(flat) > start {
			parents[i] = flat[start:len(flat):len(flat)]
		}
	}

	problems = append(problems, findCycles(nodes, parents)...)
	if len(problems) > 0 {
		return nil, &Error{Problems: problems}
	}

	g := &Graph{
		names:    make([]string, n),
		index:    index,
		parents:  parents,
		children: childrenOf(parents),
	}
	for i, nd := range nodes {
		g.names[i] = nd.Name
	}
	g.topo = topoOrder(g.parents, g.children)
	g.levels = levelsOf(g.topo, g.parents)
	return g, nil
}

// shortDeps is the longest dependency list checked for repeats by a plain
// scan; longer lists use a map so the check stays linear.
const shortDeps = 16

// repeatedDep reports whether deps[k] already appeared in deps[:k]. For long
// lists it records deps[k] in seen, which the caller clears per step.
func repeatedDep(deps []string, k int, seen map[string]struct{}) bool {
	d := deps[k]
	if len(deps) > shortDeps {
		if _, dup := seen[d]; dup {
			return true
		}
		seen[d] = struct{}{}
		return false
	}
	for _, e := range deps[:k] {
		if e == d {
			return true
		}
	}
	return false
}

// childrenOf inverts the parent lists into one shared backing array; each
// child list comes out in ascending index order because dependents are
// visited in order.
func childrenOf(parents [][]int) [][]int {
	// start[p] is where p's children begin in flat; start[len] is the total.
	start := make([]int, len(parents)+1)
	for _, ps := range parents {
		for _, p := range ps {
			start[p+1]++
		}
	}
	for p := range parents {
		start[p+1] += start[p]
	}
	flat := make([]int, start[len(parents)])
	fill := append([]int(nil), start[:len(parents)]...)
	for i, ps := range parents {
		for _, p := range ps {
			flat[fill[p]] = i
			fill[p]++
		}
	}
	children := make([][]int, len(parents))
	for p := range children {
		if lo, hi := start[p], start[p+1]; hi > lo {
			children[p] = flat[lo:hi:hi]
		}
	}
	return children
}

// Len returns the number of steps.
func (g *Graph) Len() int { return len(g.names) }

// Name returns the name of step i. It panics if i is out of range.
func (g *Graph) Name(i int) string { return g.names[i] }

// Names returns the names of the given steps, in the same order.
func (g *Graph) Names(idx []int) []string {
	out := make([]string, len(idx))
	for k, i := range idx {
		out[k] = g.names[i]
	}
	return out
}

// Index returns the position of the step with the given name.
func (g *Graph) Index(name string) (int, bool) {
	i, ok := g.index[name]
	return i, ok
}

// Parents returns the direct dependencies of step i, in the order they were
// listed. It panics if i is out of range.
func (g *Graph) Parents(i int) []int { return clone(g.parents[i]) }

// Children returns the direct dependents of step i, in ascending index
// order. It panics if i is out of range.
func (g *Graph) Children(i int) []int { return clone(g.children[i]) }

// Roots returns the steps with no dependencies, in ascending index order.
func (g *Graph) Roots() []int {
	var out []int
	for i, ps := range g.parents {
		if len(ps) == 0 {
			out = append(out, i)
		}
	}
	return out
}

// Leaves returns the steps that no step depends on, in ascending index
// order.
func (g *Graph) Leaves() []int {
	var out []int
	for i, cs := range g.children {
		if len(cs) == 0 {
			out = append(out, i)
		}
	}
	return out
}

// TopoOrder returns every step once, each after all of its dependencies.
// The order is deterministic: Kahn's algorithm, always taking the ready step
// with the smallest index, so an input already in dependency order comes
// back unchanged.
func (g *Graph) TopoOrder() []int { return clone(g.topo) }

// Levels groups the steps by depth: level 0 holds the roots and level k the
// steps whose longest dependency path from a root has k edges. Steps within
// a level are in ascending index order. All steps of one level can run in
// parallel once the levels before it are done.
func (g *Graph) Levels() [][]int {
	out := make([][]int, len(g.levels))
	for k, l := range g.levels {
		out[k] = clone(l)
	}
	return out
}

// Ancestors returns every step that step i depends on, directly or
// transitively, in ascending index order. It panics if i is out of range.
func (g *Graph) Ancestors(i int) []int { return reach(g.parents, i) }

// Descendants returns every step that depends on step i, directly or
// transitively, in ascending index order. It panics if i is out of range.
func (g *Graph) Descendants(i int) []int { return reach(g.children, i) }

// AncestorNames is Ancestors by name, returning names in ascending index
// order. An unknown name yields an error wrapping ErrUnknownStep.
func (g *Graph) AncestorNames(name string) ([]string, error) {
	i, ok := g.index[name]
	if !ok {
		return nil, fmt.Errorf("ancestors of %q: %w", name, ErrUnknownStep)
	}
	return g.Names(g.Ancestors(i)), nil
}

// DescendantNames is Descendants by name, returning names in ascending index
// order. An unknown name yields an error wrapping ErrUnknownStep.
func (g *Graph) DescendantNames(name string) ([]string, error) {
	i, ok := g.index[name]
	if !ok {
		return nil, fmt.Errorf("descendants of %q: %w", name, ErrUnknownStep)
	}
	return g.Names(g.Descendants(i)), nil
}

func clone(s []int) []int {
	if s == nil {
		return nil
	}
	return append(make([]int, 0, len(s)), s...)
}

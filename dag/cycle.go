package dag

import (
	"strings"
)

// findCycles reports one CodeCycleDetected problem per strongly connected
// component that contains a cycle. parents holds only the valid edges (no
// self loops), so a component has a cycle exactly when it has more than one
// step. Components are reported in order of their smallest step index, and
// each path starts at that step, which keeps the output deterministic.
func findCycles(nodes []Node, parents [][]int) []Problem {
	comp, ncomp := tarjanSCC(parents)

	size := make([]int, ncomp)
	first := make([]int, ncomp)
	for i := range first {
		first[i] = -1
	}
	for v, c := range comp {
		size[c]++
		if first[c] < 0 {
			first[c] = v
		}
	}

	var problems []Problem
	var pred []int // reused across components; -1 means unvisited
	for v := range nodes {
		c := comp[v]
		if size[c] < 2 || first[c] != v {
			continue
		}
		if pred == nil {
			pred = make([]int, len(nodes))
			for i := range pred {
				pred[i] = -1
			}
		}
		idx := cyclePath(v, c, comp, parents, pred)
		path := make([]string, len(idx))
		for k, i := range idx {
			path[k] = nodes[i].Name
		}
		problems = append(problems, Problem{
			Code:    CodeCycleDetected,
			Step:    nodes[v].Name,
			Index:   v,
			Message: "cycle " + strings.Join(path, " -> "),
			Path:    path,
		})
	}
	return problems
}

// cyclePath returns a shortest cycle through start inside component c, as
// indices with start repeated at the end, following dependency edges. It
// runs a breadth-first search from start restricted to the component; every
// node of a strongly connected component can reach start, so the search
// finds an edge back to it. pred is scratch space, all -1 on entry and on
// return.
func cyclePath(start, c int, comp []int, parents [][]int, pred []int) []int {
	queue := []int{start}
	pred[start] = start
	last := -1
	for h := 0; h < len(queue) && last < 0; h++ {
		u := queue[h]
		for _, w := range parents[u] {
			if comp[w] != c {
				continue
			}
			if w == start {
				last = u
				break
			}
			if pred[w] < 0 {
				pred[w] = u
				queue = append(queue, w)
			}
		}
	}
	// Walk back from the last node to start, then reverse.
	var rev []int
	for u := last; u != start; u = pred[u] {
		rev = append(rev, u)
	}
	path := make([]int, 0, len(rev)+2)
	path = append(path, start)
	for k := len(rev) - 1; k >= 0; k-- {
		path = append(path, rev[k])
	}
	path = append(path, start)
	for _, u := range queue {
		pred[u] = -1
	}
	return path
}

// tarjanSCC labels each node with its strongly connected component, using
// Tarjan's algorithm with an explicit call stack so that long chains cannot
// overflow the goroutine stack.
func tarjanSCC(adj [][]int) (comp []int, ncomp int) {
	n := len(adj)
	order := make([]int, n) // discovery number + 1; 0 = unvisited
	low := make([]int, n)
	onStack := make([]bool, n)
	comp = make([]int, n)
	var stack []int
	type frame struct{ v, next int }
	var calls []frame
	counter := 0

	visit := func(v int) {
		counter++
		order[v], low[v] = counter, counter
		stack = append(stack, v)
		onStack[v] = true
		calls = append(calls, frame{v: v})
	}

	for s := range n {
		if order[s] != 0 {
			continue
		}
		visit(s)
		for len(calls) > 0 {
			f := &calls[len(calls)-1]
			v := f.v
			if f.next < len(adj[v]) {
				w := adj[v][f.next]
				f.next++
				if order[w] == 0 {
					visit(w) // f may be invalid from here on
				} else if onStack[w] && order[w] < low[v] {
					low[v] = order[w]
				}
				continue
			}
			calls = calls[:len(calls)-1]
			if len(calls) > 0 {
				if u := calls[len(calls)-1].v; low[v] < low[u] {
					low[u] = low[v]
				}
			}
			if low[v] == order[v] {
				for {
					w := stack[len(stack)-1]
					stack = stack[:len(stack)-1]
					onStack[w] = false
					comp[w] = ncomp
					if w == v {
						break
					}
				}
				ncomp++
			}
		}
	}
	return comp, ncomp
}

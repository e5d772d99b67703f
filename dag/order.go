package dag

// topoOrder runs Kahn's algorithm, taking the ready step with the smallest
// index each time. The heap costs a log factor over plain FIFO Kahn; in
// exchange the order is stable: it matches input order wherever the
// dependencies allow, which is what a user reading the template expects.
func topoOrder(parents, children [][]int) []int {
	n := len(parents)
	indeg := make([]int, n)
	ready := make(intHeap, 0, n)
	for i, ps := range parents {
		indeg[i] = len(ps)
		if indeg[i] == 0 {
			ready = append(ready, i) // ascending, so already a valid heap
		}
	}
	order := make([]int, 0, n)
	for len(ready) > 0 {
		v := ready.pop()
		order = append(order, v)
		for _, c := range children[v] {
			indeg[c]--
			if indeg[c] == 0 {
				ready.push(c)
			}
		}
	}
	return order
}

// levelsOf computes longest-path depths in one pass over a topological
// order: a step's level is one more than its deepest parent.
func levelsOf(topo []int, parents [][]int) [][]int {
	level := make([]int, len(parents))
	depth := 0
	for _, v := range topo {
		l := 0
		for _, p := range parents[v] {
			if level[p]+1 > l {
				l = level[p] + 1
			}
		}
		level[v] = l
		if l+1 > depth {
			depth = l + 1
		}
	}
	counts := make([]int, depth)
	for _, l := range level {
		counts[l]++
	}
	// All levels share one backing array, one slot per step.
	flat := make([]int, len(level))
	levels := make([][]int, depth)
	off := 0
	for k, c := range counts {
		levels[k] = flat[off : off : off+c]
		off += c
	}
	for v, l := range level { // ascending v, so each level comes out sorted
		levels[l] = append(levels[l], v)
	}
	return levels
}

// reach returns the nodes reachable from start along adj, excluding start,
// in ascending order. Collecting through a mark slice instead of sorting
// keeps a call linear in steps plus edges.
func reach(adj [][]int, start int) []int {
	marked := make([]bool, len(adj))
	stack := append([]int(nil), adj[start]...)
	found := 0
	for len(stack) > 0 {
		v := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if marked[v] {
			continue
		}
		marked[v] = true
		found++
		stack = append(stack, adj[v]...)
	}
	if found == 0 {
		return nil
	}
	out := make([]int, 0, found)
	for v, m := range marked {
		if m {
			out = append(out, v)
		}
	}
	return out
}

// intHeap is a binary min-heap of step indices. It is hand-rolled rather
// than built on container/heap to avoid boxing every index in an interface.
type intHeap []int

func (h *intHeap) push(x int) {
	s := append(*h, x)
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if s[p] <= s[i] {
			break
		}
		s[p], s[i] = s[i], s[p]
		i = p
	}
	*h = s
}

func (h *intHeap) pop() int {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s = s[:last]
	for i := 0; ; {
		m, l, r := i, 2*i+1, 2*i+2
		if l < len(s) && s[l] < s[m] {
			m = l
		}
		if r < len(s) && s[r] < s[m] {
			m = r
		}
		if m == i {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}

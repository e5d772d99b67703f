package dag

import (
	"errors"
	"strconv"
	"testing"
)

// Fuzz encoding: byte 0 is the step count (mod 13); then, per step, a name
// byte, a dependency-count byte (mod 5) and that many dependency bytes.
// Name bytes map onto a pool of 15 names plus the empty name, so random
// input hits duplicates, missing references and self loops often. Decoding
// stops quietly when the bytes run out.
const fuzzPool = 16

func fuzzName(b byte) string {
	v := b % fuzzPool
	if v == fuzzPool-1 {
		return ""
	}
	return "s" + strconv.Itoa(int(v))
}

func decodeGraph(data []byte) []Node {
	if len(data) == 0 {
		return nil
	}
	count := int(data[0]) % 13
	data = data[1:]
	next := func() (byte, bool) {
		if len(data) == 0 {
			return 0, false
		}
		b := data[0]
		data = data[1:]
		return b, true
	}
	nodes := make([]Node, 0, count)
	for range count {
		b, ok := next()
		if !ok {
			break
		}
		nd := Node{Name: fuzzName(b)}
		c, _ := next()
		for range int(c) % 5 {
			d, ok := next()
			if !ok {
				break
			}
			nd.Deps = append(nd.Deps, fuzzName(d))
		}
		nodes = append(nodes, nd)
	}
	return nodes
}

// encodeGraph is the inverse of decodeGraph for seeds: names[i] is the pool
// number of step i and deps[i] the pool numbers of its dependencies.
func encodeGraph(names []byte, deps [][]byte) []byte {
	out := []byte{byte(len(names))}
	for i, nm := range names {
		out = append(out, nm, byte(len(deps[i])))
		out = append(out, deps[i]...)
	}
	return out
}

func FuzzBuild(f *testing.F) {
	f.Add([]byte{})
	f.Add(encodeGraph([]byte{0}, [][]byte{nil}))
	// chain s0 <- s1 <- s2
	f.Add(encodeGraph([]byte{0, 1, 2}, [][]byte{nil, {0}, {1}}))
	// diamond
	f.Add(encodeGraph([]byte{0, 1, 2, 3}, [][]byte{nil, {0}, {0}, {1, 2}}))
	// three-cycle with a tail
	f.Add(encodeGraph([]byte{0, 1, 2, 3}, [][]byte{{2}, {0}, {1}, {2}}))
	// two cycles sharing a step
	f.Add(encodeGraph([]byte{0, 1, 2}, [][]byte{{1, 2}, {0}, {0}}))
	// every problem at once
	f.Add(encodeGraph([]byte{0, 15, 1, 0, 2}, [][]byte{{2, 9}, nil, {0, 1}, {1}, {1, 1}}))
	// duplicate name whose edge points at the first occurrence
	f.Add(encodeGraph([]byte{0, 1, 0}, [][]byte{nil, {0}, {1}}))

	f.Fuzz(func(t *testing.T, data []byte) {
		nodes := decodeGraph(data)
		g, err := Build(nodes)
		oracle := newOracle(nodes)
		if err == nil {
			checkValidGraph(t, nodes, g, oracle)
			return
		}
		if g != nil {
			t.Fatal("Build returned both a graph and an error")
		}
		var de *Error
		if !errors.As(err, &de) || len(de.Problems) == 0 {
			t.Fatalf("error is not a non-empty *Error: %v", err)
		}
		checkProblems(t, nodes, de, oracle)
	})
}

// oracle recomputes, by brute force, what Build should find.
type oracle struct {
	names    map[string]int // name -> first index, empty names excluded
	badNames int            // empty names plus extra occurrences
	missing  map[[2]string]int
	badDeps  int // self, duplicate or missing dependencies
	parents  [][]int
	cyclic   bool
}

func newOracle(nodes []Node) oracle {
	o := oracle{names: map[string]int{}, missing: map[[2]string]int{}}
	for i, nd := range nodes {
		if _, dup := o.names[nd.Name]; nd.Name == "" || dup {
			o.badNames++
			continue
		}
		o.names[nd.Name] = i
	}
	o.parents = make([][]int, len(nodes))
	for i, nd := range nodes {
		for k, d := range nd.Deps {
			repeated := false
			for _, e := range nd.Deps[:k] {
				repeated = repeated || e == d
			}
			j, ok := o.names[d]
			switch {
			case repeated, d == nd.Name && d != "":
				o.badDeps++
			case !ok:
				o.badDeps++
				o.missing[[2]string{nd.Name, d}]++
			default:
				o.parents[i] = append(o.parents[i], j)
			}
		}
	}
	// A graph is acyclic iff repeatedly removing steps with no remaining
	// parents removes them all; quadratic, which is fine at fuzz sizes.
	removed := make([]bool, len(nodes))
	for progress := true; progress; {
		progress = false
		for i, ps := range o.parents {
			if removed[i] {
				continue
			}
			free := true
			for _, p := range ps {
				free = free && removed[p]
			}
			if free {
				removed[i], progress = true, true
			}
		}
	}
	for _, r := range removed {
		o.cyclic = o.cyclic || !r
	}
	return o
}

func checkValidGraph(t *testing.T, nodes []Node, g *Graph, o oracle) {
	t.Helper()
	if o.badNames > 0 || o.badDeps > 0 || o.cyclic {
		t.Fatalf("Build accepted a bad graph: %+v", nodes)
	}
	size := len(nodes)
	if g.Len() != size {
		t.Fatalf("Len = %d, want %d", g.Len(), size)
	}
	pos := make([]int, size)
	for i := range pos {
		pos[i] = -1
	}
	order := g.TopoOrder()
	if len(order) != size {
		t.Fatalf("TopoOrder has %d steps, want %d", len(order), size)
	}
	for k, v := range order {
		if v < 0 || v >= size || pos[v] >= 0 {
			t.Fatalf("TopoOrder is not a permutation: %v", order)
		}
		pos[v] = k
	}
	level := make([]int, size)
	for i := range level {
		level[i] = -1
	}
	for k, l := range g.Levels() {
		if len(l) == 0 {
			t.Fatalf("level %d is empty", k)
		}
		for _, v := range l {
			if level[v] >= 0 {
				t.Fatalf("step %d is in levels %d and %d", v, level[v], k)
			}
			level[v] = k
		}
	}
	for i := range size {
		if level[i] < 0 {
			t.Fatalf("step %d is in no level", i)
		}
		ps := g.Parents(i)
		if len(ps) != len(o.parents[i]) {
			t.Fatalf("Parents(%d) = %v, want %v", i, ps, o.parents[i])
		}
		want := 0
		for k, p := range ps {
			if p != o.parents[i][k] {
				t.Fatalf("Parents(%d) = %v, want %v", i, ps, o.parents[i])
			}
			if pos[p] >= pos[i] {
				t.Fatalf("edge %d -> %d goes backward in %v", p, i, order)
			}
			want = max(want, level[p]+1)
		}
		if level[i] != want {
			t.Fatalf("step %d has level %d, want %d", i, level[i], want)
		}
		anc := g.Ancestors(i)
		for k, a := range anc {
			if k > 0 && anc[k-1] >= a {
				t.Fatalf("Ancestors(%d) not ascending: %v", i, anc)
			}
			if !contains(g.Descendants(a), i) {
				t.Fatalf("%d is an ancestor of %d but not the reverse", a, i)
			}
		}
	}
}

func checkProblems(t *testing.T, nodes []Node, e *Error, o oracle) {
	t.Helper()
	var badNames, badDeps, cycles int
	edges := edgeSet(nodes)
	for _, p := range e.Problems {
		switch p.Code {
		case CodeEmptyStepName, CodeDuplicateStepName:
			badNames++
		case CodeSelfDependency, CodeDuplicateDep:
			badDeps++
		case CodeMissingDepRef:
			badDeps++
			key := [2]string{p.Step, p.Dep}
			if o.missing[key] == 0 {
				t.Fatalf("%v: %q is not missing", p, p.Dep)
			}
			o.missing[key]--
		case CodeCycleDetected:
			cycles++
			path := p.Path
			if len(path) < 3 || path[0] != path[len(path)-1] || p.Step != path[0] {
				t.Fatalf("%v: malformed path %q", p, path)
			}
			for k := 0; k+1 < len(path); k++ {
				if !edges[[2]string{path[k], path[k+1]}] {
					t.Fatalf("%v: %q does not depend on %q", p, path[k], path[k+1])
				}
			}
		default:
			t.Fatalf("unknown code in %v", p)
		}
	}
	if badNames != o.badNames || badDeps != o.badDeps {
		t.Fatalf("got %d name and %d dependency problems, want %d and %d:\n%v",
			badNames, badDeps, o.badNames, o.badDeps, e)
	}
	if (cycles > 0) != o.cyclic {
		t.Fatalf("cycle reported = %v, oracle says cyclic = %v:\n%v\n%+v", cycles > 0, o.cyclic, e, nodes)
	}
}

func contains(s []int, x int) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

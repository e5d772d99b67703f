package dag_test

import (
	"errors"
	"fmt"

	"github.com/tasker-systems/tasker/dag"
)

// A diamond: validate first, then charge and reserve side by side, then ship. The topological
// order breaks ties by input position, and each level can run in parallel once the levels before
// it are done.
func Example() {
	g, err := dag.Build([]dag.Node{
		{Name: "ship", Deps: []string{"charge", "reserve"}},
		{Name: "validate"},
		{Name: "charge", Deps: []string{"validate"}},
		{Name: "reserve", Deps: []string{"validate"}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("order:", g.Names(g.TopoOrder()))
	for k, level := range g.Levels() {
		fmt.Printf("level %d: %v\n", k, g.Names(level))
	}
	fmt.Println("roots:", g.Names(g.Roots()), "leaves:", g.Names(g.Leaves()))
	// Output:
	// order: [validate charge reserve ship]
	// level 0: [validate]
	// level 1: [charge reserve]
	// level 2: [ship]
	// roots: [validate] leaves: [ship]
}

// Build reports every problem at once, as a *dag.Error: here a dependency on a step that does
// not exist and a cycle, whose Path lists the steps along it with the first repeated at the end
// (each step depends on the next one).
func ExampleBuild_cycle() {
	_, err := dag.Build([]dag.Node{
		{Name: "a", Deps: []string{"c"}},
		{Name: "b", Deps: []string{"a"}},
		{Name: "c", Deps: []string{"b", "audit"}},
	})
	var derr *dag.Error
	if !errors.As(err, &derr) {
		fmt.Println("no dag.Error:", err)
		return
	}
	fmt.Println("has a cycle:", derr.Has(dag.CodeCycleDetected))
	for _, p := range derr.Problems {
		if p.Code == dag.CodeCycleDetected {
			fmt.Println(p.Code, "path:", p.Path)
		} else {
			fmt.Println(p.Code, "step:", p.Step, "dep:", p.Dep)
		}
	}
	// Error lists them one per line.
	fmt.Println(err)
	// Output:
	// has a cycle: true
	// MISSING_DEP_REF step: c dep: audit
	// CYCLE_DETECTED path: [a c b a]
	// MISSING_DEP_REF: step "c": depends on unknown step "audit"
	// CYCLE_DETECTED: step "a": cycle a -> c -> b -> a
}

// The name-based lookups answer by step name, and wrap ErrUnknownStep for a name that is not in
// the graph.
func ExampleGraph_AncestorNames() {
	g, err := dag.Build([]dag.Node{
		{Name: "validate"},
		{Name: "charge", Deps: []string{"validate"}},
		{Name: "reserve", Deps: []string{"validate"}},
		{Name: "ship", Deps: []string{"charge", "reserve"}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	before, _ := g.AncestorNames("ship")
	after, _ := g.DescendantNames("charge")
	fmt.Println("ship waits for", before)
	fmt.Println("charge releases", after)

	_, err = g.AncestorNames("refund")
	fmt.Println(errors.Is(err, dag.ErrUnknownStep), err)
	// Output:
	// ship waits for [validate charge reserve]
	// charge releases [ship]
	// true ancestors of "refund": dag: unknown step
}

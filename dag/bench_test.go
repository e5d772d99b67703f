package dag

import (
	"fmt"
	"testing"
)

// layered returns size steps in layers of width; each step after the first
// layer depends on up to three steps of the layer before it.
func layered(size, width int) []Node {
	nodes := make([]Node, size)
	for i := range nodes {
		nodes[i].Name = fmt.Sprintf("step-%05d", i)
		if i < width {
			continue
		}
		base := (i/width - 1) * width
		for k := range 3 {
			j := base + (i*7+k*13)%width
			dup := false
			for _, d := range nodes[i].Deps {
				dup = dup || d == nodes[j].Name
			}
			if !dup {
				nodes[i].Deps = append(nodes[i].Deps, nodes[j].Name)
			}
		}
	}
	return nodes
}

func chainNodes(size int) []Node {
	nodes := make([]Node, size)
	for i := range nodes {
		nodes[i].Name = fmt.Sprintf("step-%05d", i)
		if i > 0 {
			nodes[i].Deps = []string{nodes[i-1].Name}
		}
	}
	return nodes
}

func BenchmarkBuild10000(b *testing.B) {
	for _, bc := range []struct {
		name  string
		nodes []Node
	}{
		{"layered", layered(10_000, 100)},
		{"chain", chainNodes(10_000)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Build(bc.nodes); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkAncestors(b *testing.B) {
	for _, bc := range []struct {
		name  string
		nodes []Node
	}{
		{"layered", layered(10_000, 100)},
		{"chain", chainNodes(10_000)},
	} {
		g, err := Build(bc.nodes)
		if err != nil {
			b.Fatal(err)
		}
		last := g.Len() - 1
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = g.Ancestors(last)
			}
		})
	}
}

package main

import (
	"fmt"
	"strings"
)

// The bench's templates, in Tasker Core's YAML layout.

// chainYAML is n steps, each depending on the one before.
func chainYAML(name string, n int) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "name: %s\nnamespace_name: bench\nversion: 1.0.0\nsteps:\n  - {name: s000, handler: {callable: mark}}\n", name)
	for i := 1; i < n; i++ {
		fmt.Fprintf(&sb, "  - {name: s%03d, handler: {callable: mark}, dependencies: [s%03d]}\n", i, i-1)
	}
	return sb.String()
}

const linear4YAML = `
name: linear4
namespace_name: bench
version: 1.0.0
steps:
  - {name: s1, handler: {callable: noop}}
  - {name: s2, handler: {callable: noop}, dependencies: [s1]}
  - {name: s3, handler: {callable: noop}, dependencies: [s2]}
  - {name: s4, handler: {callable: noop}, dependencies: [s3]}
`

const diamond4YAML = `
name: diamond4
namespace_name: bench
version: 1.0.0
steps:
  - {name: a, handler: {callable: noop}}
  - {name: b, handler: {callable: noop}, dependencies: [a]}
  - {name: c, handler: {callable: noop}, dependencies: [a]}
  - {name: d, handler: {callable: noop}, dependencies: [b, c]}
`

const oneStepYAML = `
name: one
namespace_name: bench
version: 1.0.0
steps:
  - {name: work, handler: {callable: count}}
`

// fanInYAML is n parallel steps joined into one: n+1 steps.
func fanInYAML(name string, n int) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "name: %s\nnamespace_name: bench\nversion: 1.0.0\nsteps:\n", name)
	deps := make([]string, n)
	for i := range n {
		deps[i] = fmt.Sprintf("p%05d", i)
		fmt.Fprintf(&sb, "  - {name: %s, handler: {callable: noop}}\n", deps[i])
	}
	fmt.Fprintf(&sb, "  - name: join\n    handler: {callable: noop}\n    dependencies: [%s]\n", strings.Join(deps, ", "))
	return sb.String()
}

package statemachine

import (
	"fmt"
	"slices"
)

// row is a table row with the machine's own types, so the task and step
// machines share one implementation.
type row[S, E ~string] struct {
	from S
	ev   E
	to   S
}

type key[S, E ~string] struct {
	from S
	ev   E
}

// machine is the lookup built once from a table.
type machine[S, E ~string] struct {
	name     string
	states   []S
	events   []E
	terminal func(S) bool
	rows     []row[S, E]
	next     map[key[S, E]]S
	edges    map[key[S, S]]bool // from -> to for some event
}

// newMachine indexes the table. A duplicate (from, event) pair, a row with an
// unknown state or event, or a row leaving a terminal state is a programming
// error in this package, so it panics at init rather than misbehave later.
func newMachine[S, E ~string](name string, states []S, events []E, terminal func(S) bool, rows []row[S, E]) *machine[S, E] {
	m := &machine[S, E]{
		name:     name,
		states:   states,
		events:   events,
		terminal: terminal,
		rows:     rows,
		next:     make(map[key[S, E]]S, len(rows)),
		edges:    make(map[key[S, S]]bool, len(rows)),
	}
	for _, r := range rows {
		if !slices.Contains(states, r.from) || !slices.Contains(states, r.to) || !slices.Contains(events, r.ev) {
			panic(fmt.Sprintf("statemachine: %s table row %q --%s--> %q names an unknown state or event", name, r.from, r.ev, r.to))
		}
		if terminal(r.from) {
			panic(fmt.Sprintf("statemachine: %s table row leaves terminal state %q", name, r.from))
		}
		k := key[S, E]{r.from, r.ev}
		if _, dup := m.next[k]; dup {
			panic(fmt.Sprintf("statemachine: %s table has two rows for %q --%s-->", name, r.from, r.ev))
		}
		m.next[k] = r.to
		m.edges[key[S, S]{r.from, r.to}] = true
	}
	return m
}

// step returns the target of ev from from, or a *TransitionError saying why
// there is none.
func (m *machine[S, E]) step(from S, ev E) (S, error) {
	fail := func(reason string) (S, error) {
		return "", &TransitionError{Machine: m.name, From: string(from), Event: string(ev), Reason: reason}
	}
	switch {
	case !slices.Contains(m.states, from):
		return fail(fmt.Sprintf("unknown %s state %q", m.name, from))
	case !slices.Contains(m.events, ev):
		return fail(fmt.Sprintf("unknown %s event %q", m.name, ev))
	case m.terminal(from):
		return fail(fmt.Sprintf("%q is terminal", from))
	}
	to, ok := m.next[key[S, E]{from, ev}]
	if !ok {
		return fail(fmt.Sprintf("%q does not accept %q", from, ev))
	}
	return to, nil
}

// validatePath checks that path starts at start and that every consecutive
// pair is joined by some event.
func (m *machine[S, E]) validatePath(start S, path []S) error {
	if len(path) == 0 {
		return fmt.Errorf("%s path is empty: %w", m.name, ErrIllegalTransition)
	}
	for i, s := range path {
		if !slices.Contains(m.states, s) {
			return fmt.Errorf("%s path: state %d: unknown %s state %q: %w", m.name, i, m.name, s, ErrIllegalTransition)
		}
	}
	if path[0] != start {
		return fmt.Errorf("%s path starts at %q, not %q: %w", m.name, path[0], start, ErrIllegalTransition)
	}
	for i := 1; i < len(path); i++ {
		from, to := path[i-1], path[i]
		if !m.edges[key[S, S]{from, to}] {
			return fmt.Errorf("%s path: hop %d %q -> %q: no event leads there: %w", m.name, i, from, to, ErrIllegalTransition)
		}
	}
	return nil
}

package dag

import (
	"errors"
	"fmt"
	"strings"
)

// Code identifies the kind of a Problem. Codes are stable strings so that
// callers can match on them and show them to users.
type Code string

// The problems Build can report.
const (
	// CodeEmptyStepName means a step has an empty name.
	CodeEmptyStepName Code = "EMPTY_STEP_NAME"
	// CodeDuplicateStepName means a name is used by more than one step; reported
	// once for each occurrence after the first.
	CodeDuplicateStepName Code = "DUPLICATE_STEP_NAME"
	// CodeMissingDepRef means a dependency names no step.
	CodeMissingDepRef Code = "MISSING_DEP_REF"
	// CodeSelfDependency means a step lists itself as a dependency.
	CodeSelfDependency Code = "SELF_DEPENDENCY"
	// CodeDuplicateDep means a step lists the same dependency more than once.
	CodeDuplicateDep Code = "DUPLICATE_DEPENDENCY"
	// CodeCycleDetected means the dependencies form a cycle.
	CodeCycleDetected Code = "CYCLE_DETECTED"
)

// ErrUnknownStep is returned (wrapped) by the name-based lookups of Graph
// when the name is not a step of the graph.
var ErrUnknownStep = errors.New("dag: unknown step")

// Problem is one defect found by Build.
type Problem struct {
	// Code says what kind of defect this is.
	Code Code
	// Step is the name of the step the problem belongs to: the dependent
	// step for dependency problems, the first step of the path for cycles.
	// It is empty for CodeEmptyStepName.
	Step string
	// Message is a human-readable description, without the code or step.
	Message string
	// Path is set for CodeCycleDetected only: the step names along the
	// cycle with the first repeated at the end, e.g. [a b c a], where each
	// step depends on the next one.
	Path []string
	// Index is the position in the input slice of the step the problem
	// belongs to (for duplicates, the later occurrence).
	Index int
	// Dep is the offending dependency name for CodeMissingDepRef,
	// CodeSelfDependency and CodeDuplicateDep; empty otherwise.
	Dep string
}

// String formats the problem as `CODE: step "name": message`.
func (p Problem) String() string {
	if p.Step == "" {
		return fmt.Sprintf("%s: step at index %d: %s", p.Code, p.Index, p.Message)
	}
	return fmt.Sprintf("%s: step %q: %s", p.Code, p.Step, p.Message)
}

// Error is returned by Build when the input is not a valid DAG. It holds
// every problem found, not only the first, so that a user can fix a
// template in one round.
type Error struct {
	// Problems lists the defects in a deterministic order: name problems in
	// input order, then dependency problems in input order, then cycles.
	Problems []Problem
}

// Error lists all problems, one per line.
func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Has reports whether any problem has the given code.
func (e *Error) Has(code Code) bool {
	for _, p := range e.Problems {
		if p.Code == code {
			return true
		}
	}
	return false
}

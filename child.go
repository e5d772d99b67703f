package tasker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tasker-systems/tasker/internal/engine"
	"github.com/tasker-systems/tasker/statemachine"
)

// ChildPollInterval is how often a step waiting for its child task looks at it when no wake-up
// came: every ending the engine commits wakes the parent at once (docs/flow-control.md lists
// them), so the poll covers a wake-up lost to a crash or a lost announcement, and an operator's
// step action in the caller's transaction.
const ChildPollInterval = 30 * time.Second

// ErrChildFailed is matched (errors.Is) by a *ChildFailedError.
var ErrChildFailed = errors.New("tasker: child task failed")

// ChildFailedError is the error Step.Child returns for a child task that ended without
// completing: in error, cancelled, or blocked by failures. As a handler's error it is retryable:
// the step's retry policy applies, and the next attempt runs a new child.
type ChildFailedError struct {
	Child *Task
}

func (e *ChildFailedError) Error() string {
	return fmt.Sprintf("tasker: child task %s (%s/%s) ended %s", e.Child.ID, e.Child.Namespace, e.Child.Name, e.Child.State)
}

// Is makes errors.Is(err, ErrChildFailed) true.
func (e *ChildFailedError) Is(target error) bool { return target == ErrChildFailed }

// childState is a parent step's checkpoint: which round of children it runs (one more after each
// failed child, so that a retry runs a new child).
type childState struct {
	ChildRound int `json:"tasker_child_round"`
}

// Child runs a task of another template as a child of this step and returns it, with its steps
// and their results, once it has completed. Call it from a handler and return its error as is: until
// the child ends, the error parks the step (it waits in waiting_for_retry without holding a worker,
// and the child's end, whether by its steps, a cancellation, an operator or the rescuer, wakes it
// at once, or ChildPollInterval passes), and the handler runs again,
// calling Child again, which then finds the same child (its identity is the step's, per round). A
// child that ends without completing returns a *ChildFailedError, retryable under the step's
// policy; the next attempt runs a new child. req.IdempotencyKey is set by Child; the child is
// tagged with its parent (engine.ParentTag). The step's checkpoint is Child's.
func (s *Step) Child(ctx context.Context, req TaskRequest) (*Task, error) {
	if s.engine == nil {
		return nil, errors.New("tasker: Step.Child needs a step run by an engine")
	}
	var st childState
	if len(s.checkpoint) > 0 {
		_ = json.Unmarshal(s.checkpoint, &st)
	}
	req.IdempotencyKey = fmt.Sprintf("child:%s:%d", s.ID, st.ChildRound)
	req.Tags = append(append([]string(nil), req.Tags...), engine.ParentTag(s.TaskID, s.Name))
	if req.SourceSystem == "" {
		req.SourceSystem = "tasker.child"
	}
	child, err := s.engine.CreateTask(ctx, req)
	if err != nil && !errors.Is(err, ErrDuplicateTask) {
		return nil, fmt.Errorf("step %q: create child task: %w", s.Name, err)
	}
	if child, err = s.engine.GetTask(ctx, child.ID); err != nil {
		return nil, fmt.Errorf("step %q: read child task: %w", s.Name, err)
	}
	switch {
	case child.State == TaskComplete || child.State == TaskResolvedManually:
		return child, nil
	case statemachine.AtRest(child.State, activeSteps(child)):
		st.ChildRound++
		if err := s.Checkpoint(ctx, st); err != nil {
			return nil, err
		}
		return child, &ChildFailedError{Child: child}
	}
	return nil, &parkError{until: s.now().Add(ChildPollInterval), why: fmt.Sprintf("waiting for child task %s", child.ID)}
}

// activeSteps counts a task's steps enqueued, in progress or enqueued for orchestration.
func activeSteps(t *Task) int {
	n := 0
	for _, s := range t.Steps {
		switch s.State {
		case statemachine.StepEnqueued, statemachine.StepInProgress, statemachine.StepEnqueuedForOrchestration:
			n++
		}
	}
	return n
}

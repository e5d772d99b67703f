package tasker

import (
	"context"
	"fmt"

	"github.com/google/uuid"
)

// Templates returns the templates registered with this engine, as registered (defaults and the
// environment's overrides applied), by namespace, name and version. They are shared: treat them as
// read-only.
func (e *Engine) Templates() []*Template {
	ts := e.core.Templates()
	out := make([]*Template, 0, len(ts))
	for _, t := range ts {
		out = append(out, t.API.(*registered).t)
	}
	return out
}

// Template returns a registered template, as Templates does; version "" means the highest
// version. An unknown one is an error that wraps ErrTemplateNotFound.
func (e *Engine) Template(namespace, name, version string) (*Template, error) {
	r, err := e.template(namespace, name, version)
	if err != nil {
		return nil, err
	}
	return r.t, nil
}

// StepEdge is one dependency of a task's DAG: the step To runs after the step From.
type StepEdge struct {
	From, To uuid.UUID
}

// TaskEdges returns the dependencies between a task's steps as they exist now (steps created at
// run time included), ordered by parent then child. It returns ErrTaskNotFound for an unknown task.
func (e *Engine) TaskEdges(ctx context.Context, taskID uuid.UUID) ([]StepEdge, error) {
	if _, err := e.store.GetTask(ctx, taskID); err != nil {
		return nil, mapStoreErr(err, taskID)
	}
	edges, err := e.store.Edges(ctx, taskID)
	if err != nil {
		return nil, fmt.Errorf("tasker: edges of task %s: %w", taskID, err)
	}
	out := make([]StepEdge, len(edges))
	for i, ed := range edges {
		out[i] = StepEdge{From: ed.From, To: ed.To}
	}
	return out, nil
}

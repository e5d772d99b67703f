package tasker

import (
	"context"
	"fmt"

	"github.com/google/uuid"

	"github.com/tasker-systems/tasker/diagram"
	"github.com/tasker-systems/tasker/statemachine"
)

// Mermaid returns the template's DAG as Mermaid flowchart text: one node per step, shaped by its
// type (a rhombus for a decision, a double-sided box for a batchable step, a parallelogram for a
// batch worker's blueprint, a stadium for a deferred convergence), one arrow per dependency. The
// text is the same on every call (nodes and arrows sorted by step name) and escapes every name,
// so it can be pasted into Markdown as is (see package diagram). Dependencies on steps the
// template lacks are left out.
func (t *Template) Mermaid() string { return diagram.Mermaid(t.diagram()) }

// DOT returns the template's DAG as Graphviz DOT text, drawn as Mermaid draws it; render it with
// `dot -Tsvg`.
func (t *Template) DOT() string { return diagram.DOT(t.diagram()) }

// diagram is the template's graph for package diagram.
func (t *Template) diagram() diagram.Graph {
	g := diagram.Graph{Title: t.Key()}
	for _, s := range t.Steps {
		g.Nodes = append(g.Nodes, diagram.Node{Name: s.Name, Shape: shapeOf(string(s.Type))})
		for _, d := range s.Dependencies {
			g.Edges = append(g.Edges, diagram.Edge{From: d, To: s.Name})
		}
	}
	return g
}

// TaskMermaid returns the DAG of a task as it stands, in Mermaid flowchart text: its steps as they
// exist now (decision branches and batch workers included once created) with their dependencies,
// each coloured by state (see StepPictureStatus) and labelled with its state and attempts. The
// text depends only on the task's state: the same task, unchanged, gives the same text. An
// unknown task returns ErrTaskNotFound.
func (e *Engine) TaskMermaid(ctx context.Context, id uuid.UUID) (string, error) {
	g, err := e.taskDiagram(ctx, id)
	if err != nil {
		return "", err
	}
	return diagram.Mermaid(g), nil
}

// TaskDOT is TaskMermaid in Graphviz DOT text.
func (e *Engine) TaskDOT(ctx context.Context, id uuid.UUID) (string, error) {
	g, err := e.taskDiagram(ctx, id)
	if err != nil {
		return "", err
	}
	return diagram.DOT(g), nil
}

// taskDiagram reads a task's steps and edges into a graph.
func (e *Engine) taskDiagram(ctx context.Context, id uuid.UUID) (diagram.Graph, error) {
	t, err := e.store.GetTask(ctx, id)
	if err != nil {
		return diagram.Graph{}, fmt.Errorf("tasker: picture of task %s: %w", id, mapStoreErr(err, id))
	}
	steps, err := e.store.GetSteps(ctx, id)
	if err != nil {
		return diagram.Graph{}, fmt.Errorf("tasker: picture of task %s: %w", id, err)
	}
	edges, err := e.store.Edges(ctx, id)
	if err != nil {
		return diagram.Graph{}, fmt.Errorf("tasker: picture of task %s: %w", id, err)
	}
	g := diagram.Graph{Title: fmt.Sprintf("task %s: %s/%s@%s (%s)", t.ID, t.Namespace, t.Name, t.Version, t.State)}
	names := make(map[uuid.UUID]string, len(steps))
	for _, s := range steps {
		names[s.ID] = s.Name
		detail := string(s.State)
		if s.Attempts > 0 {
			detail += fmt.Sprintf(", attempt %d of %d", s.Attempts, s.MaxAttempts)
		}
		g.Nodes = append(g.Nodes, diagram.Node{Name: s.Name, Detail: detail, Shape: shapeOf(s.Type), Status: StepPictureStatus(s.State)})
	}
	for _, ed := range edges {
		g.Edges = append(g.Edges, diagram.Edge{From: names[ed.From], To: names[ed.To]})
	}
	return g, nil
}

// StepPictureStatus is the colour a step in a given state has in the pictures of a task:
// complete; resolved (resolved_manually); in progress (enqueued, in_progress and
// enqueued_for_orchestration: on its way or running); retrying (waiting_for_retry); error;
// cancelled; and pending (not reached yet).
func StepPictureStatus(s StepState) diagram.Status {
	switch s {
	case statemachine.StepComplete:
		return diagram.StatusComplete
	case statemachine.StepResolvedManually:
		return diagram.StatusResolved
	case statemachine.StepEnqueued, statemachine.StepInProgress, statemachine.StepEnqueuedForOrchestration:
		return diagram.StatusInProgress
	case statemachine.StepWaitingForRetry:
		return diagram.StatusRetrying
	case statemachine.StepError:
		return diagram.StatusError
	case statemachine.StepCancelled:
		return diagram.StatusCancelled
	default:
		return diagram.StatusPending
	}
}

// shapeOf is the node shape of a step type.
func shapeOf(typ string) diagram.Shape {
	switch StepType(typ) {
	case StepDecision:
		return diagram.ShapeDecision
	case StepBatchable:
		return diagram.ShapeBatchable
	case StepBatchWorker:
		return diagram.ShapeBatchWorker
	case StepDeferredConvergence:
		return diagram.ShapeConvergence
	default:
		return diagram.ShapeStandard
	}
}

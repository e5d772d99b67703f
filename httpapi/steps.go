package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/google/uuid"

	"github.com/tasker-systems/tasker"
)

// taskSteps reads the task and its edges: the steps' document.
func (s *server) taskSteps(r *http.Request) (*tasker.Task, stepsDoc, error) {
	id, err := pathID(r, "id")
	if err != nil {
		return nil, stepsDoc{}, err
	}
	t, err := s.e.GetTask(r.Context(), id)
	if err != nil {
		return nil, stepsDoc{}, err
	}
	edges, err := s.e.TaskEdges(r.Context(), id)
	if err != nil {
		return nil, stepsDoc{}, err
	}
	doc := stepsDoc{TaskID: t.ID, TaskState: string(t.State), Steps: make([]stepDoc, 0, len(t.Steps)),
		Edges: make([]edgeDoc, 0, len(edges))}
	parents := map[uuid.UUID][]uuid.UUID{}
	for _, ed := range edges {
		parents[ed.To] = append(parents[ed.To], ed.From)
		doc.Edges = append(doc.Edges, edgeDoc{From: ed.From, To: ed.To})
	}
	for i := range t.Steps {
		doc.Steps = append(doc.Steps, stepDocOf(&t.Steps[i], parents[t.Steps[i].ID]))
	}
	return t, doc, nil
}

// step finds the path's step in the steps' document: a step of another task is not found.
func (s *server) step(r *http.Request) (stepDoc, error) {
	stepID, err := pathID(r, "step")
	if err != nil {
		return stepDoc{}, err
	}
	t, doc, err := s.taskSteps(r)
	if err != nil {
		return stepDoc{}, err
	}
	for _, st := range doc.Steps {
		if st.ID == stepID {
			return st, nil
		}
	}
	return stepDoc{}, fmt.Errorf("%w: %s in task %s", tasker.ErrStepNotFound, stepID, t.ID)
}

func (s *server) listSteps(w http.ResponseWriter, r *http.Request) error {
	_, doc, err := s.taskSteps(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, doc)
	return nil
}

func (s *server) getStep(w http.ResponseWriter, r *http.Request) error {
	st, err := s.step(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

// stepActionBody is PATCH .../workflow_steps/{step}'s body: an operator's action on a step in
// error.
type stepActionBody struct {
	// Action is "retry", "resolve" or "complete".
	Action string `json:"action"`
	// Result is the step's result, for "complete" only.
	Result   json.RawMessage `json:"result"`
	Operator string          `json:"operator"`
	Reason   string          `json:"reason"`
}

// stepActions maps a body's action to its permission.
var stepActions = map[string]Action{"retry": ActionStepsRetry, "resolve": ActionStepsResolve, "complete": ActionStepsComplete}

// patchStep applies an operator's action to a step and returns the step as it is then. It asks
// the Authorizer for the action the body names (steps:retry, steps:resolve or steps:complete).
func (s *server) patchStep(w http.ResponseWriter, r *http.Request) error {
	var b stepActionBody
	if err := s.decodeBody(w, r, &b); err != nil {
		return err
	}
	action, ok := stepActions[b.Action]
	if !ok {
		return badRequest("action", "action %q is not retry, resolve or complete", b.Action)
	}
	if len(b.Result) > 0 && b.Action != "complete" {
		return badRequest("result", "a result is given only with the complete action")
	}
	if err := s.authorize(r, action); err != nil {
		return err
	}
	st, err := s.step(r)
	if err != nil {
		return err
	}
	op := tasker.OperatorRequest{Operator: b.Operator, Reason: b.Reason}
	switch b.Action {
	case "retry":
		err = s.e.RetryStep(r.Context(), st.ID, op)
	case "resolve":
		err = s.e.ResolveStep(r.Context(), st.ID, op)
	case "complete":
		result := b.Result
		if len(result) == 0 {
			result = json.RawMessage("null")
		}
		err = s.e.CompleteStep(r.Context(), st.ID, result, op)
	}
	if err != nil {
		return err
	}
	if st, err = s.step(r); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

func (s *server) stepTransitions(w http.ResponseWriter, r *http.Request) error {
	st, err := s.step(r)
	if err != nil {
		return err
	}
	trs, err := s.e.Transitions(r.Context(), uuid.MustParse(r.PathValue("id")))
	if err != nil {
		return err
	}
	doc := transitionsDoc{Transitions: []transitionDoc{}}
	for i := range trs {
		if trs[i].StepID == st.ID {
			doc.Transitions = append(doc.Transitions, transitionDocOf(&trs[i]))
		}
	}
	writeJSON(w, http.StatusOK, doc)
	return nil
}

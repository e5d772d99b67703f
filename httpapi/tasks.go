package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/uuid"

	"github.com/tasker-systems/tasker"
)

// createTaskBody is POST /v1/tasks's body: Tasker Core's task request.
type createTaskBody struct {
	Namespace      string          `json:"namespace"`
	Name           string          `json:"name"`
	Version        string          `json:"version"`
	Context        json.RawMessage `json:"context"`
	IdempotencyKey string          `json:"idempotency_key"`
	Priority       int             `json:"priority"`
	CorrelationID  string          `json:"correlation_id"`
	Tags           []string        `json:"tags"`
	Initiator      string          `json:"initiator"`
	SourceSystem   string          `json:"source_system"`
	Reason         string          `json:"reason"`
}

func (s *server) createTask(w http.ResponseWriter, r *http.Request) error {
	var b createTaskBody
	if err := s.decodeBody(w, r, &b); err != nil {
		return err
	}
	var missing []string
	if b.Namespace == "" {
		missing = append(missing, "namespace is required")
	}
	if b.Name == "" {
		missing = append(missing, "name is required")
	}
	if len(missing) > 0 {
		return &requestError{status: http.StatusBadRequest, kind: "invalid-request", field: "body",
			msg: strings.Join(missing, "; "), violations: missing}
	}
	req := tasker.TaskRequest{Namespace: b.Namespace, Name: b.Name, Version: b.Version, IdempotencyKey: b.IdempotencyKey,
		Priority: b.Priority, CorrelationID: b.CorrelationID, Tags: b.Tags, Initiator: b.Initiator,
		SourceSystem: b.SourceSystem, Reason: b.Reason}
	if len(b.Context) > 0 && string(b.Context) != "null" {
		req.Context = b.Context
	}
	t, err := s.e.CreateTask(r.Context(), req)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "tasks/"+t.ID.String())
	writeJSON(w, http.StatusCreated, s.taskWithSteps(r, t))
	return nil
}

// taskWithSteps is the task's document with its steps and their dependencies.
func (s *server) taskWithSteps(r *http.Request, t *tasker.Task) taskDoc {
	d := taskDocOf(t)
	parents := map[uuid.UUID][]uuid.UUID{}
	if edges, err := s.e.TaskEdges(r.Context(), t.ID); err == nil {
		for _, ed := range edges {
			parents[ed.To] = append(parents[ed.To], ed.From)
		}
	}
	for i := range t.Steps {
		d.Steps = append(d.Steps, stepDocOf(&t.Steps[i], parents[t.Steps[i].ID]))
	}
	return d
}

func (s *server) listTasks(w http.ResponseWriter, r *http.Request) error {
	q := newQuery(r, "namespace", "name", "state", "created_after", "created_before", "limit", "cursor")
	o := tasker.ListOptions{Namespace: q.str("namespace"), Name: q.str("name"), CreatedAfter: q.time("created_after"),
		CreatedBefore: q.time("created_before"), After: q.uuid("cursor")}
	limit := q.limit(ListLimitDefault)
	for _, v := range r.URL.Query()["state"] {
		for _, st := range strings.Split(v, ",") {
			if st = strings.TrimSpace(st); st == "" {
				continue
			}
			if !tasker.TaskState(st).Valid() {
				q.errs = append(q.errs, fmt.Sprintf("state %q is not a task state", st))
			}
			o.States = append(o.States, tasker.TaskState(st))
		}
	}
	if err := q.err(); err != nil {
		return err
	}
	o.Limit = limit + 1 // one more tells whether another page follows
	ts, err := s.e.ListTasks(r.Context(), o)
	if err != nil {
		return err
	}
	doc := taskListDoc{Tasks: make([]taskDoc, 0, min(len(ts), limit))}
	for i := range ts[:min(len(ts), limit)] {
		doc.Tasks = append(doc.Tasks, taskDocOf(&ts[i]))
	}
	if len(ts) > limit {
		doc.NextCursor = ts[limit-1].ID.String()
	}
	writeJSON(w, http.StatusOK, doc)
	return nil
}

func (s *server) getTask(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	t, err := s.e.GetTask(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.taskWithSteps(r, t))
	return nil
}

// cancelTask cancels the task (DELETE, as in Tasker Core) and returns it as it is then.
func (s *server) cancelTask(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	q := newQuery(r, "reason")
	if err := q.err(); err != nil {
		return err
	}
	if err := s.e.CancelTask(r.Context(), id, q.str("reason")); err != nil {
		return err
	}
	t, err := s.e.GetTask(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.taskWithSteps(r, t))
	return nil
}

func (s *server) taskTransitions(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	trs, err := s.e.Transitions(r.Context(), id)
	if err != nil {
		return err
	}
	doc := transitionsDoc{Transitions: make([]transitionDoc, 0, len(trs))}
	for i := range trs {
		doc.Transitions = append(doc.Transitions, transitionDocOf(&trs[i]))
	}
	writeJSON(w, http.StatusOK, doc)
	return nil
}

func (s *server) taskDiagram(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	q := newQuery(r, "format")
	format := q.str("format")
	if format != "" && format != "mermaid" && format != "dot" {
		q.errs = append(q.errs, fmt.Sprintf("format %q is not mermaid or dot", format))
	}
	if err := q.err(); err != nil {
		return err
	}
	var text string
	if format == "dot" {
		text, err = s.e.TaskDOT(r.Context(), id)
	} else {
		format = "mermaid"
		text, err = s.e.TaskMermaid(r.Context(), id)
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, diagramDoc{Format: format, Diagram: text})
	return nil
}

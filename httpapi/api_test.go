package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
)

// TestCreateTaskWithPlainHTTPClient: a client with nothing but net/http creates a task, reads it
// back at its Location, and sees it complete with its steps' results.
func TestCreateTaskWithPlainHTTPClient(t *testing.T) {
	t.Parallel()
	b := setup(t)
	body := `{"namespace":"shop","name":"order","context":{"order_id":"A-1","amount":3},"correlation_id":"corr-1","tags":["web"]}`
	resp, err := http.Post(b.srv.URL+"/v1/tasks", "application/json", strings.NewReader(body))
	require.NoError(t, err)
	var created struct {
		ID    uuid.UUID `json:"id"`
		State string    `json:"state"`
		Steps []struct {
			Name  string `json:"name"`
			State string `json:"state"`
		} `json:"steps"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&created))
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	require.Equal(t, "tasks/"+created.ID.String(), resp.Header.Get("Location"))
	require.Len(t, created.Steps, 4)

	var got struct {
		ID            uuid.UUID       `json:"id"`
		State         string          `json:"state"`
		CorrelationID string          `json:"correlation_id"`
		Tags          []string        `json:"tags"`
		Context       json.RawMessage `json:"context"`
		Steps         []struct {
			Name   string          `json:"name"`
			State  string          `json:"state"`
			Result json.RawMessage `json:"result"`
		} `json:"steps"`
	}
	require.Eventually(t, func() bool {
		resp, err := http.Get(b.srv.URL + "/v1/" + resp.Header.Get("Location"))
		require.NoError(t, err)
		defer func() { _ = resp.Body.Close() }()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, "application/json; charset=utf-8", resp.Header.Get("Content-Type"))
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&got))
		return got.State == "complete"
	}, 30*time.Second, 20*time.Millisecond)
	require.Equal(t, created.ID, got.ID)
	require.Equal(t, "corr-1", got.CorrelationID)
	require.Equal(t, []string{"web"}, got.Tags)
	require.JSONEq(t, `{"order_id":"A-1","amount":3}`, string(got.Context))
	for _, s := range got.Steps {
		require.Equal(t, "complete", s.State, s.Name)
		require.NotEmpty(t, s.Result, s.Name)
	}
}

// TestEveryRoute calls every route of the API on a real engine, the way an operator's tool would:
// the success of each, and the errors each maps (400 listing violations, 404, 409 with the
// existing task, 422). Every response is checked against the OpenAPI document, and the test ends
// by checking that it reached every route.
func TestEveryRoute(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()

	// Tasks: create, duplicate, invalid, unknown template, malformed bodies.
	done := b.create(t, "ok", map[string]any{"idempotency_key": "order-1", "priority": 3})
	require.Equal(t, "shop", done.Namespace)
	require.Len(t, done.Steps, 4)
	dup := b.do(t, "POST", "/v1/tasks", map[string]any{"namespace": "shop", "name": "order", "idempotency_key": "order-1",
		"context": map[string]any{"order_id": "x", "amount": 1}})
	require.Equal(t, http.StatusConflict, dup.status)
	p := dup.problem(t)
	require.Equal(t, ProblemType+"duplicate-task", p.Type)
	require.NotNil(t, p.ExistingTaskID)
	require.Equal(t, done.ID, *p.ExistingTaskID)

	bad := b.do(t, "POST", "/v1/tasks", map[string]any{"namespace": "shop", "name": "order", "context": map[string]any{"amount": -1}})
	require.Equal(t, http.StatusBadRequest, bad.status)
	p = bad.problem(t)
	require.Equal(t, ProblemType+"invalid-input", p.Type)
	require.Len(t, p.Violations, 2, "both violations: the missing order_id and the negative amount: %v", p.Violations)
	require.Contains(t, strings.Join(p.Violations, "\n"), "order_id")
	require.Contains(t, strings.Join(p.Violations, "\n"), "minimum")

	missing := b.do(t, "POST", "/v1/tasks", `{}`)
	require.Equal(t, http.StatusBadRequest, missing.status)
	require.ElementsMatch(t, []string{"namespace is required", "name is required"}, missing.problem(t).Violations)
	unknownField := b.do(t, "POST", "/v1/tasks", `{"namespace":"shop","name":"order","contxt":{}}`)
	require.Equal(t, http.StatusBadRequest, unknownField.status)
	require.Contains(t, unknownField.problem(t).Detail, `unknown field "contxt"`)
	require.Equal(t, http.StatusBadRequest, b.do(t, "POST", "/v1/tasks", `{"namespace":"shop"`).status)
	require.Equal(t, http.StatusBadRequest, b.do(t, "POST", "/v1/tasks", `{"namespace":"shop","name":"order"} {}`).status)
	require.Equal(t, http.StatusUnsupportedMediaType, b.do(t, "POST", "/v1/tasks", nil, "Content-Type", "text/plain").status)
	noTemplate := b.do(t, "POST", "/v1/tasks", map[string]any{"namespace": "shop", "name": "nope"})
	require.Equal(t, http.StatusNotFound, noTemplate.status)
	require.Equal(t, ProblemType+"not-found", noTemplate.problem(t).Type)

	b.waitState(t, done.ID, tasker.TaskComplete)
	failed := b.create(t, "fail", nil)
	held := b.create(t, "hold", nil)
	blocked := b.waitState(t, failed.ID, tasker.TaskBlockedByFailures)
	require.Equal(t, "error", stepNamed(t, blocked, "reserve").State)
	require.Equal(t, "out of stock", stepNamed(t, blocked, "reserve").LastError.Message)

	// Listing: filters, paging, invalid parameters.
	var list taskListDoc
	r := b.do(t, "GET", "/v1/tasks?namespace=shop&name=order&limit=2", nil)
	require.Equal(t, http.StatusOK, r.status)
	r.decode(t, &list)
	require.Len(t, list.Tasks, 2)
	require.Equal(t, held.ID, list.Tasks[0].ID, "newest first")
	require.NotEmpty(t, list.NextCursor)
	var rest taskListDoc
	b.do(t, "GET", "/v1/tasks?limit=2&cursor="+list.NextCursor, nil).decode(t, &rest)
	require.Len(t, rest.Tasks, 1)
	require.Equal(t, done.ID, rest.Tasks[0].ID)
	require.Empty(t, rest.NextCursor)
	var byState taskListDoc
	b.do(t, "GET", "/v1/tasks?state=complete,blocked_by_failures", nil).decode(t, &byState)
	require.Len(t, byState.Tasks, 2)
	badList := b.do(t, "GET", "/v1/tasks?state=done&limit=0&colour=red", nil)
	require.Equal(t, http.StatusBadRequest, badList.status)
	require.Len(t, badList.problem(t).Violations, 3, "every problem of the query at once")

	// One task, its transitions and its picture; unknown and malformed IDs.
	var one taskDoc
	b.do(t, "GET", "/v1/tasks/"+done.ID.String(), nil).decode(t, &one)
	require.Equal(t, "complete", one.State)
	require.Equal(t, 3, one.Priority)
	require.Equal(t, []uuid.UUID{stepNamed(t, one, "validate").ID}, stepNamed(t, one, "reserve").Dependencies)
	nf := b.do(t, "GET", "/v1/tasks/"+uuid.NewString(), nil)
	require.Equal(t, http.StatusNotFound, nf.status)
	require.Equal(t, ProblemType+"not-found", nf.problem(t).Type)
	notUUID := b.do(t, "GET", "/v1/tasks/123", nil)
	require.Equal(t, http.StatusBadRequest, notUUID.status)
	require.Equal(t, "id", notUUID.problem(t).Field)
	var trs transitionsDoc
	b.do(t, "GET", "/v1/tasks/"+done.ID.String()+"/transitions", nil).decode(t, &trs)
	require.NotEmpty(t, trs.Transitions)
	require.Equal(t, "complete", trs.Transitions[len(trs.Transitions)-1].To)
	require.Equal(t, http.StatusNotFound, b.do(t, "GET", "/v1/tasks/"+uuid.NewString()+"/transitions", nil).status)
	var dia diagramDoc
	b.do(t, "GET", "/v1/tasks/"+done.ID.String()+"/diagram", nil).decode(t, &dia)
	require.Equal(t, "mermaid", dia.Format)
	require.Contains(t, dia.Diagram, "flowchart")
	b.do(t, "GET", "/v1/tasks/"+done.ID.String()+"/diagram?format=dot", nil).decode(t, &dia)
	require.Contains(t, dia.Diagram, "digraph")
	require.Equal(t, http.StatusBadRequest, b.do(t, "GET", "/v1/tasks/"+done.ID.String()+"/diagram?format=png", nil).status)

	// Steps: the list with edges, one step, its audit trail; a step of another task is not found.
	var steps stepsDoc
	b.do(t, "GET", "/v1/tasks/"+done.ID.String()+"/workflow_steps", nil).decode(t, &steps)
	require.Len(t, steps.Steps, 4)
	require.Len(t, steps.Edges, 3)
	reserve := stepNamed(t, one, "reserve")
	var st stepDoc
	b.do(t, "GET", "/v1/tasks/"+done.ID.String()+"/workflow_steps/"+reserve.ID.String(), nil).decode(t, &st)
	require.Equal(t, "reserve", st.Name)
	require.JSONEq(t, `{"reservation":"R-1"}`, string(st.Result))
	require.Equal(t, http.StatusNotFound, b.do(t, "GET", "/v1/tasks/"+failed.ID.String()+"/workflow_steps/"+reserve.ID.String(), nil).status)
	require.Equal(t, http.StatusBadRequest, b.do(t, "GET", "/v1/tasks/"+done.ID.String()+"/workflow_steps/reserve", nil).status)
	var strs transitionsDoc
	b.do(t, "GET", "/v1/tasks/"+done.ID.String()+"/workflow_steps/"+reserve.ID.String()+"/transitions", nil).decode(t, &strs)
	require.NotEmpty(t, strs.Transitions)
	for _, tr := range strs.Transitions {
		require.Equal(t, reserve.ID, *tr.StepID)
	}

	// Operator actions: 422 for a step not in error; a bad action; resolve resumes the task.
	stepURL := func(task taskDoc, name string) string {
		return "/v1/tasks/" + task.ID.String() + "/workflow_steps/" + stepNamed(t, task, name).ID.String()
	}
	notAllowed := b.do(t, "PATCH", stepURL(one, "reserve"), map[string]any{"action": "retry"})
	require.Equal(t, http.StatusUnprocessableEntity, notAllowed.status)
	require.Equal(t, ProblemType+"not-allowed", notAllowed.problem(t).Type)
	require.Equal(t, http.StatusBadRequest, b.do(t, "PATCH", stepURL(one, "reserve"), map[string]any{"action": "fix"}).status)
	require.Equal(t, http.StatusBadRequest, b.do(t, "PATCH", stepURL(one, "reserve"), map[string]any{"action": "retry", "result": 1}).status)
	badText := b.do(t, "PATCH", stepURL(blocked, "reserve"), map[string]any{"action": "resolve", "operator": "a\u0000b"})
	require.Equal(t, http.StatusBadRequest, badText.status)
	require.Equal(t, "operator", badText.problem(t).Field)
	r = b.do(t, "PATCH", stepURL(blocked, "reserve"), map[string]any{"action": "resolve", "operator": "ann", "reason": "restocked by hand"})
	require.Equal(t, http.StatusOK, r.status, "body %s", r.body)
	r.decode(t, &st)
	require.Equal(t, "resolved_manually", st.State)
	b.waitState(t, failed.ID, tasker.TaskComplete)
	// complete, on another failed task, gives the step a result its dependents see.
	failed2 := b.create(t, "fail", nil)
	blocked2 := b.waitState(t, failed2.ID, tasker.TaskBlockedByFailures)
	r = b.do(t, "PATCH", stepURL(blocked2, "reserve"), map[string]any{"action": "complete", "result": map[string]string{"reservation": "manual"}, "operator": "bob"})
	require.Equal(t, http.StatusOK, r.status, "body %s", r.body)
	fin := b.waitState(t, failed2.ID, tasker.TaskComplete)
	require.JSONEq(t, `{"reservation":"manual"}`, string(stepNamed(t, fin, "reserve").Result))
	// retry, on a third, runs the step again (and it fails again: its handler still says so).
	failed3 := b.create(t, "fail", nil)
	blocked3 := b.waitState(t, failed3.ID, tasker.TaskBlockedByFailures)
	r = b.do(t, "PATCH", stepURL(blocked3, "reserve"), map[string]any{"action": "retry", "operator": "cy"})
	require.Equal(t, http.StatusOK, r.status, "body %s", r.body)
	require.Eventually(t, func() bool {
		var s stepDoc
		b.do(t, "GET", stepURL(blocked3, "reserve"), nil).decode(t, &s)
		return s.State == "error" && s.Attempts == 1 && s.LastError != nil
	}, 30*time.Second, 20*time.Millisecond)
	var audit transitionsDoc
	b.do(t, "GET", stepURL(blocked3, "reserve")+"/transitions", nil).decode(t, &audit)
	var byOperator []string
	for _, tr := range audit.Transitions {
		if strings.Contains(string(tr.Metadata), `"operator":"cy"`) {
			byOperator = append(byOperator, tr.From+" → "+tr.To)
		}
	}
	require.NotEmpty(t, byOperator, "the retry is in the step's audit trail with its operator: %+v", audit.Transitions)

	// Cancel: the held task is cancelled; cancelling it again is not allowed.
	r = b.do(t, "DELETE", "/v1/tasks/"+held.ID.String()+"?reason=customer+asked", nil)
	require.Equal(t, http.StatusOK, r.status, "body %s", r.body)
	var cancelled taskDoc
	r.decode(t, &cancelled)
	require.Equal(t, "cancelled", cancelled.State)
	again := b.do(t, "DELETE", "/v1/tasks/"+held.ID.String(), nil)
	require.Equal(t, http.StatusUnprocessableEntity, again.status)
	require.Equal(t, ProblemType+"not-allowed", again.problem(t).Type)
	require.Equal(t, http.StatusNotFound, b.do(t, "DELETE", "/v1/tasks/"+uuid.NewString(), nil).status)

	// Templates.
	var tmpls templatesDoc
	b.do(t, "GET", "/v1/templates", nil).decode(t, &tmpls)
	require.Len(t, tmpls.Templates, 1)
	require.Equal(t, "order", tmpls.Templates[0].Name)
	require.Equal(t, []string{"validate"}, tmpls.Templates[0].Steps[1].Dependencies)
	require.False(t, tmpls.Templates[0].Steps[1].Retryable)
	var tmpl templateDoc
	b.do(t, "GET", "/v1/templates/shop/order/1.0.0", nil).decode(t, &tmpl)
	require.Contains(t, tmpl.Mermaid, "flowchart")
	require.Contains(t, string(tmpl.Definition), `"namespace_name":"shop"`)
	require.Equal(t, http.StatusNotFound, b.do(t, "GET", "/v1/templates/shop/order/9.9.9", nil).status)

	// The dead-letter queue: an entry for the blocked task, listed, read, resolved once.
	entry, err := b.e.DeadLetterTask(ctx, failed3.ID, tasker.DeadLetterRequest{By: "test", Reason: "stuck"})
	require.NoError(t, err)
	var dl deadLettersDoc
	b.do(t, "GET", "/v1/dlq?status=pending&namespace=shop", nil).decode(t, &dl)
	require.Len(t, dl.Entries, 1)
	require.Equal(t, entry.ID, dl.Entries[0].ID)
	require.Equal(t, "manual_dlq", dl.Entries[0].Reason)
	require.Equal(t, http.StatusBadRequest, b.do(t, "GET", "/v1/dlq?status=lost", nil).status)
	require.Equal(t, http.StatusBadRequest, b.do(t, "GET", "/v1/dlq?cursor=nope", nil).status)
	var ent deadLetterDoc
	b.do(t, "GET", "/v1/dlq/task/"+failed3.ID.String(), nil).decode(t, &ent)
	require.Equal(t, entry.ID, ent.ID)
	require.Equal(t, http.StatusNotFound, b.do(t, "GET", "/v1/dlq/task/"+done.ID.String(), nil).status)
	var inv investigationDoc
	b.do(t, "GET", "/v1/dlq/investigation?limit=5", nil).decode(t, &inv)
	require.Equal(t, 1, inv.Pending)
	require.NotNil(t, inv.Entries[0].Score)
	noBy := b.do(t, "PATCH", "/v1/dlq/entry/"+entry.ID.String(), map[string]any{"status": "manually_resolved"})
	require.Equal(t, http.StatusBadRequest, noBy.status)
	require.Equal(t, "By", noBy.problem(t).Field)
	require.Equal(t, http.StatusBadRequest, b.do(t, "PATCH", "/v1/dlq/entry/"+entry.ID.String(), map[string]any{"status": "fixed", "resolved_by": "ann"}).status)
	r = b.do(t, "PATCH", "/v1/dlq/entry/"+entry.ID.String(), map[string]any{"status": "permanently_failed", "resolved_by": "ann", "notes": "gone"})
	require.Equal(t, http.StatusOK, r.status, "body %s", r.body)
	r.decode(t, &ent)
	require.Equal(t, "permanently_failed", ent.Status)
	require.Equal(t, "ann", ent.ResolvedBy)
	twice := b.do(t, "PATCH", "/v1/dlq/entry/"+entry.ID.String(), map[string]any{"status": "cancelled", "resolved_by": "ann"})
	require.Equal(t, http.StatusUnprocessableEntity, twice.status)
	require.Equal(t, http.StatusNotFound, b.do(t, "PATCH", "/v1/dlq/entry/"+uuid.NewString(), map[string]any{"status": "cancelled", "resolved_by": "ann"}).status)
	var stats statsDoc
	b.do(t, "GET", "/v1/dlq/stats?namespace=shop", nil).decode(t, &stats)
	require.Len(t, stats.Stats, 1)
	require.Equal(t, 1, stats.Stats[0].ByStatus["permanently_failed"])

	// Analytics.
	var perf performanceDoc
	b.do(t, "GET", "/v1/analytics/performance?namespace=shop&since="+time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), nil).decode(t, &perf)
	require.Len(t, perf.Templates, 1)
	require.Equal(t, 5, perf.Templates[0].Tasks)
	require.Equal(t, 3, perf.Templates[0].Completed)
	require.Len(t, perf.Steps, 4)
	var bn bottlenecksDoc
	b.do(t, "GET", "/v1/analytics/bottlenecks?limit=2", nil).decode(t, &bn)
	require.Len(t, bn.Slowest, 2)
	require.Equal(t, http.StatusBadRequest, b.do(t, "GET", "/v1/analytics/performance?since=yesterday", nil).status)

	// Health: the report and the probes.
	var health struct {
		Status   string `json:"status"`
		WorkerID string `json:"worker_id"`
	}
	r = b.do(t, "GET", "/v1/health", nil)
	require.Equal(t, http.StatusOK, r.status, "body %s", r.body)
	r.decode(t, &health)
	require.Contains(t, []string{"ok", "degraded"}, health.Status)
	require.Equal(t, b.e.WorkerID(), health.WorkerID)
	require.Equal(t, http.StatusOK, b.do(t, "GET", "/v1/health/live", nil).status)
	require.Equal(t, http.StatusOK, b.do(t, "GET", "/v1/health/ready", nil).status)
	require.Equal(t, http.StatusNotFound, b.do(t, "GET", "/v1/health/sideways", nil).status)

	// No such route, and a method a path does not take.
	require.Equal(t, http.StatusNotFound, b.do(t, "GET", "/v1/nothing", nil).problem(t).Status)
	put := b.do(t, "PUT", "/v1/tasks/"+done.ID.String(), `{}`)
	require.Equal(t, http.StatusMethodNotAllowed, put.status)
	require.Equal(t, "GET, DELETE", put.header.Get("Allow"))
	put.problem(t)
	require.Equal(t, http.StatusOK, b.do(t, "GET", "/openapi.json", nil).status)

	for _, rt := range routes {
		require.True(t, b.covered[rt.method+" "+rt.path], "the test reaches %s %s", rt.method, rt.path)
	}
}

// TestBodyLimit: a body over WithMaxBodyBytes gets 413, before the engine sees it.
func TestBodyLimit(t *testing.T) {
	t.Parallel()
	b := setup(t, WithMaxBodyBytes(256))
	big := fmt.Sprintf(`{"namespace":"shop","name":"order","context":{"order_id":%q,"amount":1}}`, strings.Repeat("x", 300))
	r := b.do(t, "POST", "/v1/tasks", big)
	require.Equal(t, http.StatusRequestEntityTooLarge, r.status)
	require.Equal(t, ProblemType+"payload-too-large", r.problem(t).Type)
	list, err := b.e.ListTasks(context.Background(), tasker.ListOptions{})
	require.NoError(t, err)
	require.Empty(t, list)
}

package httpapi_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/httpapi"
	"github.com/tasker-systems/tasker/store/memory"
)

// Mount the API and the UI under /tasker/ beside an application's own routes, with an Authorizer
// that lets anyone read and only operators write. The UI is then at /tasker/ui/ and the OpenAPI
// document at /tasker/openapi.json.
func ExampleNew() {
	engine, err := tasker.NewEngine(tasker.Config{Store: memory.New(), WorkerID: "example"})
	if err != nil {
		panic(err)
	}
	tmpl, err := tasker.ParseTemplate([]byte(`
name: greet
namespace_name: demo
version: 1.0.0
input_schema: {type: object, required: [name], properties: {name: {type: string}}}
steps: [{name: hello, handler: {callable: hello}}]
`))
	if err != nil {
		panic(err)
	}
	if err := engine.Register(tmpl); err != nil {
		panic(err)
	}
	operatorsWrite := func(r *http.Request, a httpapi.Action) error {
		if a.Write() && r.Header.Get("X-Role") != "operator" { // the service's own check
			return errors.New("operators only")
		}
		return nil
	}
	mux := http.NewServeMux()
	mux.Handle("/tasker/", http.StripPrefix("/tasker", httpapi.New(engine, httpapi.WithAuthorizer(operatorsWrite))))
	// In a program: http.ListenAndServe(":8080", mux), and engine.RunWorkers(ctx) beside it.

	send := func(method, path, role, body string) {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Role", role)
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		var doc struct {
			State      string   `json:"state"`
			Type       string   `json:"type"`
			Violations []string `json:"violations"`
		}
		_ = json.Unmarshal(rec.Body.Bytes(), &doc)
		fmt.Println(method, path, role, "→", rec.Code, rec.Header().Get("Content-Type"), doc.State, strings.TrimPrefix(doc.Type, httpapi.ProblemType), doc.Violations)
	}
	send("POST", "/tasker/v1/tasks", "viewer", `{"namespace":"demo","name":"greet","context":{"name":"Ada"}}`)
	send("POST", "/tasker/v1/tasks", "operator", `{"namespace":"demo","name":"greet","context":{}}`)
	send("POST", "/tasker/v1/tasks", "operator", `{"namespace":"demo","name":"greet","context":{"name":"Ada"}}`)
	// Output:
	// POST /tasker/v1/tasks viewer → 403 application/problem+json  forbidden []
	// POST /tasker/v1/tasks operator → 400 application/problem+json  invalid-input [at /: missing property 'name']
	// POST /tasker/v1/tasks operator → 201 application/json; charset=utf-8 steps_in_process  []
}

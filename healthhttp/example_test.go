package healthhttp_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/healthhttp"
	"github.com/tasker-systems/tasker/store/memory"
)

// Mount the health endpoints beside an application's own routes: /health/live for a liveness
// probe, /health/ready for a load balancer or a readiness probe, /health/detailed for people and
// dashboards.
func ExampleHandler() {
	engine, err := tasker.NewEngine(tasker.Config{Store: memory.New(), WorkerID: "example"})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/health/", healthhttp.Handler(engine, healthhttp.WithRequireWorkers()))
	// In a program: http.ListenAndServe(":8080", mux), and engine.RunWorkers(ctx) beside it.

	for _, req := range []string{"GET /health/live", "GET /health/ready", "POST /health/ready"} {
		method, path, _ := strings.Cut(req, " ")
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
		body := strings.TrimSpace(rec.Body.String())
		if path == "/health/ready" && method == http.MethodGet {
			var ready struct { // the ping's latency varies: show the verdict
				Ready   bool     `json:"ready"`
				Reasons []string `json:"reasons"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &ready); err != nil {
				panic(err)
			}
			body = fmt.Sprintf("ready=%v %q", ready.Ready, ready.Reasons)
		}
		fmt.Println(req, rec.Code, body)
	}
	// Output:
	// GET /health/live 200 {"status":"ok","worker_id":"example"}
	// GET /health/ready 503 ready=false ["the workers do not run"]
	// POST /health/ready 405 {"error":"method POST not allowed; use GET or HEAD"}
}

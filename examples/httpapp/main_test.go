package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/testdb"
)

// newTestApp returns the service on a fresh schema with its workers running until the test ends.
func newTestApp(t *testing.T) (*App, *testdb.DB) {
	t.Helper()
	db := testdb.New(t, testdb.WithMaxConns(20))
	app, err := NewApp(context.Background(), db.Pool, db.Schema, logr.Discard())
	require.NoError(t, err)
	return app, db
}

func startWorkers(t *testing.T, app *App) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.RunWorkers(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(30 * time.Second):
			t.Error("RunWorkers did not stop")
		}
	})
}

// post sends body to POST /orders; it is safe to call from any goroutine.
func post(base, body string) (int, []byte, error) {
	resp, err := http.Post(base+"/orders", "application/json", strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.Header.Get("Content-Type") != "application/json" {
		err = fmt.Errorf("content type %q", resp.Header.Get("Content-Type"))
	}
	return resp.StatusCode, b, err
}

func postOrder(t *testing.T, base, body string) (int, []byte) {
	t.Helper()
	code, b, err := post(base, body)
	require.NoError(t, err)
	return code, b
}

func getOrder(t *testing.T, base string, id any) (int, []byte) {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("%s/orders/%v", base, id))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b
}

func createOrder(t *testing.T, base, item string, qty int) OrderCreated {
	t.Helper()
	code, body := postOrder(t, base, fmt.Sprintf(`{"item":%q,"quantity":%d}`, item, qty))
	require.Equal(t, http.StatusCreated, code, string(body))
	var c OrderCreated
	require.NoError(t, json.Unmarshal(body, &c))
	require.Positive(t, c.OrderID)
	require.NotEqual(t, uuid.Nil, c.TaskID)
	return c
}

// waitComplete polls GET /orders/{id} until the order's task is complete.
func waitComplete(t *testing.T, base string, id int64) OrderStatus {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body := getOrder(t, base, id)
		require.Equal(t, http.StatusOK, code, string(body))
		var st OrderStatus
		require.NoError(t, json.Unmarshal(body, &st))
		if st.TaskState == tasker.TaskComplete {
			return st
		}
		require.False(t, st.TaskState == tasker.TaskBlockedByFailures || st.TaskState == tasker.TaskError,
			"task failed: %s", body)
		if time.Now().After(deadline) {
			t.Fatalf("order %d not complete after 20s: %s", id, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func count(t *testing.T, db *testdb.DB, table string) int {
	t.Helper()
	var n int
	require.NoError(t, db.Pool.QueryRow(context.Background(),
		fmt.Sprintf(`SELECT count(*) FROM %q.%q`, db.Schema, table)).Scan(&n))
	return n
}

func requireCompleteOrder(t *testing.T, st OrderStatus, c OrderCreated, item string, qty int) {
	t.Helper()
	require.Equal(t, c.OrderID, st.OrderID)
	require.Equal(t, c.TaskID, st.TaskID)
	require.Equal(t, item, st.Item)
	require.Equal(t, qty, st.Quantity)
	require.WithinDuration(t, time.Now(), st.CreatedAt, time.Minute)
	require.Len(t, st.Steps, 3)
	for i, name := range []string{"reserve", "charge", "notify"} {
		s := st.Steps[i]
		require.Equal(t, name, s.Name)
		require.Equal(t, tasker.StepComplete, s.State, name)
		require.Equal(t, 1, s.Attempts, name)
		require.Equal(t, 3, s.MaxAttempts, name)
		require.Empty(t, s.Error, name)
	}
	var notify struct {
		Message string `json:"message"`
	}
	require.NoError(t, json.Unmarshal(st.Steps[2].Result, &notify))
	require.Equal(t, fmt.Sprintf("order %d: %d x %s, charged %d cents (C-%d)",
		c.OrderID, qty, item, 1250*qty, c.OrderID), notify.Message)
}

func TestOrdersAPI(t *testing.T) {
	t.Parallel()
	app, db := newTestApp(t)
	startWorkers(t, app)
	srv := httptest.NewServer(app.Handler())
	t.Cleanup(srv.Close)

	// A good order: 201, then its task runs to the end.
	c := createOrder(t, srv.URL, "widget", 2)
	var rowTask uuid.UUID
	require.NoError(t, db.Pool.QueryRow(context.Background(),
		fmt.Sprintf(`SELECT task_id FROM %q.orders WHERE id = $1`, db.Schema), c.OrderID).Scan(&rowTask))
	require.Equal(t, c.TaskID, rowTask, "the row records its task")
	st := waitComplete(t, srv.URL, c.OrderID)
	requireCompleteOrder(t, st, c, "widget", 2)
	task, err := app.Engine().GetTask(context.Background(), c.TaskID)
	require.NoError(t, err)
	require.Equal(t, fmt.Sprintf("order-%d", c.OrderID), task.CorrelationID)
	require.JSONEq(t, fmt.Sprintf(`{"order_id":%d,"item":"widget","quantity":2}`, c.OrderID), string(task.Context))

	// Unknown and malformed ids.
	code, body := getOrder(t, srv.URL, 999999)
	require.Equal(t, http.StatusNotFound, code, string(body))
	require.JSONEq(t, `{"error":"no order 999999"}`, string(body))
	code, _ = getOrder(t, srv.URL, "abc")
	require.Equal(t, http.StatusBadRequest, code)

	// Bad orders: 400 with a JSON error, and nothing written.
	orders, tasks := count(t, db, "orders"), count(t, db, "tasks")
	require.Equal(t, 1, orders)
	require.Equal(t, 1, tasks)
	for _, tc := range []struct {
		body, error, detail string
	}{
		{`{"item":"widget",`, "invalid JSON", ""},
		{`not json`, "invalid JSON", ""},
		{`{"item":"widget","quantity":"two"}`, "invalid JSON", ""},
		{`{"item":"widget","quantity":1.5}`, "invalid JSON", ""},
		{`{"item":"widget","quantity":1,"color":"red"}`, "invalid JSON", ""},
		{`{"item":"widget","quantity":1} {}`, "invalid JSON", ""},
		// These pass Go's decoding and are rejected by the template's input_schema
		// (*tasker.InputError) after the row was inserted: the rollback removes it.
		{`{"item":"widget","quantity":0}`, "invalid order", "quantity"},
		{`{"item":"widget","quantity":-3}`, "invalid order", "quantity"},
		{`{"item":"widget"}`, "invalid order", "quantity"},
		{`{"item":"","quantity":1}`, "invalid order", "item"},
		{`{"item":"widget","quantity":5000}`, "invalid order", "quantity"},
	} {
		code, body := postOrder(t, srv.URL, tc.body)
		require.Equal(t, http.StatusBadRequest, code, "%s → %s", tc.body, body)
		var e ErrorBody
		require.NoError(t, json.Unmarshal(body, &e), string(body))
		require.True(t, strings.HasPrefix(e.Error, tc.error), "%s → %s", tc.body, body)
		if tc.detail != "" {
			require.NotEmpty(t, e.Details, string(body))
			require.Contains(t, strings.Join(e.Details, "\n"), tc.detail, string(body))
		}
	}
	require.Equal(t, orders, count(t, db, "orders"))
	require.Equal(t, tasks, count(t, db, "tasks"))

	// A failure after CreateTaskTx rolls back the order and the task together.
	stepsBefore, transitionsBefore := count(t, db, "steps"), count(t, db, "step_transitions")
	code, body = postOrder(t, srv.URL, fmt.Sprintf(`{"item":%q,"quantity":1}`, FailAfterCreateItem))
	require.Equal(t, http.StatusInternalServerError, code, string(body))
	require.Contains(t, string(body), "simulated failure")
	require.Equal(t, orders, count(t, db, "orders"), "no order")
	require.Equal(t, tasks, count(t, db, "tasks"), "no task")
	require.Equal(t, stepsBefore, count(t, db, "steps"), "no steps")
	require.Equal(t, transitionsBefore, count(t, db, "step_transitions"), "no transitions")
	// Nothing runs: give the workers time to find a message, if one had escaped.
	time.Sleep(500 * time.Millisecond)
	require.Zero(t, count(t, db, "queue_messages"), "no message left or escaped")
	for _, r := range app.stepRuns() {
		require.NotEqual(t, FailAfterCreateItem, r.Item, "a step of the rolled-back order ran: %+v", r)
	}
	require.Len(t, app.stepRuns(), 3, "only the first order's three steps ran")

	// The service still works: several orders at once all complete.
	const n = 5
	created := make([]OrderCreated, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			code, body, err := post(srv.URL, fmt.Sprintf(`{"item":"gadget-%d","quantity":%d}`, i, i+1))
			if err != nil || code != http.StatusCreated {
				t.Errorf("POST gadget-%d: %d %s %v", i, code, body, err)
				return
			}
			if err := json.Unmarshal(body, &created[i]); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	require.False(t, t.Failed())
	for i, c := range created {
		requireCompleteOrder(t, waitComplete(t, srv.URL, c.OrderID), c, fmt.Sprintf("gadget-%d", i), i+1)
	}
	require.Equal(t, 1+n, count(t, db, "orders"))
	require.Equal(t, 1+n, count(t, db, "tasks"))
	require.Len(t, app.stepRuns(), 3*(1+n))
}

// TestServe runs the real server loop on a free port and stops it as a signal would.
func TestServe(t *testing.T) {
	t.Parallel()
	app, _ := newTestApp(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- serve(ctx, app, ln, pw); pw.Close() }()
	lines := bufio.NewScanner(pr)
	require.True(t, lines.Scan())
	base := "http://" + ln.Addr().String()
	require.Equal(t, "httpapp: listening on "+base+" (Ctrl-C to stop)", lines.Text())
	rest := make(chan string, 1)
	go func() {
		var b strings.Builder
		for lines.Scan() {
			b.WriteString(lines.Text() + "\n")
		}
		rest <- b.String()
	}()

	c := createOrder(t, base, "sprocket", 3)
	requireCompleteOrder(t, waitComplete(t, base, c.OrderID), c, "sprocket", 3)

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not return after its context ended")
	}
	require.Equal(t, "httpapp: shutting down\nhttpapp: stopped\n", <-rest)
	_, err = http.Get(base + "/orders/1")
	require.Error(t, err, "the listener is closed")
}

// TestTaskerMounted: tasker's API and UI answer under /tasker/; reads are open, and a write needs
// the operator token (401 without it, 403 with a wrong one).
func TestTaskerMounted(t *testing.T) {
	t.Parallel()
	app, _ := newTestApp(t)
	app.OperatorToken = "s3cret"
	startWorkers(t, app)
	srv := httptest.NewServer(app.Handler())
	t.Cleanup(srv.Close)
	c := createOrder(t, srv.URL, "gadget", 1)
	waitComplete(t, srv.URL, c.OrderID)

	resp, err := http.Get(srv.URL + "/tasker/v1/tasks/" + c.TaskID.String())
	require.NoError(t, err)
	var task struct {
		ID            uuid.UUID `json:"id"`
		State         string    `json:"state"`
		CorrelationID string    `json:"correlation_id"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&task))
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "complete", task.State)
	require.Equal(t, fmt.Sprintf("order-%d", c.OrderID), task.CorrelationID)

	resp, err = http.Get(srv.URL + "/tasker/ui/")
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, resp.Header.Get("Content-Type"), "text/html")

	cancel := func(token string) int {
		req, err := http.NewRequest(http.MethodDelete, srv.URL+"/tasker/v1/tasks/"+c.TaskID.String(), nil)
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		return resp.StatusCode
	}
	require.Equal(t, http.StatusUnauthorized, cancel(""))
	require.Equal(t, http.StatusForbidden, cancel("guess"))
	require.Equal(t, http.StatusUnprocessableEntity, cancel("s3cret"), "allowed, and refused by the engine: the task finished")
}

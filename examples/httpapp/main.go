// Command httpapp is an order service that runs tasker's workers in its own process, beside its
// HTTP handlers. Creating an order inserts a row and creates its workflow task in ONE database
// transaction (Engine.CreateTaskTx): either both exist or neither does, and the task's steps run
// only once the transaction commits.
//
//	go run ./examples/httpapp                 # listens on :8080 until Ctrl-C
//	go run ./examples/httpapp -addr :9090
//
//	curl -i -X POST localhost:8080/orders -d '{"item":"widget","quantity":2}'
//	    → 201 {"order_id":1,"task_id":"…"}
//	curl -s localhost:8080/orders/1
//	    → 200 the order, its task's state and each step's state and attempts
//	curl -i -X POST localhost:8080/orders -d '{"item":"widget","quantity":0}'
//	    → 400 {"error":"invalid order","details":[…]} (the template's input_schema says why)
//	curl -i -X POST localhost:8080/orders -d '{"item":"fail-after-create","quantity":1}'
//	    → 500: the handler fails after CreateTaskTx and rolls back; no order, no task, nothing runs
//
// tasker's API and web UI are mounted at /tasker/ (package httpapi): open
// http://localhost:8080/tasker/ui/ to watch the orders' workflows, and
// http://localhost:8080/tasker/openapi.json for the API. Anyone may read; operator actions
// (cancel, retry, resolve, complete, dead-letter resolutions) need TASKER_OPERATOR_TOKEN, sent as
// "Authorization: Bearer <token>" or the tasker_operator cookie, or, when it is unset, a request
// from this machine:
//
//	curl -s localhost:8080/tasker/v1/tasks?namespace=shop
//
// Each order runs the workflow reserve → charge → notify. SIGINT or SIGTERM stops the HTTP
// server (http.Server.Shutdown lets requests in flight finish) and then the workers (handlers in
// flight get tasker.Config.ShutdownTimeout to finish).
//
// It reads TASKER_DATABASE_URL or DATABASE_URL (default: the local server,
// postgres://postgres@127.0.0.1:5432/postgres), migrates its own schema (tasker_httpapp) and keeps
// its orders table there too. Set TASKER_DEBUG=1 to see the engine's logs.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/httpapi"
	"github.com/tasker-systems/tasker/internal/exampledb"
	"github.com/tasker-systems/tasker/migrations"
	"github.com/tasker-systems/tasker/store/postgres"
)

// templateYAML is the workflow each order runs, in Tasker Core's template layout. Its
// input_schema is the order's validation: a request that breaks it is a 400.
const templateYAML = `
name: process_order
namespace_name: shop
version: 1.0.0
description: "reserve -> charge -> notify"
input_schema:
  type: object
  required: [order_id, item, quantity]
  additionalProperties: false
  properties:
    order_id: {type: integer, minimum: 1}
    item: {type: string, minLength: 1, maxLength: 200}
    quantity: {type: integer, minimum: 1, maximum: 1000}
steps:
  - name: reserve
    handler: {callable: reserve_stock}
    retry: {retryable: true, max_attempts: 3, backoff: exponential, backoff_base_ms: 100}
    timeout_seconds: 5
  - name: charge
    handler:
      callable: charge_card
      initialization: {unit_price_cents: 1250}
    dependencies: [reserve]
    retry: {retryable: true, max_attempts: 3, backoff: exponential, backoff_base_ms: 100}
    timeout_seconds: 5
  - name: notify
    handler: {callable: send_confirmation}
    dependencies: [charge]
    retry: {retryable: true, max_attempts: 3, backoff: exponential, backoff_base_ms: 100}
    timeout_seconds: 5
`

// Schema is where the example keeps tasker's tables and its own orders table.
const Schema = "tasker_httpapp"

// FailAfterCreateItem is an item name that makes POST /orders fail after CreateTaskTx, to show
// that rolling back the caller's transaction leaves neither an order nor a task behind.
const FailAfterCreateItem = "fail-after-create"

// StepDelay is how long each step's handler pretends to work.
const StepDelay = 20 * time.Millisecond

// OrderRequest is the body of POST /orders.
type OrderRequest struct {
	Item     string `json:"item"`
	Quantity int    `json:"quantity"`
}

// OrderCreated is the body of a 201 answer to POST /orders.
type OrderCreated struct {
	OrderID int64     `json:"order_id"`
	TaskID  uuid.UUID `json:"task_id"`
}

// OrderStatus is the body of GET /orders/{id}: the order and its task's progress.
type OrderStatus struct {
	OrderID   int64            `json:"order_id"`
	Item      string           `json:"item"`
	Quantity  int              `json:"quantity"`
	CreatedAt time.Time        `json:"created_at"`
	TaskID    uuid.UUID        `json:"task_id"`
	TaskState tasker.TaskState `json:"task_state"`
	Steps     []StepStatus     `json:"steps"`
}

// StepStatus is one step of an order's task.
type StepStatus struct {
	Name        string           `json:"name"`
	State       tasker.StepState `json:"state"`
	Attempts    int              `json:"attempts"`
	MaxAttempts int              `json:"max_attempts"`
	Result      json.RawMessage  `json:"result,omitempty"`
	Error       string           `json:"error,omitempty"`
}

// ErrorBody is the body of every error answer.
type ErrorBody struct {
	Error   string   `json:"error"`
	Details []string `json:"details,omitempty"`
}

// taskInput is the task's context: the order as the workflow sees it.
type taskInput struct {
	OrderID  int64  `json:"order_id"`
	Item     string `json:"item"`
	Quantity int    `json:"quantity"`
}

// stepRun records one handler call, so that tests can see what ran.
type stepRun struct {
	OrderID int64
	Item    string
	Step    string
	Attempt int
}

// App is the order service: its HTTP handlers and the workflow engine they feed.
type App struct {
	// OperatorToken, when set, is what operator actions in /tasker/ need (see operatorAuthorizer);
	// "" allows them from the loopback interface only.
	OperatorToken string

	pool   *pgxpool.Pool
	orders string // the orders table, quoted and schema-qualified
	engine *tasker.Engine
	log    logr.Logger

	mu   sync.Mutex
	runs []stepRun
}

// NewApp migrates schema, creates the orders table in it when missing, and returns the service
// with its template and handlers registered; logger receives the engine's logs and the service's
// request failures. Its workers run once RunWorkers is called.
func NewApp(ctx context.Context, pool *pgxpool.Pool, schema string, logger logr.Logger) (*App, error) {
	if err := migrations.Migrate(ctx, pool, migrations.WithSchema(schema)); err != nil {
		return nil, err
	}
	a := &App{pool: pool, orders: pgx.Identifier{schema, "orders"}.Sanitize(), log: logger}
	if _, err := pool.Exec(ctx, `
		CREATE TABLE IF NOT EXISTS `+a.orders+` (
			id         bigserial PRIMARY KEY,
			item       text NOT NULL,
			quantity   int NOT NULL,
			task_id    uuid,
			created_at timestamptz NOT NULL DEFAULT now()
		)`); err != nil {
		return nil, fmt.Errorf("create the orders table: %w", err)
	}
	engine, err := tasker.NewEngine(tasker.Config{
		Store:  postgres.New(pool, postgres.WithSchema(schema)),
		Logger: logger,
	})
	if err != nil {
		return nil, err
	}
	tmpl, err := tasker.ParseTemplate([]byte(templateYAML))
	if err != nil {
		return nil, err
	}
	if err := engine.Register(tmpl); err != nil {
		return nil, err
	}
	engine.HandleFunc("reserve_stock", a.step(func(in taskInput, _ *tasker.Step) (any, error) {
		return map[string]any{"reservation": fmt.Sprintf("R-%d", in.OrderID), "units": in.Quantity}, nil
	}))
	engine.HandleFunc("charge_card", a.step(func(in taskInput, s *tasker.Step) (any, error) {
		var cfg struct {
			UnitPriceCents int64 `json:"unit_price_cents"`
		}
		if err := s.DecodeConfig(&cfg); err != nil {
			return nil, tasker.Permanent(err)
		}
		var res struct {
			Reservation string `json:"reservation"`
		}
		if err := s.DependencyResult("reserve", &res); err != nil {
			return nil, tasker.Permanent(err)
		}
		return map[string]any{
			"charge":       fmt.Sprintf("C-%d", in.OrderID),
			"reservation":  res.Reservation,
			"amount_cents": cfg.UnitPriceCents * int64(in.Quantity),
		}, nil
	}))
	engine.HandleFunc("send_confirmation", a.step(func(in taskInput, s *tasker.Step) (any, error) {
		var ch struct {
			Charge      string `json:"charge"`
			AmountCents int64  `json:"amount_cents"`
		}
		if err := s.DependencyResult("charge", &ch); err != nil {
			return nil, tasker.Permanent(err)
		}
		return map[string]any{"message": fmt.Sprintf("order %d: %d x %s, charged %d cents (%s)",
			in.OrderID, in.Quantity, in.Item, ch.AmountCents, ch.Charge)}, nil
	}))
	a.engine = engine
	return a, nil
}

// step wraps a handler body: it decodes the order, records the run, and pretends to work for
// StepDelay.
func (a *App) step(body func(in taskInput, s *tasker.Step) (any, error)) func(context.Context, *tasker.Step) (any, error) {
	return func(ctx context.Context, s *tasker.Step) (any, error) {
		var in taskInput
		if err := s.Input(&in); err != nil {
			return nil, tasker.Permanent(err)
		}
		a.mu.Lock()
		a.runs = append(a.runs, stepRun{OrderID: in.OrderID, Item: in.Item, Step: s.Name, Attempt: s.Attempt})
		a.mu.Unlock()
		select {
		case <-time.After(StepDelay):
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
		return body(in, s)
	}
}

// stepRuns returns a copy of the handler calls so far.
func (a *App) stepRuns() []stepRun {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]stepRun(nil), a.runs...)
}

// Engine returns the service's workflow engine.
func (a *App) Engine() *tasker.Engine { return a.engine }

// RunWorkers runs the workflow's steps until ctx ends; see tasker.Engine.RunWorkers.
func (a *App) RunWorkers(ctx context.Context) error { return a.engine.RunWorkers(ctx) }

// Handler returns the HTTP API: POST /orders and GET /orders/{id}, and tasker's own API and web UI
// under /tasker/ (package httpapi), guarded by operatorAuthorizer with a.OperatorToken.
func (a *App) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /orders", a.createOrder)
	mux.HandleFunc("GET /orders/{id}", a.getOrder)
	mux.Handle("/tasker/", http.StripPrefix("/tasker", httpapi.New(a.engine,
		httpapi.WithAuthorizer(operatorAuthorizer(a.OperatorToken)))))
	return mux
}

// createOrder inserts the order and creates its task in one transaction.
func (a *App) createOrder(w http.ResponseWriter, r *http.Request) {
	var req OrderRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, ErrorBody{Error: "invalid JSON: " + err.Error()})
		return
	}
	if dec.More() {
		writeJSON(w, http.StatusBadRequest, ErrorBody{Error: "invalid JSON: more than one value"})
		return
	}

	ctx := r.Context()
	tx, err := a.pool.Begin(ctx)
	if err != nil {
		a.serverError(w, "begin", err)
		return
	}
	// Rolls back unless committed below; WithoutCancel so that a client gone away does not keep
	// the rollback from reaching the database.
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	var orderID int64
	if err := tx.QueryRow(ctx, `INSERT INTO `+a.orders+` (item, quantity) VALUES ($1, $2) RETURNING id`,
		req.Item, req.Quantity).Scan(&orderID); err != nil {
		a.serverError(w, "insert order", err)
		return
	}
	task, err := a.engine.CreateTaskTx(ctx, tx, tasker.TaskRequest{
		Namespace: "shop", Name: "process_order",
		Context:       taskInput{OrderID: orderID, Item: req.Item, Quantity: req.Quantity},
		CorrelationID: fmt.Sprintf("order-%d", orderID),
	})
	var inputErr *tasker.InputError
	switch {
	case errors.As(err, &inputErr):
		// The template's input_schema rejected the order; the deferred rollback removes the row.
		writeJSON(w, http.StatusBadRequest, ErrorBody{Error: "invalid order", Details: inputErr.Violations})
		return
	case err != nil:
		a.serverError(w, "create task", err)
		return
	}
	if req.Item == FailAfterCreateItem {
		// Something after CreateTaskTx fails: the rollback takes the order and the task with it,
		// and the task's steps were never visible to any worker.
		a.serverError(w, "after create", errors.New("simulated failure after the task was created"))
		return
	}
	if _, err := tx.Exec(ctx, `UPDATE `+a.orders+` SET task_id = $1 WHERE id = $2`, task.ID, orderID); err != nil {
		a.serverError(w, "update order", err)
		return
	}
	if err := tx.Commit(ctx); err != nil {
		a.serverError(w, "commit", err)
		return
	}
	w.Header().Set("Location", fmt.Sprintf("/orders/%d", orderID))
	writeJSON(w, http.StatusCreated, OrderCreated{OrderID: orderID, TaskID: task.ID})
}

// getOrder returns the order with its task's progress.
func (a *App) getOrder(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		writeJSON(w, http.StatusBadRequest, ErrorBody{Error: "an order id is a positive integer"})
		return
	}
	ctx := r.Context()
	st := OrderStatus{OrderID: id}
	var taskID *uuid.UUID
	err = a.pool.QueryRow(ctx, `SELECT item, quantity, task_id, created_at FROM `+a.orders+` WHERE id = $1`, id).
		Scan(&st.Item, &st.Quantity, &taskID, &st.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		writeJSON(w, http.StatusNotFound, ErrorBody{Error: fmt.Sprintf("no order %d", id)})
		return
	}
	if err != nil {
		a.serverError(w, "read order", err)
		return
	}
	if taskID == nil { // cannot happen: the row and its task_id commit together
		a.serverError(w, "read order", fmt.Errorf("order %d has no task", id))
		return
	}
	task, err := a.engine.GetTask(ctx, *taskID)
	if err != nil {
		a.serverError(w, "read task", err)
		return
	}
	st.TaskID, st.TaskState = task.ID, task.State
	st.Steps = make([]StepStatus, 0, len(task.Steps))
	for _, s := range task.Steps {
		ss := StepStatus{Name: s.Name, State: s.State, Attempts: s.Attempts, MaxAttempts: s.MaxAttempts, Result: s.Result}
		if s.LastError != nil {
			ss.Error = s.LastError.Message
		}
		st.Steps = append(st.Steps, ss)
	}
	writeJSON(w, http.StatusOK, st)
}

func (a *App) serverError(w http.ResponseWriter, what string, err error) {
	a.log.Error(err, "request failed", "what", what)
	writeJSON(w, http.StatusInternalServerError, ErrorBody{Error: what + ": " + err.Error()})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func main() {
	addr := flag.String("addr", ":8080", "address to listen on")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *addr, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "httpapp:", err)
		os.Exit(1)
	}
}

func logger() logr.Logger {
	level := slog.LevelWarn
	if os.Getenv("TASKER_DEBUG") != "" {
		level = slog.LevelDebug - 1
	}
	return logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// run connects to the database, listens on addr and serves until ctx ends.
func run(ctx context.Context, addr string, out io.Writer) error {
	pool, err := exampledb.Connect(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	app, err := NewApp(ctx, pool, Schema, logger())
	if err != nil {
		return err
	}
	app.OperatorToken = os.Getenv("TASKER_OPERATOR_TOKEN")
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return serve(ctx, app, ln, out)
}

// serve runs the HTTP server on ln and the workers until ctx ends, then stops the server (letting
// requests in flight finish) and then the workers (letting handlers in flight finish).
func serve(ctx context.Context, app *App, ln net.Listener, out io.Writer) error {
	srv := &http.Server{Handler: app.Handler(), ReadHeaderTimeout: 10 * time.Second}

	// The workers outlive ctx a little: they stop after the HTTP server, so that an order created
	// by a request in flight still has its workers.
	workCtx, stopWorkers := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWorkers()
	workersDone := make(chan error, 1)
	go func() { workersDone <- app.RunWorkers(workCtx) }()
	serverDone := make(chan error, 1)
	go func() { serverDone <- srv.Serve(ln) }()
	fmt.Fprintf(out, "httpapp: listening on http://%s (Ctrl-C to stop)\n", ln.Addr())

	var failed error
	select {
	case <-ctx.Done():
		fmt.Fprintln(out, "httpapp: shutting down")
	case err := <-serverDone:
		failed = fmt.Errorf("http server: %w", err)
		serverDone <- nil
	case err := <-workersDone:
		failed = fmt.Errorf("workers stopped: %w", err)
		workersDone <- nil
	}

	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		failed = errors.Join(failed, fmt.Errorf("http shutdown: %w", err))
	}
	if err := <-serverDone; err != nil && !errors.Is(err, http.ErrServerClosed) {
		failed = errors.Join(failed, fmt.Errorf("http server: %w", err))
	}
	stopWorkers()
	if err := <-workersDone; err != nil {
		failed = errors.Join(failed, fmt.Errorf("workers: %w", err))
	}
	if failed == nil {
		fmt.Fprintln(out, "httpapp: stopped")
	}
	return failed
}

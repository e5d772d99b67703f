// Command orderfulfillment runs a diamond workflow on PostgreSQL and prints its audit trail:
//
//	               ┌─▶ reserve_inventory ─┐
//	validate_order ┤                      ├─▶ ship_order
//	               └─▶ process_payment ───┘
//
// reserve_inventory and process_payment run in parallel once validate_order is done; ship_order
// joins both. process_payment meets a flaky payment gateway: its first two attempts fail with a
// plain (retryable) error and the third succeeds, with a 50 ms exponential backoff in between.
// Each step passes data to the next through its result; ship_order reads both parents' results.
//
//	go run ./examples/orderfulfillment
//
// It reads TASKER_DATABASE_URL or DATABASE_URL (default: the local server,
// postgres://postgres@127.0.0.1:5432/postgres) and migrates its own schema
// (tasker_orderfulfillment). Set TASKER_DEBUG=1 to see the engine's logs.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/exampledb"
	"github.com/tasker-systems/tasker/migrations"
	"github.com/tasker-systems/tasker/store/postgres"
)

// templateYAML is the workflow in Tasker Core's template layout.
const templateYAML = `
name: order_fulfillment
namespace_name: ecommerce
version: 1.0.0
description: "validate, then reserve stock and take payment in parallel, then ship"
input_schema:
  type: object
  required: [order_id, customer, items]
  properties:
    order_id: {type: string, minLength: 1}
    customer: {type: string, minLength: 1}
    items:
      type: array
      minItems: 1
      items:
        type: object
        required: [sku, quantity, price_cents]
        properties:
          sku: {type: string}
          quantity: {type: integer, minimum: 1}
          price_cents: {type: integer, minimum: 0}
steps:
  - name: validate_order
    handler: {callable: validate_order}
    retry: {retryable: false}
    timeout_seconds: 10
  - name: reserve_inventory
    handler:
      callable: reserve_inventory
      initialization: {warehouse: east-1}
    dependencies: [validate_order]
    retry: {retryable: true, max_attempts: 3, backoff: exponential, backoff_base_ms: 50, max_backoff_ms: 500}
    timeout_seconds: 10
  - name: process_payment
    handler: {callable: process_payment}
    dependencies: [validate_order]
    retry: {retryable: true, max_attempts: 5, backoff: exponential, backoff_base_ms: 50, max_backoff_ms: 500}
    timeout_seconds: 10
  - name: ship_order
    handler: {callable: ship_order}
    dependencies: [reserve_inventory, process_payment]
    retry: {retryable: true, max_attempts: 3, backoff: exponential, backoff_base_ms: 50, max_backoff_ms: 500}
    timeout_seconds: 10
`

// Schema is where the example keeps its tables.
const Schema = "tasker_orderfulfillment"

// FailingPaymentAttempts is how many attempts of process_payment fail before the gateway answers.
const FailingPaymentAttempts = 2

// Order is the task's context.
type Order struct {
	OrderID  string `json:"order_id"`
	Customer string `json:"customer"`
	Items    []Item `json:"items"`
}

// Item is one line of an order.
type Item struct {
	SKU        string `json:"sku"`
	Quantity   int    `json:"quantity"`
	PriceCents int64  `json:"price_cents"`
}

// Validated is validate_order's result.
type Validated struct {
	OrderID    string `json:"order_id"`
	Units      int    `json:"units"`
	TotalCents int64  `json:"total_cents"`
}

// Reservation is reserve_inventory's result.
type Reservation struct {
	ReservationID string   `json:"reservation_id"`
	Warehouse     string   `json:"warehouse"`
	SKUs          []string `json:"skus"`
	Units         int      `json:"units"`
}

// Payment is process_payment's result.
type Payment struct {
	PaymentID   string `json:"payment_id"`
	AmountCents int64  `json:"amount_cents"`
	Attempt     int    `json:"attempt"`
}

// Shipment is ship_order's result: it carries data from both of its parents.
type Shipment struct {
	TrackingNumber string `json:"tracking_number"`
	OrderID        string `json:"order_id"`
	ReservationID  string `json:"reservation_id"`
	Warehouse      string `json:"warehouse"`
	PaymentID      string `json:"payment_id"`
	AmountCents    int64  `json:"amount_cents"`
}

// Outcome is what one run produced: the finished task with its steps, and its audit trail.
type Outcome struct {
	Task        *tasker.Task
	Transitions []tasker.Transition
}

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "orderfulfillment:", err)
		os.Exit(1)
	}
}

// run connects to the database and runs one order through the workflow.
func run(ctx context.Context, out io.Writer) error {
	pool, err := exampledb.Connect(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	_, err = runWith(ctx, pool, Schema, out)
	return err
}

func logger() logr.Logger {
	if os.Getenv("TASKER_DEBUG") == "" {
		return logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug - 1}))
}

// newEngine migrates schema and returns an engine with the template and its handlers.
func newEngine(ctx context.Context, pool *pgxpool.Pool, schema string) (*tasker.Engine, error) {
	if err := migrations.Migrate(ctx, pool, migrations.WithSchema(schema)); err != nil {
		return nil, err
	}
	engine, err := tasker.NewEngine(tasker.Config{
		Store:  postgres.New(pool, postgres.WithSchema(schema)),
		Logger: logger(),
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
	engine.HandleFunc("validate_order", validateOrder)
	engine.HandleFunc("reserve_inventory", reserveInventory)
	engine.HandleFunc("process_payment", processPayment)
	engine.HandleFunc("ship_order", shipOrder)
	return engine, nil
}

func validateOrder(_ context.Context, s *tasker.Step) (any, error) {
	var o Order
	if err := s.Input(&o); err != nil {
		return nil, tasker.Permanent(err)
	}
	v := Validated{OrderID: o.OrderID}
	for _, it := range o.Items {
		v.Units += it.Quantity
		v.TotalCents += int64(it.Quantity) * it.PriceCents
	}
	if v.TotalCents == 0 {
		// A bad order will not get better by trying again.
		return nil, tasker.Permanent(fmt.Errorf("order %s is free of charge", o.OrderID))
	}
	return v, nil
}

func reserveInventory(_ context.Context, s *tasker.Step) (any, error) {
	var o Order
	if err := s.Input(&o); err != nil {
		return nil, tasker.Permanent(err)
	}
	var v Validated
	if err := s.DependencyResult("validate_order", &v); err != nil {
		return nil, tasker.Permanent(err)
	}
	var cfg struct {
		Warehouse string `json:"warehouse"`
	}
	if err := s.DecodeConfig(&cfg); err != nil {
		return nil, tasker.Permanent(err)
	}
	r := Reservation{ReservationID: "RES-" + o.OrderID, Warehouse: cfg.Warehouse, Units: v.Units}
	for _, it := range o.Items {
		r.SKUs = append(r.SKUs, it.SKU)
	}
	return r, nil
}

// processPayment charges the validated total. The gateway times out on the first
// FailingPaymentAttempts attempts: a plain error is retried under the step's retry policy.
func processPayment(_ context.Context, s *tasker.Step) (any, error) {
	var v Validated
	if err := s.DependencyResult("validate_order", &v); err != nil {
		return nil, tasker.Permanent(err)
	}
	if s.Attempt <= FailingPaymentAttempts {
		return nil, errors.New("payment gateway timeout")
	}
	return Payment{PaymentID: "PAY-" + v.OrderID, AmountCents: v.TotalCents, Attempt: s.Attempt}, nil
}

func shipOrder(_ context.Context, s *tasker.Step) (any, error) {
	var r Reservation
	if err := s.DependencyResult("reserve_inventory", &r); err != nil {
		return nil, tasker.Permanent(err)
	}
	var p Payment
	if err := s.DependencyResult("process_payment", &p); err != nil {
		return nil, tasker.Permanent(err)
	}
	var v Validated
	if err := s.DependencyResult("validate_order", &v); err != nil { // a grandparent: any ancestor is visible
		return nil, tasker.Permanent(err)
	}
	return Shipment{
		TrackingNumber: "TRK-" + v.OrderID,
		OrderID:        v.OrderID,
		ReservationID:  r.ReservationID,
		Warehouse:      r.Warehouse,
		PaymentID:      p.PaymentID,
		AmountCents:    p.AmountCents,
	}, nil
}

// runWith runs one order through the workflow on pool, in schema, prints its steps and audit
// trail to out, and returns them.
func runWith(ctx context.Context, pool *pgxpool.Pool, schema string, out io.Writer) (*Outcome, error) {
	engine, err := newEngine(ctx, pool, schema)
	if err != nil {
		return nil, err
	}
	workCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- engine.RunWorkers(workCtx) }()
	defer func() { stop(); <-done }()

	// The order ID is part of the task's identity (strict identity hashes the context), so each
	// run is a new task while a resubmitted order would return the existing one.
	order := Order{
		OrderID:  fmt.Sprintf("ORD-%d", time.Now().UnixNano()),
		Customer: "ada@example.com",
		Items: []Item{
			{SKU: "KB-01", Quantity: 1, PriceCents: 12900},
			{SKU: "MS-02", Quantity: 2, PriceCents: 2450},
		},
	}
	task, err := engine.CreateTask(ctx, tasker.TaskRequest{Namespace: "ecommerce", Name: "order_fulfillment", Context: order})
	if err != nil {
		return nil, err
	}
	waitCtx, cancelWait := context.WithTimeout(ctx, 30*time.Second)
	defer cancelWait()
	task, err = engine.WaitTask(waitCtx, task.ID)
	if err != nil {
		return nil, err
	}
	trail, err := engine.Transitions(ctx, task.ID)
	if err != nil {
		return nil, err
	}
	printTask(out, task)
	fmt.Fprintf(out, "\naudit trail (%d transitions):\n", len(trail))
	printTrail(out, trail)
	if task.State != tasker.TaskComplete {
		return &Outcome{task, trail}, fmt.Errorf("task %s ended %s, not complete", task.ID, task.State)
	}
	var ship Shipment
	if err := task.Result("ship_order", &ship); err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "\nshipped %s: tracking %s, reservation %s, payment %s for $%d.%02d\n",
		ship.OrderID, ship.TrackingNumber, ship.ReservationID, ship.PaymentID, ship.AmountCents/100, ship.AmountCents%100)
	return &Outcome{task, trail}, nil
}

func printTask(out io.Writer, task *tasker.Task) {
	elapsed := ""
	if task.CompletedAt != nil {
		elapsed = " in " + task.CompletedAt.Sub(task.CreatedAt).Round(time.Millisecond).String()
	}
	fmt.Fprintf(out, "task %s (%s/%s@%s): %s%s\n", task.ID, task.Namespace, task.Name, task.Version, task.State, elapsed)
	for _, s := range task.Steps {
		fmt.Fprintf(out, "  %-17s %-9s attempts=%d/%d result=%s\n", s.Name, s.State, s.Attempts, s.MaxAttempts, s.Result)
	}
}

// printTrail prints one line per transition: the time since the first one, the task or the
// step, from → to, the event, and for failures the error recorded in the metadata.
func printTrail(out io.Writer, trail []tasker.Transition) {
	if len(trail) == 0 {
		return
	}
	t0 := trail[0].At
	for _, tr := range trail {
		who := "task"
		if tr.StepName != "" {
			who = tr.StepName
		}
		from := tr.From
		if from == "" {
			from = "(new)"
		}
		line := fmt.Sprintf("  +%7.1fms  %-17s %-24s → %-24s %s",
			float64(tr.At.Sub(t0).Microseconds())/1000, who, from, tr.To, tr.Event)
		if msg := failureMessage(tr.Metadata); msg != "" {
			line += ": " + msg
		}
		fmt.Fprintln(out, strings.TrimRight(line, " "))
	}
}

// failureMessage returns the error message of a failed attempt's transition metadata
// ({"error": {"message": ..., "kind": ...}, "attempt": n, "retry_in_ms": ...}), or "".
func failureMessage(meta json.RawMessage) string {
	if len(meta) == 0 {
		return ""
	}
	var m struct {
		Attempt   int                 `json:"attempt"`
		Error     *tasker.StepFailure `json:"error"`
		RetryInMS *int64              `json:"retry_in_ms"`
	}
	if err := json.Unmarshal(meta, &m); err != nil || m.Error == nil {
		return ""
	}
	msg := fmt.Sprintf("%q (attempt %d, %s)", m.Error.Message, m.Error.Attempt, m.Error.Kind)
	if m.RetryInMS != nil {
		msg += fmt.Sprintf(", retry in %dms", *m.RetryInMS)
	}
	return msg
}

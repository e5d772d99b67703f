package main

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/testdb"
)

func TestOrderFulfillment(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var out bytes.Buffer
	res, err := runWith(ctx, db.Pool, db.Schema, &out)
	require.NoError(t, err, out.String())
	t.Log("\n" + out.String())

	task := res.Task
	require.Equal(t, tasker.TaskComplete, task.State)
	require.Len(t, task.Steps, 4)
	for _, s := range task.Steps {
		require.Equal(t, tasker.StepComplete, s.State, s.Name)
	}
	pay, ok := task.Step("process_payment")
	require.True(t, ok)
	require.Equal(t, 3, pay.Attempts)
	require.Equal(t, 5, pay.MaxAttempts)
	require.NotNil(t, pay.LastError, "the last failure stays on record")
	require.Equal(t, "payment gateway timeout", pay.LastError.Message)
	for _, name := range []string{"validate_order", "reserve_inventory", "ship_order"} {
		s, ok := task.Step(name)
		require.True(t, ok, name)
		require.Equal(t, 1, s.Attempts, name)
	}

	// process_payment's own trail: two fail_retryable, each followed by enqueue then start.
	var events []string
	var failures []json.RawMessage
	for _, tr := range res.Transitions {
		require.Equal(t, task.ID, tr.TaskID)
		if tr.StepName != "process_payment" {
			continue
		}
		events = append(events, tr.Event)
		if tr.Event == "fail_retryable" {
			failures = append(failures, tr.Metadata)
		}
	}
	require.Equal(t, []string{
		"create", "enqueue", "start",
		"fail_retryable", "enqueue", "start",
		"fail_retryable", "enqueue", "start",
		"complete",
	}, events)
	require.Len(t, failures, 2)
	for i, meta := range failures {
		var m struct {
			Attempt int                `json:"attempt"`
			Error   tasker.StepFailure `json:"error"`
		}
		require.NoError(t, json.Unmarshal(meta, &m))
		require.Equal(t, i+1, m.Attempt)
		require.Equal(t, "payment gateway timeout", m.Error.Message)
		require.Equal(t, "retryable", m.Error.Kind)
		require.Equal(t, i+1, m.Error.Attempt)
	}

	// The task ends complete; the trail is in time order.
	last := res.Transitions[len(res.Transitions)-1]
	require.Empty(t, last.StepName)
	require.Equal(t, "complete", last.To)
	for i := 1; i < len(res.Transitions); i++ {
		require.False(t, res.Transitions[i].At.Before(res.Transitions[i-1].At), "transition %d is out of order", i)
	}

	// ship_order joined both parents' data.
	var ship Shipment
	require.NoError(t, task.Result("ship_order", &ship))
	var order Order
	require.NoError(t, json.Unmarshal(task.Context, &order))
	require.Equal(t, Shipment{
		TrackingNumber: "TRK-" + order.OrderID,
		OrderID:        order.OrderID,
		ReservationID:  "RES-" + order.OrderID, // from reserve_inventory
		Warehouse:      "east-1",               // reserve_inventory's handler configuration
		PaymentID:      "PAY-" + order.OrderID, // from process_payment
		AmountCents:    12900 + 2*2450,         // computed by validate_order, charged by process_payment
	}, ship)
	var pr Payment
	require.NoError(t, task.Result("process_payment", &pr))
	require.Equal(t, 3, pr.Attempt)

	// The printed report shows the steps, both failures with their message, and the shipment.
	text := out.String()
	require.Contains(t, text, "process_payment   complete  attempts=3/5")
	require.Equal(t, 2, bytes.Count(out.Bytes(), []byte(`fail_retryable: "payment gateway timeout"`)), text)
	require.Contains(t, text, "(attempt 1, retryable)")
	require.Contains(t, text, "(attempt 2, retryable)")
	require.Contains(t, text, "evaluating_results       → complete                 all_steps_complete")
	require.Contains(t, text, "shipped "+order.OrderID+": tracking TRK-"+order.OrderID)
	require.Contains(t, text, "for $178.00")
}

func TestFailureMessage(t *testing.T) {
	t.Parallel()
	require.Empty(t, failureMessage(nil))
	require.Empty(t, failureMessage(json.RawMessage(`{"worker_id":"w","attempt":1}`)))
	require.Equal(t, `"boom" (attempt 2, permanent)`,
		failureMessage(json.RawMessage(`{"attempt":2,"error":{"message":"boom","kind":"permanent","attempt":2}}`)))
	require.Equal(t, `"slow" (attempt 1, retryable), retry in 50ms`,
		failureMessage(json.RawMessage(`{"attempt":1,"error":{"message":"slow","kind":"retryable","attempt":1},"retry_in_ms":50}`)))
}

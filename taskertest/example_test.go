package taskertest_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/taskertest"
)

const orderYAML = `
name: order
namespace_name: shop
version: 1.0.0
steps:
  - name: validate
    handler: {callable: validate}
  - name: charge
    handler: {callable: charge}
    dependencies: [validate]
    retry: {max_attempts: 3}
  - name: ship
    handler: {callable: ship}
    dependencies: [charge]
`

// validate is a real handler under test.
func validate(_ context.Context, s *tasker.Step) (any, error) {
	var order struct{ Amount int }
	if err := s.Input(&order); err != nil {
		return nil, tasker.Permanent(err)
	}
	if order.Amount <= 0 {
		return nil, tasker.Permanent(fmt.Errorf("amount %d is not positive", order.Amount))
	}
	return map[string]any{"amount": order.Amount}, nil
}

// A test runs a template with its real handlers and stubs for the rest, on the in-memory backend:
// no database, and the workers stop when the test ends. Here the payment gateway fails twice
// before it answers; WithFastRetries skips the backoff between attempts.
func Example() {
	t := &exampleT{} // in a test: the *testing.T
	defer t.finish()

	h := taskertest.New(t, taskertest.Template(t, orderYAML), taskertest.Handlers{
		"validate": validate,
		"charge":   taskertest.FailTimes(2, errors.New("gateway timeout"), map[string]any{"charged": true}),
		"ship":     taskertest.Return("shipped"),
	}, taskertest.WithFastRetries())

	task := h.Run(context.Background(), map[string]any{"amount": 42})
	h.RequireState(task, tasker.TaskComplete)
	h.RequireResult(task, "validate", map[string]any{"amount": 42})
	h.RequireResult(task, "charge", map[string]any{"charged": true})

	charge := h.RequireStep(task, "charge", tasker.StepComplete)
	fmt.Println("task:", task.State)
	fmt.Println("charge attempts:", charge.Attempts, "handler runs:", h.Calls("charge"))
	fmt.Println("charge history:", h.History(task, "charge"))
	var shipped string
	h.Result(task, "ship", &shipped)
	fmt.Println("ship:", shipped)
	// Output:
	// task: complete
	// charge attempts: 3 handler runs: 3
	// charge history: [create enqueue start fail_retryable enqueue start fail_retryable enqueue start complete]
	// ship: shipped
}

// A step that fails for good blocks its task until an operator acts; the task then resumes.
func Example_operatorFix() {
	t := &exampleT{}
	defer t.finish()
	ctx := context.Background()

	h := taskertest.New(t, taskertest.Template(t, orderYAML), taskertest.Handlers{
		"validate": validate,
		"charge":   taskertest.Fail(tasker.Permanent(errors.New("card declined"))),
		"ship":     taskertest.Return("shipped"),
	})
	task := h.Run(ctx, map[string]any{"amount": 42})
	h.RequireState(task, tasker.TaskBlockedByFailures)
	charge := h.RequireStep(task, "charge", tasker.StepError)
	h.RequireStep(task, "ship", tasker.StepPending)
	fmt.Printf("%s: %s (%s)\n", task.State, charge.LastError.Message, charge.LastError.Kind)

	err := h.Engine.CompleteStep(ctx, charge.ID, map[string]any{"charged": "by phone"},
		tasker.OperatorRequest{Operator: "alice", Reason: "paid by phone"})
	if err != nil {
		fmt.Println(err)
	}
	task = h.Wait(ctx, task.ID)
	h.RequireStep(task, "ship", tasker.StepComplete)
	fmt.Println("after the fix:", task.State)
	fmt.Println("task history:", h.History(task, ""))
	// Output:
	// blocked_by_failures: card declined (permanent)
	// after the fix: complete
	// task history: [create start initialized steps_enqueued evaluate permanent_failure operator_fix ready_steps_found steps_enqueued evaluate all_steps_complete]
}

const reminderYAML = `
name: reminder
namespace_name: mail
version: 1.0.0
steps:
  - name: wait_a_day
    handler: {callable: tasker.sleep, initialization: {seconds: 86400}}
  - name: send
    handler: {callable: send}
    dependencies: [wait_a_day]
`

// A test moves the harness's clock by hand: here a reminder that sleeps for a day (a durable
// sleep, tasker.sleep) is sent once the clock has moved a day on, and the test takes milliseconds.
// Scheduled starts (TaskRequest.RunAt), cron schedules (WithSchedules), signals' timeouts and
// retries' backoffs run on the same clock.
func Example_clock() {
	t := &exampleT{}
	defer t.finish()
	ctx := context.Background()

	clk := taskertest.NewClock(time.Date(2030, 1, 1, 9, 0, 0, 0, time.UTC))
	h := taskertest.New(t, taskertest.Template(t, reminderYAML), taskertest.Handlers{
		"send": taskertest.Return("sent"),
	}, taskertest.WithClock(clk))

	task := h.Start(ctx, map[string]any{"to": "alice"})
	task = h.WaitStep(ctx, task.ID, "wait_a_day", tasker.StepWaitingForRetry) // parked
	nap, _ := task.Step("wait_a_day")
	fmt.Println("sleeping until:", nap.NextRetryAt.UTC().Format(time.RFC3339))

	clk.Advance(24 * time.Hour)
	task = h.Wait(ctx, task.ID)
	send := h.RequireStep(task, "send", tasker.StepComplete)
	fmt.Println("task:", task.State)
	fmt.Println("sent at:", send.CompletedAt.UTC().Format(time.RFC3339))
	// Output:
	// sleeping until: 2030-01-02T09:00:00Z
	// task: complete
	// sent at: 2030-01-02T09:00:00Z
}

// exampleT stands in for the *testing.T a test passes to taskertest.New: it runs the cleanups
// (which stop the workers) when the example ends.
type exampleT struct{ cleanups []func() }

func (t *exampleT) Helper()                           {}
func (t *exampleT) Cleanup(f func())                  { t.cleanups = append(t.cleanups, f) }
func (t *exampleT) Errorf(format string, args ...any) { fmt.Printf(format+"\n", args...) }
func (t *exampleT) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }

func (t *exampleT) finish() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}

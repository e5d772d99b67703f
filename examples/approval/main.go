// Command approval routes expense requests through a decision point and converges on one final
// decision:
//
//	                                      ┌─▶ auto_approve ─────┐
//	validate_request ─▶ route_approval ◆──┼─▶ manager_approval ─┼─▶ finalize_decision ─▶ notify_requester
//	                                      └─▶ finance_review ───┘
//
// route_approval is a decision step: its handler looks at the amount and returns the branches to
// create, and only those steps ever exist. Below $1,000 a request is approved automatically;
// from $1,000 its department manager approves it; from $10,000 finance reviews it as well (and
// turns down anything over the quarter's remaining budget). finalize_decision is a
// deferred_convergence step: it waits for whichever approval steps the decision created and
// decides from their results; notify_requester follows it.
//
// It submits four requests ($250, $5,000, $12,000 and $50,000) side by side and prints, for each,
// the branches the decision chose, the steps its task ended up with and the final decision.
//
//	go run ./examples/approval
//
// It reads TASKER_DATABASE_URL or DATABASE_URL (default: the local server,
// postgres://postgres@127.0.0.1:5432/postgres) and migrates its own schema (tasker_approval).
// Set TASKER_DEBUG=1 to see the engine's logs.
package main

import (
	"context"
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

// templateYAML is the workflow in Tasker Core's template layout. The thresholds sit in the
// routing step's handler.initialization, the budget in finance_review's.
const templateYAML = `
name: expense_approval
namespace_name: finance
version: 1.0.0
description: "route an expense request by amount, then converge on one decision"
input_schema:
  type: object
  required: [request_id, requester, amount, purpose]
  properties:
    request_id: {type: string, minLength: 1}
    requester: {type: string, minLength: 1}
    amount: {type: integer, minimum: 1}
    purpose: {type: string, minLength: 1}
steps:
  - name: validate_request
    handler: {callable: validate_request}

  - name: route_approval
    type: decision
    dependencies: [validate_request]
    handler:
      callable: route_approval
      initialization:
        manager_from: 1000
        finance_from: 10000

  - name: auto_approve
    dependencies: [route_approval]
    handler: {callable: auto_approve}

  - name: manager_approval
    dependencies: [route_approval]
    handler: {callable: manager_approval}

  - name: finance_review
    dependencies: [route_approval]
    handler:
      callable: finance_review
      initialization:
        remaining_budget: 40000

  - name: finalize_decision
    type: deferred_convergence
    dependencies: [auto_approve, manager_approval, finance_review]
    handler: {callable: finalize_decision}

  - name: notify_requester
    dependencies: [finalize_decision]
    handler: {callable: notify_requester}
`

// Schema is where the example keeps its tables.
const Schema = "tasker_approval"

// Request is a task's context.
type Request struct {
	RequestID string `json:"request_id"`
	Requester string `json:"requester"`
	Amount    int64  `json:"amount"`
	Purpose   string `json:"purpose"`
}

// Requests are what the example submits: a small, a medium, a large and an over-budget one.
var Requests = []Request{
	{RequestID: "EXP-1", Requester: "alice", Amount: 250, Purpose: "team lunch"},
	{RequestID: "EXP-2", Requester: "bob", Amount: 5_000, Purpose: "conference trip"},
	{RequestID: "EXP-3", Requester: "carol", Amount: 12_000, Purpose: "build servers"},
	{RequestID: "EXP-4", Requester: "dave", Amount: 50_000, Purpose: "office refit"},
}

// Approval is the result of an approval step.
type Approval struct {
	Approved bool   `json:"approved"`
	Approver string `json:"approver"`
	Note     string `json:"note"`
}

// Decision is finalize_decision's result.
type Decision struct {
	RequestID string   `json:"request_id"`
	Amount    int64    `json:"amount"`
	Decision  string   `json:"decision"` // "approved" or "rejected"
	Approvers []string `json:"approvers"`
	Reasons   []string `json:"reasons,omitempty"`
}

// Outcome is what happened to one request.
type Outcome struct {
	Request  Request
	Task     *tasker.Task
	Branches []string // the branches route_approval chose
	Created  []string // the steps the task ended up with, in creation order
	Decision Decision
}

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "approval:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer) error {
	pool, err := exampledb.Connect(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	_, err = runWith(ctx, pool, Schema, out)
	return err
}

// register binds the template's handlers.
func register(engine *tasker.Engine) {
	engine.HandleFunc("validate_request", func(_ context.Context, s *tasker.Step) (any, error) {
		var req Request
		if err := s.Input(&req); err != nil {
			return nil, tasker.Permanent(err)
		}
		if req.Amount <= 0 || strings.TrimSpace(req.Requester) == "" {
			return nil, tasker.Permanent(fmt.Errorf("request %s: a positive amount and a requester are required", req.RequestID))
		}
		return map[string]any{"request_id": req.RequestID, "amount": req.Amount}, nil
	})

	// The decision: its result names the branches to create.
	engine.HandleFunc("route_approval", func(_ context.Context, s *tasker.Step) (any, error) {
		var req Request
		if err := s.Input(&req); err != nil {
			return nil, tasker.Permanent(err)
		}
		var cfg struct {
			ManagerFrom int64 `json:"manager_from"`
			FinanceFrom int64 `json:"finance_from"`
		}
		if err := s.DecodeConfig(&cfg); err != nil {
			return nil, tasker.Permanent(err)
		}
		switch {
		case req.Amount < cfg.ManagerFrom:
			return tasker.CreateSteps("auto_approve"), nil
		case req.Amount < cfg.FinanceFrom:
			return tasker.CreateSteps("manager_approval"), nil
		default:
			return tasker.CreateSteps("manager_approval", "finance_review"), nil
		}
	})

	engine.HandleFunc("auto_approve", func(_ context.Context, s *tasker.Step) (any, error) {
		return Approval{Approved: true, Approver: "policy", Note: "below the manual review threshold"}, nil
	})
	engine.HandleFunc("manager_approval", func(_ context.Context, s *tasker.Step) (any, error) {
		var req Request
		if err := s.Input(&req); err != nil {
			return nil, tasker.Permanent(err)
		}
		return Approval{Approved: true, Approver: "manager of " + req.Requester, Note: "within department policy"}, nil
	})
	engine.HandleFunc("finance_review", func(_ context.Context, s *tasker.Step) (any, error) {
		var req Request
		if err := s.Input(&req); err != nil {
			return nil, tasker.Permanent(err)
		}
		var cfg struct {
			RemainingBudget int64 `json:"remaining_budget"`
		}
		if err := s.DecodeConfig(&cfg); err != nil {
			return nil, tasker.Permanent(err)
		}
		if req.Amount > cfg.RemainingBudget {
			return Approval{Approved: false, Approver: "finance",
				Note: fmt.Sprintf("$%d exceeds the remaining budget of $%d", req.Amount, cfg.RemainingBudget)}, nil
		}
		return Approval{Approved: true, Approver: "finance", Note: "within budget"}, nil
	})

	// The convergence sees the results of whichever approval steps exist.
	engine.HandleFunc("finalize_decision", func(_ context.Context, s *tasker.Step) (any, error) {
		var req Request
		if err := s.Input(&req); err != nil {
			return nil, tasker.Permanent(err)
		}
		d := Decision{RequestID: req.RequestID, Amount: req.Amount, Decision: "approved"}
		for _, name := range []string{"auto_approve", "manager_approval", "finance_review"} {
			if _, ok := s.DependencyResults()[name]; !ok {
				continue // not chosen by the decision
			}
			var a Approval
			if err := s.DependencyResult(name, &a); err != nil {
				return nil, tasker.Permanent(err)
			}
			if a.Approved {
				d.Approvers = append(d.Approvers, a.Approver)
			} else {
				d.Decision = "rejected"
				d.Reasons = append(d.Reasons, a.Approver+": "+a.Note)
			}
		}
		if len(d.Approvers)+len(d.Reasons) == 0 {
			return nil, tasker.Permanent(errors.New("no approval step ran"))
		}
		return d, nil
	})
	engine.HandleFunc("notify_requester", func(_ context.Context, s *tasker.Step) (any, error) {
		var d Decision
		if err := s.DependencyResult("finalize_decision", &d); err != nil {
			return nil, tasker.Permanent(err)
		}
		var req Request
		if err := s.Input(&req); err != nil {
			return nil, tasker.Permanent(err)
		}
		return map[string]any{"to": req.Requester, "message": fmt.Sprintf("your request %s was %s", d.RequestID, d.Decision)}, nil
	})
}

// runWith migrates schema, submits Requests, waits for them and prints what each one created and
// its decision.
func runWith(ctx context.Context, pool *pgxpool.Pool, schema string, out io.Writer) ([]Outcome, error) {
	if err := migrations.Migrate(ctx, pool, migrations.WithSchema(schema)); err != nil {
		return nil, err
	}
	level := slog.LevelWarn
	if os.Getenv("TASKER_DEBUG") != "" {
		level = slog.LevelDebug - 1
	}
	logger := logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	engine, err := tasker.NewEngine(tasker.Config{Store: postgres.New(pool, postgres.WithSchema(schema)), Logger: logger})
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
	register(engine)

	workCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- engine.RunWorkers(workCtx) }()
	defer func() { stop(); <-done }()

	// Submit every request first: they run side by side.
	stamp := time.Now().UnixNano()
	tasks := make([]*tasker.Task, len(Requests))
	for i, req := range Requests {
		tasks[i], err = engine.CreateTask(ctx, tasker.TaskRequest{
			Namespace: "finance", Name: "expense_approval", Context: req,
			// Each run of the example makes new tasks: without a key, the same request twice
			// would be a duplicate of the first run's task.
			IdempotencyKey: fmt.Sprintf("%s-%d", req.RequestID, stamp),
		})
		if err != nil {
			return nil, err
		}
	}

	waitCtx, cancelWait := context.WithTimeout(ctx, 60*time.Second)
	defer cancelWait()
	var outcomes []Outcome
	for i, req := range Requests {
		task, err := engine.WaitTask(waitCtx, tasks[i].ID)
		if err != nil {
			return outcomes, err
		}
		o := Outcome{Request: req, Task: task}
		for _, s := range task.Steps {
			o.Created = append(o.Created, s.Name)
		}
		fmt.Fprintf(out, "%s  $%-7d %-16s task %s\n", req.RequestID, req.Amount, req.Purpose, task.State)
		// The decision's result is Tasker Core's {"decision_point_outcome": {...}}.
		var route struct {
			Outcome struct {
				StepNames []string `json:"step_names"`
			} `json:"decision_point_outcome"`
		}
		if err := task.Result("route_approval", &route); err == nil {
			o.Branches = route.Outcome.StepNames
			fmt.Fprintf(out, "  route_approval chose: %s\n", strings.Join(o.Branches, " + "))
		}
		fmt.Fprintf(out, "  steps created: %s\n", strings.Join(o.Created, ", "))
		if task.State != tasker.TaskComplete {
			return outcomes, fmt.Errorf("request %s: the task did not complete (%s)", req.RequestID, task.State)
		}
		if err := task.Result("finalize_decision", &o.Decision); err != nil {
			return outcomes, err
		}
		switch d := o.Decision; {
		case d.Decision == "approved":
			fmt.Fprintf(out, "  decision: approved by %s\n", strings.Join(d.Approvers, ", "))
		case len(d.Approvers) > 0:
			fmt.Fprintf(out, "  decision: rejected, %s (approved by %s)\n", strings.Join(d.Reasons, "; "), strings.Join(d.Approvers, ", "))
		default:
			fmt.Fprintf(out, "  decision: rejected, %s\n", strings.Join(d.Reasons, "; "))
		}
		outcomes = append(outcomes, o)
	}
	return outcomes, nil
}

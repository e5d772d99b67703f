package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spf13/cobra"

	"github.com/tasker-systems/tasker"
)

// version is tasker-ctl's, as the MCP server introduces itself.
const version = "0.1.0"

const mcpLong = `Serve tasker-ctl's operations as an MCP (Model Context Protocol) server over standard input
and output, for AI agents. Configure it in the client as a command:

  tasker-ctl --database-url postgres://... mcp

Read tools: task_list, task_inspect, task_visualize, step_audit, dlq_list, dlq_stats, health,
template_validate, template_visualize. Write tools: task_create, task_cancel, step_retry,
step_resolve, step_complete, dlq_update; each requires the argument "confirm": true and refuses
otherwise. The database is opened on the first tool call that needs it.`

func newMCPCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "mcp",
		Short: "Serve the operations as an MCP server over stdio (for AI agents)",
		Long:  mcpLong,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s := newMCPServer(a)
			err := s.Run(cmd.Context(), &mcp.StdioTransport{})
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		},
	}
}

// mcpTools holds what the tools share: the app, whose engine is opened once for all calls (which
// may run concurrently).
type mcpTools struct{ a *app }

func (m *mcpTools) engine(ctx context.Context) (*tasker.Engine, error) { return m.a.engine(ctx) }

func newMCPServer(a *app) *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "tasker-ctl", Title: "tasker operations", Version: version},
		&mcp.ServerOptions{Instructions: "Operate tasker workflows (DAG tasks on PostgreSQL): inspect tasks and their steps, " +
			"fix failed steps, work the dead-letter queue. Write tools change the database and need \"confirm\": true; " +
			"ask the user before setting it."})
	m := &mcpTools{a: a}
	m.addReadTools(s)
	m.addWriteTools(s)
	return s
}

// readTool adds a tool that only reads.
func readTool[In any](s *mcp.Server, name, desc string, h func(context.Context, In) (any, error)) {
	mcp.AddTool(s, &mcp.Tool{Name: name, Description: desc, Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}},
		func(ctx context.Context, _ *mcp.CallToolRequest, in In) (*mcp.CallToolResult, any, error) {
			out, err := h(ctx, in)
			return nil, out, err
		})
}

// confirmable is a write tool's input.
type confirmable interface{ confirmed() bool }

// writeTool adds a tool that changes the database; it refuses, with an error result, a call
// without "confirm": true.
func writeTool[In confirmable](s *mcp.Server, name, desc string, h func(context.Context, In) (any, error)) {
	destructive := true
	mcp.AddTool(s, &mcp.Tool{Name: name, Description: desc + ` Changes the database: requires "confirm": true.`,
		Annotations: &mcp.ToolAnnotations{DestructiveHint: &destructive}},
		func(ctx context.Context, _ *mcp.CallToolRequest, in In) (*mcp.CallToolResult, any, error) {
			if !in.confirmed() {
				return nil, nil, fmt.Errorf("refused: %s changes the database; call it again with \"confirm\": true once the user agrees", name)
			}
			out, err := h(ctx, in)
			return nil, out, err
		})
}

type taskListIn struct {
	Namespace string   `json:"namespace,omitempty" jsonschema:"only this namespace"`
	Name      string   `json:"name,omitempty" jsonschema:"only this template name"`
	States    []string `json:"states,omitempty" jsonschema:"only tasks in these states"`
	Since     string   `json:"since,omitempty" jsonschema:"only tasks created since: a duration such as 24h, or an RFC 3339 time"`
	Limit     int      `json:"limit,omitempty" jsonschema:"page size (default 50)"`
	After     string   `json:"after,omitempty" jsonschema:"continue after this task ID (the last of the previous page)"`
}

type taskIDIn struct {
	TaskID string `json:"task_id" jsonschema:"the task's ID"`
}

type taskVisualizeIn struct {
	TaskID string `json:"task_id" jsonschema:"the task's ID"`
	Format string `json:"format,omitempty" jsonschema:"mermaid (default) or dot"`
}

type stepAuditIn struct {
	TaskID string `json:"task_id" jsonschema:"the task's ID"`
	Step   string `json:"step,omitempty" jsonschema:"only this step's transitions (its name or ID); empty for all"`
}

type dlqListIn struct {
	Status    string `json:"status,omitempty" jsonschema:"pending, manually_resolved, permanently_failed or cancelled"`
	Namespace string `json:"namespace,omitempty" jsonschema:"only this namespace's tasks"`
	Limit     int    `json:"limit,omitempty" jsonschema:"page size"`
	Cursor    string `json:"cursor,omitempty" jsonschema:"the next_cursor of the previous page"`
}

type dlqStatsIn struct {
	Namespace string `json:"namespace,omitempty" jsonschema:"only this namespace's tasks"`
}

type noIn struct{}

type templateIn struct {
	YAML   string `json:"yaml" jsonschema:"the template's YAML source"`
	Format string `json:"format,omitempty" jsonschema:"for template_visualize: mermaid (default) or dot"`
}

func (m *mcpTools) addReadTools(s *mcp.Server) {
	readTool(s, "task_list", "List tasks, newest first, with filters and paging.", func(ctx context.Context, in taskListIn) (any, error) {
		o := tasker.ListOptions{Namespace: in.Namespace, Name: in.Name, Limit: in.Limit}
		if o.Limit == 0 {
			o.Limit = 50
		}
		for _, st := range in.States {
			if !tasker.TaskState(st).Valid() {
				return nil, fmt.Errorf("%q is not a task state", st)
			}
			o.States = append(o.States, tasker.TaskState(st))
		}
		var err error
		if o.CreatedAfter, err = parseSince(in.Since); err != nil {
			return nil, err
		}
		if in.After != "" {
			if o.After, err = parseID("after", in.After); err != nil {
				return nil, err
			}
		}
		eng, err := m.engine(ctx)
		if err != nil {
			return nil, err
		}
		tasks, err := eng.ListTasks(ctx, o)
		if err != nil {
			return nil, err
		}
		views := make([]taskView, 0, len(tasks))
		for i := range tasks {
			v := viewTask(&tasks[i])
			v.Context = nil
			views = append(views, v)
		}
		return map[string]any{"tasks": views}, nil
	})
	readTool(s, "task_inspect", "A task with its context, state, progress and every step (state, attempts, result, last error).",
		func(ctx context.Context, in taskIDIn) (any, error) {
			task, err := m.task(ctx, in.TaskID)
			if err != nil {
				return nil, err
			}
			return viewTask(task), nil
		})
	readTool(s, "task_visualize", "Draw a task's DAG with its steps' states, as Mermaid (default) or Graphviz DOT.",
		func(ctx context.Context, in taskVisualizeIn) (any, error) {
			task, err := m.task(ctx, in.TaskID)
			if err != nil {
				return nil, err
			}
			format := in.Format
			if format == "" {
				format = "mermaid"
			}
			if format != "mermaid" && format != "dot" {
				return nil, fmt.Errorf("format %q: want mermaid or dot", format)
			}
			eng, err := m.engine(ctx)
			if err != nil {
				return nil, err
			}
			pic, err := m.a.picture(ctx, eng, task.ID, format)
			if err != nil {
				return nil, err
			}
			return map[string]string{"format": format, "diagram": pic}, nil
		})
	readTool(s, "step_audit", "The audit trail of a task: its and its steps' transitions, with operators and errors; optionally one step's.",
		func(ctx context.Context, in stepAuditIn) (any, error) {
			trs, err := m.a.transitions(ctx, in.TaskID)
			if err != nil {
				return nil, err
			}
			if in.Step != "" {
				_, step, err := m.a.findStep(ctx, in.TaskID, in.Step)
				if err != nil {
					return nil, err
				}
				var mine []transitionView
				for _, t := range trs {
					if t.StepID != nil && *t.StepID == step.ID {
						mine = append(mine, t)
					}
				}
				trs = mine
			}
			return map[string]any{"transitions": trs}, nil
		})
	readTool(s, "dlq_list", "List dead-letter entries, newest first.", func(ctx context.Context, in dlqListIn) (any, error) {
		f := tasker.DeadLetterFilter{Status: tasker.DeadLetterStatus(in.Status), Namespace: in.Namespace, Limit: in.Limit, Cursor: in.Cursor}
		if in.Status != "" && !f.Status.Valid() {
			return nil, fmt.Errorf("status %q: want pending, manually_resolved, permanently_failed or cancelled", in.Status)
		}
		eng, err := m.engine(ctx)
		if err != nil {
			return nil, err
		}
		page, err := eng.DeadLetters(ctx, f)
		if err != nil {
			return nil, err
		}
		v := dlqPageView{Entries: []deadLetterView{}, NextCursor: page.NextCursor}
		for i := range page.Entries {
			v.Entries = append(v.Entries, viewDeadLetter(&page.Entries[i], false))
		}
		return v, nil
	})
	readTool(s, "dlq_stats", "Count dead-letter entries by reason and status.", func(ctx context.Context, in dlqStatsIn) (any, error) {
		eng, err := m.engine(ctx)
		if err != nil {
			return nil, err
		}
		stats, err := eng.DeadLetterStats(ctx, tasker.DeadLetterStatsFilter{Namespace: in.Namespace})
		if err != nil {
			return nil, err
		}
		return map[string]any{"stats": statsViews(stats)}, nil
	})
	readTool(s, "health", "Health as tasker sees it: the database, the maintenance leader, the connection pool.",
		func(ctx context.Context, _ noIn) (any, error) {
			eng, err := m.engine(ctx)
			if err != nil {
				return nil, err
			}
			return eng.Health(ctx)
		})
	readTool(s, "template_validate", "Check a template's YAML and list every problem with its line.",
		func(_ context.Context, in templateIn) (any, error) {
			t, err := tasker.ParseTemplate([]byte(in.YAML))
			if err == nil {
				err = t.Validate()
			}
			if err != nil {
				return map[string]any{"valid": false, "problems": problems(err)}, nil
			}
			return map[string]any{"valid": true, "template": t.Key(), "steps": len(t.Steps)}, nil
		})
	readTool(s, "template_visualize", "Draw a template's DAG (YAML source) as Mermaid (default) or Graphviz DOT.",
		func(_ context.Context, in templateIn) (any, error) {
			t, err := tasker.ParseTemplate([]byte(in.YAML))
			if err != nil {
				return nil, err
			}
			switch in.Format {
			case "", "mermaid":
				return map[string]string{"format": "mermaid", "diagram": t.Mermaid()}, nil
			case "dot":
				return map[string]string{"format": "dot", "diagram": t.DOT()}, nil
			}
			return nil, fmt.Errorf("format %q: want mermaid or dot", in.Format)
		})
}

// task reads a task by its ID argument.
func (m *mcpTools) task(ctx context.Context, id string) (*tasker.Task, error) {
	if _, err := m.engine(ctx); err != nil {
		return nil, err
	}
	return m.a.getTask(ctx, id)
}

type taskCreateIn struct {
	Namespace      string         `json:"namespace,omitempty" jsonschema:"the template's namespace (not needed with template_yaml)"`
	Name           string         `json:"name,omitempty" jsonschema:"the template's name (not needed with template_yaml)"`
	Version        string         `json:"version,omitempty" jsonschema:"the template's version; default the highest registered"`
	Context        map[string]any `json:"context,omitempty" jsonschema:"the task's input, a JSON object"`
	TemplateYAML   string         `json:"template_yaml,omitempty" jsonschema:"a template to register first (its YAML source)"`
	IdempotencyKey string         `json:"idempotency_key,omitempty" jsonschema:"the same key returns the first task"`
	Confirm        bool           `json:"confirm,omitempty" jsonschema:"must be true: this tool changes the database"`
}

func (in taskCreateIn) confirmed() bool { return in.Confirm }

type taskCancelIn struct {
	TaskID  string `json:"task_id" jsonschema:"the task's ID"`
	Reason  string `json:"reason,omitempty" jsonschema:"why, for the audit trail"`
	Confirm bool   `json:"confirm,omitempty" jsonschema:"must be true: this tool changes the database"`
}

func (in taskCancelIn) confirmed() bool { return in.Confirm }

type stepActionIn struct {
	TaskID  string `json:"task_id" jsonschema:"the task's ID"`
	Step    string `json:"step" jsonschema:"the step's name or ID"`
	By      string `json:"by" jsonschema:"the operator, for the audit trail"`
	Reason  string `json:"reason" jsonschema:"why, for the audit trail"`
	Result  any    `json:"result,omitempty" jsonschema:"for step_complete: the step's result (any JSON value)"`
	Confirm bool   `json:"confirm,omitempty" jsonschema:"must be true: this tool changes the database"`
}

func (in stepActionIn) confirmed() bool { return in.Confirm }

type dlqUpdateIn struct {
	EntryID string `json:"entry_id" jsonschema:"the dead-letter entry's ID"`
	Status  string `json:"status" jsonschema:"manually_resolved, permanently_failed or cancelled"`
	Notes   string `json:"notes,omitempty" jsonschema:"what was done"`
	By      string `json:"by" jsonschema:"the operator"`
	Confirm bool   `json:"confirm,omitempty" jsonschema:"must be true: this tool changes the database"`
}

func (in dlqUpdateIn) confirmed() bool { return in.Confirm }

func (m *mcpTools) addWriteTools(s *mcp.Server) {
	writeTool(s, "task_create", "Create a task from a registered template, or from template_yaml.", func(ctx context.Context, in taskCreateIn) (any, error) {
		eng, err := m.engine(ctx)
		if err != nil {
			return nil, err
		}
		o := createOptions{namespace: in.Namespace, name: in.Name, version: in.Version}
		if in.TemplateYAML != "" {
			t, err := tasker.ParseTemplate([]byte(in.TemplateYAML))
			if err != nil {
				return nil, err
			}
			if err := eng.Register(t); err != nil {
				return nil, err
			}
			o.namespace, o.name = t.Namespace, t.Name
			if o.version == "" {
				o.version = t.Version
			}
		} else {
			if o.namespace == "" || o.name == "" {
				return nil, errors.New("namespace and name are required (or template_yaml)")
			}
			if err := m.a.registerFor(ctx, eng, &o); err != nil {
				return nil, err
			}
		}
		req := tasker.TaskRequest{Namespace: o.namespace, Name: o.name, Version: o.version, IdempotencyKey: in.IdempotencyKey,
			SourceSystem: "tasker-ctl mcp"}
		if in.Context != nil {
			req.Context = in.Context
		}
		task, err := eng.CreateTask(ctx, req)
		if err != nil {
			return nil, err
		}
		return viewTask(task), nil
	})
	writeTool(s, "task_cancel", "Cancel a task; its unfinished steps are cancelled.", func(ctx context.Context, in taskCancelIn) (any, error) {
		task, err := m.task(ctx, in.TaskID)
		if err != nil {
			return nil, err
		}
		eng, err := m.engine(ctx)
		if err != nil {
			return nil, err
		}
		reason := in.Reason
		if reason == "" {
			reason = "cancelled through tasker-ctl mcp"
		}
		if err := eng.CancelTask(ctx, task.ID, reason); err != nil {
			return nil, err
		}
		after, err := eng.GetTask(ctx, task.ID)
		if err != nil {
			return nil, err
		}
		return viewTask(after), nil
	})
	step := func(verb string, act stepAction) func(context.Context, stepActionIn) (any, error) {
		return func(ctx context.Context, in stepActionIn) (any, error) {
			if in.By == "" || in.Reason == "" {
				return nil, errors.New("by and reason are required")
			}
			eng, err := m.engine(ctx)
			if err != nil {
				return nil, err
			}
			task, st, err := m.a.findStep(ctx, in.TaskID, in.Step)
			if err != nil {
				return nil, err
			}
			var result any
			if verb == "complete" {
				b, err := json.Marshal(in.Result)
				if err != nil {
					return nil, fmt.Errorf("result: %w", err)
				}
				result = json.RawMessage(b)
			}
			if err := act(ctx, eng, st.ID, result, tasker.OperatorRequest{Operator: in.By, Reason: in.Reason}); err != nil {
				return nil, fmt.Errorf("%s step %s of task %s: %w", verb, st.Name, task.ID, err)
			}
			after, err := eng.GetTask(ctx, task.ID)
			if err != nil {
				return nil, err
			}
			v := stepActionView{Action: verb, TaskID: after.ID.String(), TaskState: string(after.State)}
			for _, s := range after.Steps {
				if s.ID == st.ID {
					v.Step = viewStep(s)
				}
			}
			return v, nil
		}
	}
	writeTool(s, "step_retry", "Reset a failed step so that it runs again.", step("retry",
		func(ctx context.Context, eng *tasker.Engine, id uuid.UUID, _ any, r tasker.OperatorRequest) error {
			return eng.RetryStep(ctx, id, r)
		}))
	writeTool(s, "step_resolve", "Mark a failed step resolved by hand, releasing its dependents.", step("resolve",
		func(ctx context.Context, eng *tasker.Engine, id uuid.UUID, _ any, r tasker.OperatorRequest) error {
			return eng.ResolveStep(ctx, id, r)
		}))
	writeTool(s, "step_complete", "Complete a failed step with result as its result.", step("complete",
		func(ctx context.Context, eng *tasker.Engine, id uuid.UUID, res any, r tasker.OperatorRequest) error {
			return eng.CompleteStep(ctx, id, res, r)
		}))
	writeTool(s, "dlq_update", "Resolve a pending dead-letter entry.", func(ctx context.Context, in dlqUpdateIn) (any, error) {
		id, err := parseID("entry", in.EntryID)
		if err != nil {
			return nil, err
		}
		st := tasker.DeadLetterStatus(in.Status)
		if !st.Valid() || !st.Resolved() {
			return nil, fmt.Errorf("status %q: want manually_resolved, permanently_failed or cancelled", in.Status)
		}
		eng, err := m.engine(ctx)
		if err != nil {
			return nil, err
		}
		d, err := eng.ResolveDeadLetter(ctx, id, tasker.DeadLetterResolution{Status: st, Notes: in.Notes, By: in.By})
		if err != nil {
			return nil, err
		}
		return viewDeadLetter(d, false), nil
	})
}

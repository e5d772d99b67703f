package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/statemachine"
)

func newTaskCmd(a *app) *cobra.Command {
	c := &cobra.Command{Use: "task", Short: "Create, inspect, watch and cancel tasks"}
	c.AddCommand(newTaskCreateCmd(a), newTaskGetCmd(a), newTaskStepsCmd(a), newTaskAuditCmd(a),
		newTaskVisualizeCmd(a), newTaskCancelCmd(a), newTaskListCmd(a), newTaskWatchCmd(a))
	return c
}

// createOptions are task create's flags.
type createOptions struct {
	namespace, name, version string
	context, template        string
	idempotencyKey           string
	correlationID            string
	priority                 int
	tags                     []string
	initiator, reason        string
}

func newTaskCreateCmd(a *app) *cobra.Command {
	var o createOptions
	c := &cobra.Command{
		Use:   "create",
		Short: "Create a task from a registered template (or from --template FILE)",
		Long: `Create a task. The template is the registry's (any engine that ran it registered it), or
--template FILE, which registers the file's template first. --context is the task's input as
JSON: inline, @FILE, or - for standard input.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctxJSON, err := a.readJSON("--context", o.context, true)
			if err != nil {
				return err
			}
			if o.template == "" && (o.namespace == "" || o.name == "") {
				return usageErr("--namespace and --name are required (or --template FILE)")
			}
			eng, err := a.engine(cmd.Context())
			if err != nil {
				return err
			}
			if err := a.registerFor(cmd.Context(), eng, &o); err != nil {
				return err
			}
			req := tasker.TaskRequest{Namespace: o.namespace, Name: o.name, Version: o.version,
				IdempotencyKey: o.idempotencyKey, CorrelationID: o.correlationID, Priority: o.priority,
				Tags: o.tags, Initiator: o.initiator, SourceSystem: "tasker-ctl", Reason: o.reason}
			if ctxJSON != nil {
				req.Context = ctxJSON
			}
			task, err := eng.CreateTask(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.printTask(task)
		},
	}
	f := c.Flags()
	f.StringVar(&o.namespace, "namespace", "", "the template's namespace")
	f.StringVar(&o.name, "name", "", "the template's name")
	f.StringVar(&o.version, "version", "", "the template's version (default: the highest registered)")
	f.StringVar(&o.context, "context", "", "the task's context: JSON, @FILE or - (standard input)")
	f.StringVar(&o.template, "template", "", "register this template file first and create its task")
	f.StringVar(&o.idempotencyKey, "idempotency-key", "", "the task's identity: the same key returns the first task")
	f.StringVar(&o.correlationID, "correlation-id", "", "ties the task to the caller's records")
	f.IntVar(&o.priority, "priority", 0, "the task's priority")
	f.StringSliceVar(&o.tags, "tag", nil, "a tag (repeat or comma-separate)")
	f.StringVar(&o.initiator, "initiator", "", "who asks for the task")
	f.StringVar(&o.reason, "reason", "", "why")
	return c
}

// registerFor registers, on the command's engine, the template a creation names: the file's, or
// the registry's versions of namespace/name.
func (a *app) registerFor(ctx context.Context, eng *tasker.Engine, o *createOptions) error {
	if o.template != "" {
		t, err := loadTemplate(o.template, "")
		if err != nil {
			return err
		}
		if (o.namespace != "" && o.namespace != t.Namespace) || (o.name != "" && o.name != t.Name) {
			return usageErr("--template %s is %s/%s, not %s/%s", o.template, t.Namespace, t.Name, o.namespace, o.name)
		}
		o.namespace, o.name = t.Namespace, t.Name
		if o.version == "" {
			o.version = t.Version
		}
		return eng.Register(t)
	}
	list, err := eng.RegisteredTemplates(ctx)
	if err != nil {
		return err
	}
	found := false
	for _, r := range list {
		if r.Namespace != o.namespace || r.Name != o.name || (o.version != "" && r.Version != o.version) {
			continue
		}
		t, err := r.Template()
		if err == nil {
			err = eng.Register(t)
		}
		if err != nil {
			return fmt.Errorf("registered template %s/%s@%s: %w", r.Namespace, r.Name, r.Version, err)
		}
		found = true
	}
	if !found {
		key := o.namespace + "/" + o.name
		if o.version != "" {
			key += "@" + o.version
		}
		return &exitError{code: exitNotFound, err: fmt.Errorf("template %s is not in the registry (create with --template FILE to register it)", key)}
	}
	return nil
}

func newTaskGetCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "get TASK",
		Short: "Show a task and its steps",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			task, err := a.getTask(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.printTask(task)
		},
	}
}

// getTask reads the task an argument names.
func (a *app) getTask(ctx context.Context, arg string) (*tasker.Task, error) {
	id, err := parseID("task", arg)
	if err != nil {
		return nil, err
	}
	eng, err := a.engine(ctx)
	if err != nil {
		return nil, err
	}
	task, err := eng.GetTask(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("task %s: %w", id, err)
	}
	return task, nil
}

// printTask prints a task with its steps.
func (a *app) printTask(task *tasker.Task) error {
	v := viewTask(task)
	return a.emit(v, func(w io.Writer) {
		row(w, "TASK", v.ID)
		row(w, "TEMPLATE", fmt.Sprintf("%s/%s@%s", v.Namespace, v.Name, v.Version))
		row(w, "STATE", a.state(v.State))
		done, total := progress(task)
		row(w, "PROGRESS", fmt.Sprintf("%d/%d steps", done, total))
		row(w, "CREATED", when(&v.CreatedAt))
		row(w, "COMPLETED", when(v.CompletedAt))
		if len(v.Context) > 0 {
			row(w, "CONTEXT", string(v.Context))
		}
		if len(v.Tags) > 0 {
			row(w, "TAGS", strings.Join(v.Tags, ","))
		}
		fmt.Fprintln(w)
		a.stepRows(w, v.Steps)
	})
}

// stepRows writes the steps table.
func (a *app) stepRows(w io.Writer, steps []stepView) {
	row(w, "STEP", "STATE", "ATTEMPTS", "HANDLER", "ID", "ERROR")
	for _, s := range steps {
		msg := "-"
		if s.LastError != nil {
			msg = s.LastError.Message
			if len(msg) > 60 {
				msg = msg[:57] + "..."
			}
		}
		row(w, s.Name, a.state(s.State), fmt.Sprintf("%d/%d", s.Attempts, s.MaxAttempts), s.Handler, s.ID, msg)
	}
}

func newTaskStepsCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "steps TASK",
		Short: "List a task's steps",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			task, err := a.getTask(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			v := viewTask(task)
			if v.Steps == nil {
				v.Steps = []stepView{}
			}
			return a.emit(v.Steps, func(w io.Writer) { a.stepRows(w, v.Steps) })
		},
	}
}

func newTaskAuditCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "audit TASK",
		Short: "List a task's transitions: the audit trail of its and its steps' states",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			trs, err := a.transitions(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.emit(trs, func(w io.Writer) {
				row(w, "AT", "STEP", "FROM", "TO", "EVENT")
				for _, t := range trs {
					row(w, t.At.Local().Format("2006-01-02 15:04:05.000"), dash(t.StepName), dash(t.From), a.state(t.To), t.Event)
				}
			})
		},
	}
}

// transitions reads a task's audit trail (exit 3 for an unknown task).
func (a *app) transitions(ctx context.Context, arg string) ([]transitionView, error) {
	id, err := parseID("task", arg)
	if err != nil {
		return nil, err
	}
	eng, err := a.engine(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := eng.GetTask(ctx, id); err != nil {
		return nil, fmt.Errorf("task %s: %w", id, err)
	}
	trs, err := eng.Transitions(ctx, id)
	if err != nil {
		return nil, err
	}
	out := make([]transitionView, 0, len(trs))
	for _, t := range trs {
		out = append(out, viewTransition(t))
	}
	return out, nil
}

func newTaskVisualizeCmd(a *app) *cobra.Command {
	var format string
	c := &cobra.Command{
		Use:   "visualize TASK",
		Short: "Draw a task's DAG with its steps' states, as Mermaid or Graphviz DOT",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "mermaid" && format != "dot" {
				return usageErr("--format %q: want mermaid or dot", format)
			}
			id, err := parseID("task", args[0])
			if err != nil {
				return err
			}
			eng, err := a.engine(cmd.Context())
			if err != nil {
				return err
			}
			out, err := a.picture(cmd.Context(), eng, id, format)
			if err != nil {
				return err
			}
			fmt.Fprint(a.out, out)
			return nil
		},
	}
	c.Flags().StringVar(&format, "format", "mermaid", "mermaid or dot")
	_ = c.RegisterFlagCompletionFunc("format", fixedCompletion("mermaid", "dot"))
	return c
}

// picture draws a task in the format.
func (a *app) picture(ctx context.Context, eng *tasker.Engine, id uuid.UUID, format string) (string, error) {
	var out string
	var err error
	if format == "dot" {
		out, err = eng.TaskDOT(ctx, id)
	} else {
		out, err = eng.TaskMermaid(ctx, id)
	}
	if err != nil {
		return "", fmt.Errorf("task %s: %w", id, err)
	}
	return out, nil
}

func newTaskCancelCmd(a *app) *cobra.Command {
	var reason string
	c := &cobra.Command{
		Use:   "cancel TASK",
		Short: "Cancel a task: its steps that have not finished are cancelled",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID("task", args[0])
			if err != nil {
				return err
			}
			eng, err := a.engine(cmd.Context())
			if err != nil {
				return err
			}
			if err := eng.CancelTask(cmd.Context(), id, reason); err != nil {
				return fmt.Errorf("cancel task %s: %w", id, err)
			}
			task, err := eng.GetTask(cmd.Context(), id)
			if err != nil {
				return err
			}
			return a.printTask(task)
		},
	}
	c.Flags().StringVar(&reason, "reason", "cancelled by tasker-ctl", "why, for the audit trail")
	return c
}

func newTaskListCmd(a *app) *cobra.Command {
	var ns, name, since, after string
	var states []string
	var limit int
	c := &cobra.Command{
		Use:   "list",
		Short: "List tasks, newest first, with filters and paging (--after the last ID of a page)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o := tasker.ListOptions{Namespace: ns, Name: name, Limit: limit}
			for _, s := range states {
				st := tasker.TaskState(s)
				if !st.Valid() {
					return usageErr("--state %q is not a task state", s)
				}
				o.States = append(o.States, st)
			}
			var err error
			if o.CreatedAfter, err = parseSince(since); err != nil {
				return err
			}
			if after != "" {
				if o.After, err = parseID("--after", after); err != nil {
					return err
				}
			}
			if limit < 0 {
				return usageErr("--limit %d: want a positive number", limit)
			}
			eng, err := a.engine(cmd.Context())
			if err != nil {
				return err
			}
			tasks, err := eng.ListTasks(cmd.Context(), o)
			if err != nil {
				return err
			}
			views := make([]taskView, 0, len(tasks))
			for i := range tasks {
				v := viewTask(&tasks[i])
				v.Context = nil
				views = append(views, v)
			}
			return a.emit(views, func(w io.Writer) {
				row(w, "ID", "NAMESPACE", "NAME", "VERSION", "STATE", "CREATED")
				for _, v := range views {
					row(w, v.ID, v.Namespace, v.Name, v.Version, a.state(v.State), when(&v.CreatedAt))
				}
				if limit > 0 && len(views) == limit {
					fmt.Fprintf(a.errOut, "more may follow: --after %s\n", views[len(views)-1].ID)
				}
			})
		},
	}
	f := c.Flags()
	f.StringVar(&ns, "namespace", "", "only this namespace")
	f.StringVar(&name, "name", "", "only this template name")
	f.StringSliceVar(&states, "state", nil, "only these states (repeat or comma-separate)")
	f.StringVar(&since, "since", "", "only tasks created since: a duration (24h) or a time")
	f.IntVar(&limit, "limit", 50, "page size")
	f.StringVar(&after, "after", "", "continue after this task (the last ID of the previous page)")
	_ = c.RegisterFlagCompletionFunc("state", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		var out []string
		for _, s := range statemachine.TaskStates() {
			out = append(out, string(s))
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	})
	return c
}

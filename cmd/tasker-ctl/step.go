package main

import (
	"context"
	"fmt"
	"io"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/tasker-systems/tasker"
)

func newStepCmd(a *app) *cobra.Command {
	c := &cobra.Command{
		Use:   "step",
		Short: "Fix a failed step as an operator: retry it, resolve it, or complete it with a result",
		Long: `Fix a failed step. STEP is the step's name in the task or its ID. --by and --reason go into
the audit trail. The task resumes (or settles) as its state machine says.`,
	}
	c.AddCommand(
		newStepActionCmd(a, "retry", "Reset a failed step so that it runs again", func(ctx context.Context, eng *tasker.Engine, id uuid.UUID, _ any, r tasker.OperatorRequest) error {
			return eng.RetryStep(ctx, id, r)
		}, false),
		newStepActionCmd(a, "resolve", "Mark a failed step resolved by hand, releasing its dependents", func(ctx context.Context, eng *tasker.Engine, id uuid.UUID, _ any, r tasker.OperatorRequest) error {
			return eng.ResolveStep(ctx, id, r)
		}, false),
		newStepActionCmd(a, "complete", "Complete a failed step with --result as its result", func(ctx context.Context, eng *tasker.Engine, id uuid.UUID, result any, r tasker.OperatorRequest) error {
			return eng.CompleteStep(ctx, id, result, r)
		}, true),
	)
	return c
}

type stepAction func(ctx context.Context, eng *tasker.Engine, stepID uuid.UUID, result any, r tasker.OperatorRequest) error

func newStepActionCmd(a *app, verb, short string, act stepAction, withResult bool) *cobra.Command {
	var by, reason, result string
	c := &cobra.Command{
		Use:   verb + " TASK STEP",
		Short: short,
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var res any
			if withResult {
				raw, err := a.readJSON("--result", result, false)
				if err != nil {
					return err
				}
				if raw == nil {
					raw = []byte("null")
				}
				res = raw
			}
			task, step, err := a.findStep(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			eng, err := a.engine(cmd.Context())
			if err != nil {
				return err
			}
			if err := act(cmd.Context(), eng, step.ID, res, tasker.OperatorRequest{Operator: by, Reason: reason}); err != nil {
				return fmt.Errorf("%s step %s of task %s: %w", verb, step.Name, task.ID, err)
			}
			after, err := eng.GetTask(cmd.Context(), task.ID)
			if err != nil {
				return err
			}
			return a.printStepAction(verb, after, step.ID)
		},
	}
	c.Flags().StringVar(&by, "by", "", "the operator (required)")
	c.Flags().StringVar(&reason, "reason", "", "why (required)")
	_ = c.MarkFlagRequired("by")
	_ = c.MarkFlagRequired("reason")
	if withResult {
		c.Flags().StringVar(&result, "result", "", "the step's result: JSON, @FILE or - (default null)")
	}
	return c
}

// findStep reads the task and its step named (or identified) by arg.
func (a *app) findStep(ctx context.Context, taskArg, stepArg string) (*tasker.Task, *tasker.StepInfo, error) {
	task, err := a.getTask(ctx, taskArg)
	if err != nil {
		return nil, nil, err
	}
	if id, err := uuid.Parse(stepArg); err == nil {
		for i := range task.Steps {
			if task.Steps[i].ID == id {
				return task, &task.Steps[i], nil
			}
		}
	}
	if s, ok := task.Step(stepArg); ok {
		return task, s, nil
	}
	return nil, nil, fmt.Errorf("task %s has no step %q: %w", task.ID, stepArg, tasker.ErrStepNotFound)
}

type stepActionView struct {
	Action    string   `json:"action"`
	TaskID    string   `json:"task_id"`
	TaskState string   `json:"task_state"`
	Step      stepView `json:"step"`
}

func (a *app) printStepAction(verb string, task *tasker.Task, stepID uuid.UUID) error {
	v := stepActionView{Action: verb, TaskID: task.ID.String(), TaskState: string(task.State)}
	for _, s := range task.Steps {
		if s.ID == stepID {
			v.Step = viewStep(s)
		}
	}
	return a.emit(v, func(w io.Writer) {
		row(w, "ACTION", verb)
		row(w, "STEP", v.Step.Name)
		row(w, "STEP STATE", a.state(v.Step.State))
		row(w, "TASK", v.TaskID)
		row(w, "TASK STATE", a.state(v.TaskState))
	})
}

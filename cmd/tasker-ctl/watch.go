package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/tasker-systems/tasker"
)

func newTaskWatchCmd(a *app) *cobra.Command {
	var interval, timeout time.Duration
	c := &cobra.Command{
		Use:   "watch TASK",
		Short: "Follow a task until it settles, with a progress bar; exit 0 when it completes, 1 otherwise",
		Long: `Follow a task until it settles: complete, error, cancelled, resolved by hand, or blocked by a
failed step. It shows the steps done out of the total and the steps running now, redrawn in place
on a terminal and as one line per change otherwise, and ends with the task's final state.
The exit code follows the outcome: 0 complete (or resolved by hand), 1 any other.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if interval <= 0 {
				return usageErr("--interval %v: want a positive duration", interval)
			}
			id, err := parseID("task", args[0])
			if err != nil {
				return err
			}
			eng, err := a.engine(cmd.Context())
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			return a.watch(ctx, eng, id, interval)
		},
	}
	c.Flags().DurationVar(&interval, "interval", 500*time.Millisecond, "how often to read the task")
	c.Flags().DurationVar(&timeout, "timeout", 0, "give up after this long (exit 1); 0 waits as long as it takes")
	return c
}

// watch polls the task and draws its progress until it settles.
func (a *app) watch(ctx context.Context, eng *tasker.Engine, id uuid.UUID, interval time.Duration) error {
	tty := a.terminal() && a.output == "table"
	last := ""
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		task, err := eng.GetTask(ctx, id)
		if err != nil {
			if tty && last != "" {
				fmt.Fprintln(a.out)
			}
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				return failure("task %s: stopped watching before it settled: %v", id, err)
			}
			return fmt.Errorf("task %s: %w", id, err)
		}
		line := progressLine(task)
		if line != last {
			if a.output == "table" {
				if tty {
					fmt.Fprintf(a.out, "\r\x1b[K%s", line)
				} else {
					fmt.Fprintln(a.out, line)
				}
			}
			last = line
		}
		if task.State.Settled() {
			return a.settled(task, tty)
		}
		select {
		case <-ctx.Done():
			if tty {
				fmt.Fprintln(a.out)
			}
			return failure("task %s: stopped watching before it settled (%s): %v", id, task.State, ctx.Err())
		case <-tick.C:
		}
	}
}

// settled prints the final state and returns the outcome's exit.
func (a *app) settled(task *tasker.Task, tty bool) error {
	if a.output != "table" {
		if err := a.emit(viewTask(task), nil); err != nil {
			return err
		}
	} else {
		if tty {
			fmt.Fprintln(a.out)
		}
		done, total := progress(task)
		fmt.Fprintf(a.out, "task %s %s (%d/%d steps)\n", task.ID, a.state(string(task.State)), done, total)
		for _, s := range task.Steps {
			if s.LastError != nil && !s.State.Finished() {
				fmt.Fprintf(a.out, "  step %s %s: %s\n", s.Name, a.state(string(s.State)), s.LastError.Message)
			}
		}
	}
	switch task.State {
	case tasker.TaskComplete, tasker.TaskResolvedManually:
		return nil
	}
	return &silentFailure{code: exitFailure}
}

// barWidth is the progress bar's width in cells.
const barWidth = 20

// progressLine is one frame: "[#####---------------] 1/4 steps  running: b, c  (steps_in_process)".
func progressLine(task *tasker.Task) string {
	done, total := progress(task)
	filled := 0
	if total > 0 {
		filled = done * barWidth / total
	}
	var b strings.Builder
	b.WriteString("[" + strings.Repeat("#", filled) + strings.Repeat("-", barWidth-filled) + "]")
	fmt.Fprintf(&b, " %d/%d steps", done, total)
	if r := running(task); len(r) > 0 {
		b.WriteString("  running: " + strings.Join(r, ", "))
	}
	fmt.Fprintf(&b, "  (%s)", task.State)
	return b.String()
}

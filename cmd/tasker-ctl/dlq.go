package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/statemachine"
)

func newDLQCmd(a *app) *cobra.Command {
	c := &cobra.Command{Use: "dlq", Short: "Work the dead-letter queue: list, inspect, resolve, count"}
	c.AddCommand(newDLQListCmd(a), newDLQGetCmd(a), newDLQUpdateCmd(a), newDLQStatsCmd(a))
	return c
}

func newDLQListCmd(a *app) *cobra.Command {
	var status, reason, ns, since, cursor string
	var limit int
	c := &cobra.Command{
		Use:   "list",
		Short: "List dead-letter entries, newest first (--cursor continues a page)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := tasker.DeadLetterFilter{Status: tasker.DeadLetterStatus(status), Reason: tasker.DeadLetterReason(reason),
				Namespace: ns, Limit: limit, Cursor: cursor}
			if status != "" && !f.Status.Valid() {
				return usageErr("--status %q: want one of %v", status, statemachine.DeadLetterStatuses())
			}
			if reason != "" && !f.Reason.Valid() {
				return usageErr("--reason %q is not a dead-letter reason", reason)
			}
			var err error
			if f.Since, err = parseSince(since); err != nil {
				return err
			}
			eng, err := a.engine(cmd.Context())
			if err != nil {
				return err
			}
			page, err := eng.DeadLetters(cmd.Context(), f)
			if err != nil {
				return err
			}
			v := dlqPageView{Entries: []deadLetterView{}, NextCursor: page.NextCursor}
			for i := range page.Entries {
				v.Entries = append(v.Entries, viewDeadLetter(&page.Entries[i], false))
			}
			return a.emit(v, func(w io.Writer) {
				row(w, "ENTRY", "TASK", "NAMESPACE", "NAME", "REASON", "STATUS", "TASK STATE", "CREATED")
				for _, e := range v.Entries {
					row(w, e.ID, e.TaskID, e.Namespace, e.TaskName, e.Reason, a.state(e.Status), a.state(e.TaskState), when(&e.CreatedAt))
				}
				if v.NextCursor != "" {
					fmt.Fprintf(a.errOut, "more follow: --cursor %s\n", v.NextCursor)
				}
			})
		},
	}
	fl := c.Flags()
	fl.StringVar(&status, "status", "", "only entries in this status (pending, manually_resolved, permanently_failed, cancelled)")
	fl.StringVar(&reason, "reason", "", "only entries written for this reason")
	fl.StringVar(&ns, "namespace", "", "only this namespace's tasks")
	fl.StringVar(&since, "since", "", "only entries written since: a duration (24h) or a time")
	fl.IntVar(&limit, "limit", 0, "page size (default the library's)")
	fl.StringVar(&cursor, "cursor", "", "continue where the previous page ended")
	return c
}

type dlqPageView struct {
	Entries    []deadLetterView `json:"entries"`
	NextCursor string           `json:"next_cursor,omitempty"`
}

func newDLQGetCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "get TASK",
		Short: "Show a task's latest dead-letter entry, with its snapshot",
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
			d, err := eng.TaskDeadLetter(cmd.Context(), id)
			if err != nil {
				return fmt.Errorf("task %s: %w", id, err)
			}
			return a.printDeadLetter(d)
		},
	}
}

func (a *app) printDeadLetter(d *tasker.DeadLetter) error {
	v := viewDeadLetter(d, true)
	return a.emit(v, func(w io.Writer) {
		row(w, "ENTRY", v.ID)
		row(w, "TASK", v.TaskID)
		row(w, "TEMPLATE", v.Namespace+"/"+v.TaskName)
		row(w, "REASON", v.Reason)
		row(w, "STATUS", a.state(v.Status))
		row(w, "ORIGINAL STATE", a.state(v.OriginalState))
		row(w, "TASK STATE", a.state(v.TaskState))
		row(w, "CREATED", when(&v.CreatedAt))
		row(w, "RESOLVED", when(v.ResolvedAt))
		row(w, "RESOLVED BY", dash(v.ResolvedBy))
		row(w, "NOTES", dash(v.Notes))
		if snap, err := d.DecodeSnapshot(); err == nil && snap != nil {
			fmt.Fprintln(w)
			row(w, "STEP (AT ENTRY)", "STATE", "ATTEMPTS")
			for _, s := range snap.Steps {
				row(w, s.Name, a.state(string(s.State)), s.Attempts)
			}
		}
	})
}

func newDLQUpdateCmd(a *app) *cobra.Command {
	var status, notes, by string
	c := &cobra.Command{
		Use:   "update ENTRY",
		Short: "Resolve a pending entry: --status manually_resolved, permanently_failed or cancelled",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID("entry", args[0])
			if err != nil {
				return err
			}
			st := tasker.DeadLetterStatus(status)
			if !st.Valid() || !st.Resolved() {
				return usageErr("--status %q: want manually_resolved, permanently_failed or cancelled", status)
			}
			eng, err := a.engine(cmd.Context())
			if err != nil {
				return err
			}
			d, err := eng.ResolveDeadLetter(cmd.Context(), id, tasker.DeadLetterResolution{Status: st, Notes: notes, By: by})
			if err != nil {
				return fmt.Errorf("dead-letter entry %s: %w", id, err)
			}
			return a.printDeadLetter(d)
		},
	}
	c.Flags().StringVar(&status, "status", "", "the resolution (required)")
	c.Flags().StringVar(&notes, "notes", "", "what was done")
	c.Flags().StringVar(&by, "by", "", "the operator (required)")
	_ = c.MarkFlagRequired("status")
	_ = c.MarkFlagRequired("by")
	_ = c.RegisterFlagCompletionFunc("status", fixedCompletion("manually_resolved", "permanently_failed", "cancelled"))
	return c
}

type dlqStatsView struct {
	Reason                 string         `json:"reason"`
	Total                  int            `json:"total"`
	ByStatus               map[string]int `json:"by_status"`
	MeanTimeToResolutionMS int64          `json:"mean_time_to_resolution_ms"`
}

func newDLQStatsCmd(a *app) *cobra.Command {
	var ns, since string
	c := &cobra.Command{
		Use:   "stats",
		Short: "Count dead-letter entries by reason and status",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := tasker.DeadLetterStatsFilter{Namespace: ns}
			var err error
			if f.Since, err = parseSince(since); err != nil {
				return err
			}
			eng, err := a.engine(cmd.Context())
			if err != nil {
				return err
			}
			stats, err := eng.DeadLetterStats(cmd.Context(), f)
			if err != nil {
				return err
			}
			views := statsViews(stats)
			return a.emit(views, func(w io.Writer) {
				row(w, "REASON", "TOTAL", "PENDING", "RESOLVED", "FAILED", "CANCELLED", "MEAN TIME TO RESOLVE")
				for _, s := range views {
					row(w, s.Reason, s.Total, s.ByStatus["pending"], s.ByStatus["manually_resolved"], s.ByStatus["permanently_failed"],
						s.ByStatus["cancelled"], ago(msDuration(s.MeanTimeToResolutionMS)))
				}
			})
		},
	}
	c.Flags().StringVar(&ns, "namespace", "", "only this namespace's tasks")
	c.Flags().StringVar(&since, "since", "", "only entries written since: a duration (24h) or a time")
	return c
}

func statsViews(stats []tasker.DeadLetterStats) []dlqStatsView {
	out := make([]dlqStatsView, 0, len(stats))
	for _, s := range stats {
		v := dlqStatsView{Reason: string(s.Reason), Total: s.Total, ByStatus: map[string]int{},
			MeanTimeToResolutionMS: s.MeanTimeToResolution.Milliseconds()}
		for k, n := range s.ByStatus {
			v.ByStatus[string(k)] = n
		}
		out = append(out, v)
	}
	return out
}

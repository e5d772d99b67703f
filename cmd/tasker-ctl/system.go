package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tasker-systems/tasker"
)

// msDuration is a count of milliseconds as a duration.
func msDuration(ms int64) time.Duration { return time.Duration(ms) * time.Millisecond }

func newSystemCmd(a *app) *cobra.Command {
	c := &cobra.Command{Use: "system", Short: "Health and staleness of the workflows on the database"}
	c.AddCommand(&cobra.Command{
		Use:   "health",
		Short: "Report the database, the maintenance leader and the pool; exit 1 unless ok",
		Long: `Report health as the library's Engine.Health sees it from tasker-ctl's own engine: the
database's answer, who holds the maintenance leadership, and the connection pool. tasker-ctl runs
no workers, so the workers' slots and the queue of served namespaces are those of an idle engine.
The JSON document is the library's Health value. Exit 0 when the status is ok, 1 otherwise.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			eng, err := a.engine(cmd.Context())
			if err != nil {
				return err
			}
			h, err := eng.Health(cmd.Context())
			if err != nil {
				return err
			}
			if err := a.emit(h, func(w io.Writer) { a.healthRows(w, h) }); err != nil {
				return err
			}
			if h.Status != tasker.HealthOK {
				return &silentFailure{code: exitFailure}
			}
			return nil
		},
	})
	c.AddCommand(newStalenessCmd(a))
	return c
}

func (a *app) healthRows(w io.Writer, h *tasker.Health) {
	row(w, "STATUS", a.state(string(h.Status)))
	if len(h.Reasons) > 0 {
		row(w, "REASONS", strings.Join(h.Reasons, "; "))
	}
	db := "ok"
	if h.Database.Error != "" {
		db = h.Database.Error
	}
	row(w, "DATABASE", fmt.Sprintf("%s (ping %s)", db, ago(h.Database.Latency)))
	leader := "none (no engine runs the maintenance services)"
	if h.Leader.Held {
		leader = fmt.Sprintf("%s (lease until %s)", h.Leader.LeaderID, h.Leader.ExpiresAt.Local().Format(time.DateTime))
	}
	if h.Leader.Error != "" {
		leader = h.Leader.Error
	}
	row(w, "LEADER", leader)
	if h.Pool != nil {
		row(w, "POOL", fmt.Sprintf("%d/%d connections in use", h.Pool.AcquiredConns, h.Pool.MaxConns))
	}
	row(w, "CHECKED", h.CheckedAt.Local().Format(time.DateTime))
}

type staleView struct {
	TaskID     string  `json:"task_id"`
	Namespace  string  `json:"namespace"`
	Name       string  `json:"name"`
	Version    string  `json:"version"`
	State      string  `json:"state"`
	AgeMS      int64   `json:"age_ms"`
	StateAgeMS int64   `json:"state_age_ms"`
	Threshold  string  `json:"threshold,omitempty"`
	LimitMS    int64   `json:"limit_ms"`
	Ratio      float64 `json:"ratio"`
	Band       string  `json:"band"`
	Action     string  `json:"action,omitempty"`
}

func newStalenessCmd(a *app) *cobra.Command {
	var ns, minBand, after string
	var limit int
	c := &cobra.Command{
		Use:   "staleness",
		Short: "The monitoring view: unfinished tasks against their staleness thresholds",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o := tasker.StalenessOptions{Namespace: ns, MinBand: tasker.StalenessBand(minBand), Limit: limit}
			if after != "" {
				var err error
				if o.AfterID, err = parseID("--after", after); err != nil {
					return err
				}
			}
			eng, err := a.engine(cmd.Context())
			if err != nil {
				return err
			}
			reports, err := eng.Staleness(cmd.Context(), o)
			if err != nil {
				return err
			}
			views := make([]staleView, 0, len(reports))
			for _, r := range reports {
				views = append(views, staleView{TaskID: r.TaskID.String(), Namespace: r.Namespace, Name: r.Name, Version: r.Version,
					State: string(r.State), AgeMS: r.Age.Milliseconds(), StateAgeMS: r.StateAge.Milliseconds(),
					Threshold: r.Threshold, LimitMS: r.Limit.Milliseconds(), Ratio: r.Ratio, Band: string(r.Band), Action: string(r.Action)})
			}
			return a.emit(views, func(w io.Writer) {
				row(w, "TASK", "NAMESPACE", "NAME", "STATE", "IN STATE", "THRESHOLD", "LIMIT", "RATIO", "BAND")
				for _, v := range views {
					row(w, v.TaskID, v.Namespace, v.Name, a.state(v.State), ago(msDuration(v.StateAgeMS)), dash(v.Threshold),
						ago(msDuration(v.LimitMS)), fmt.Sprintf("%.2f", v.Ratio), a.state(v.Band))
				}
			})
		},
	}
	c.Flags().StringVar(&ns, "namespace", "", "only this namespace")
	c.Flags().StringVar(&minBand, "min-band", "", "only tasks in this band or worse (warning, stale)")
	c.Flags().IntVar(&limit, "limit", 100, "at most this many tasks (0: all)")
	c.Flags().StringVar(&after, "after", "", "continue after this task ID")
	return c
}

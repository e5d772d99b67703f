package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/goccy/go-yaml"
)

// emit writes v as JSON or YAML, or, for --output table, calls table with an aligned writer.
// JSON and YAML are the same document: YAML is converted from the JSON, so its keys are the
// JSON's.
func (a *app) emit(v any, table func(w io.Writer)) error {
	switch a.output {
	case "json":
		enc := json.NewEncoder(a.out)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "yaml":
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		y, err := yaml.JSONToYAML(b)
		if err != nil {
			return err
		}
		_, err = a.out.Write(y)
		return err
	}
	tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

// row writes one tab-separated table row.
func row(w io.Writer, cells ...any) {
	s := make([]string, len(cells))
	for i, c := range cells {
		s[i] = fmt.Sprint(c)
	}
	fmt.Fprintln(w, strings.Join(s, "\t"))
}

// ANSI colours for states on a terminal.
const (
	ansiReset  = "\x1b[0m"
	ansiRed    = "\x1b[31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiGrey   = "\x1b[90m"
)

// state colours a task's or step's state on a terminal. tabwriter counts the escape codes as
// text, so every cell of a column is coloured or none is (a column of states always is).
func (a *app) state(s string) string {
	if !a.colour() {
		return s
	}
	c := ""
	switch s {
	case "complete", "resolved_manually", "manually_resolved":
		c = ansiGreen
	case "error", "blocked_by_failures", "permanently_failed", "down":
		c = ansiRed
	case "in_progress", "steps_in_process", "evaluating_results", "enqueued", "waiting_for_retry",
		"waiting_for_dependencies", "initializing", "enqueuing_steps", "pending", "degraded", "warning":
		c = ansiYellow
	case "cancelled":
		c = ansiGrey
	case "ok", "healthy":
		c = ansiGreen
	case "stale", "critical":
		c = ansiRed
	}
	if c == "" {
		return s
	}
	return c + s + ansiReset
}

// when formats a time for tables ("-" for none).
func when(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.DateTime)
}

// ago formats a duration for tables, rounded.
func ago(d time.Duration) string {
	switch {
	case d >= time.Hour:
		return d.Round(time.Minute).String()
	case d >= time.Second:
		return d.Round(time.Second).String()
	case d >= time.Millisecond:
		return d.Round(time.Millisecond).String()
	default:
		return d.Round(time.Microsecond).String()
	}
}

// dash is s, or "-" when empty.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

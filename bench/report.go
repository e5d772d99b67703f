package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Result is one system's figures in one scenario.
type Result struct {
	Scenario string `json:"scenario"`
	System   string `json:"system"`
	// N is how many samples, tasks or jobs the figures cover.
	N int `json:"n,omitempty"`
	// Latency percentiles, when the scenario measures latency.
	P50 time.Duration `json:"p50_ns,omitempty"`
	P90 time.Duration `json:"p90_ns,omitempty"`
	P99 time.Duration `json:"p99_ns,omitempty"`
	Max time.Duration `json:"max_ns,omitempty"`
	// Metrics holds the rest, with the unit in the key (tasks_per_s, seconds, ...).
	Metrics map[string]float64 `json:"metrics,omitempty"`
	// Text is shown in the result column instead of Metrics when set (published figures).
	Text string `json:"text,omitempty"`
	Note string `json:"note,omitempty"`
	// Published marks figures quoted from elsewhere, not measured here.
	Published bool `json:"published,omitempty"`
	// Unsupported marks a scenario the system cannot do.
	Unsupported bool `json:"unsupported,omitempty"`
	// Skipped marks a system that could not run here (the reason is in Note), such as tasker on
	// RabbitMQ without a broker.
	Skipped bool `json:"skipped,omitempty"`
	// Backend is, for tasker's rows, the store and queue: pgqueue (PostgreSQL with its own
	// queue), rabbitmq (PostgreSQL with RabbitMQ) or memory (store/memory).
	Backend string `json:"backend,omitempty"`
	// VsTasker holds, for the rows of the rabbitmq and memory backends, each of p50, p90, p99,
	// tasks_per_s and steps_per_s divided by the same figure of the pgqueue row of the same
	// scenario and run.
	VsTasker map[string]float64 `json:"vs_tasker,omitempty"`
	// Load1 is the 1-minute load average when the result was taken; BusyBefore (with -quiet) the
	// share of CPU that others used just before the system's run.
	Load1      float64 `json:"load1"`
	BusyBefore float64 `json:"busy_before,omitempty"`
}

// withLatencies fills N and the percentiles from samples.
func (r Result) withLatencies(ds []time.Duration) Result {
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	r.N = len(s)
	if len(s) > 0 {
		r.P50, r.P90, r.P99, r.Max = pct(s, 0.50), pct(s, 0.90), pct(s, 0.99), s[len(s)-1]
	}
	return r
}

// pct is the nearest-rank percentile of sorted samples.
func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func (r *Result) set(k string, v float64) {
	if r.Metrics == nil {
		r.Metrics = map[string]float64{}
	}
	r.Metrics[k] = v
}

// perUnit sets the statements and round trips per unit (step, task, job) counted between
// two snapshots of a stmtCounter, and the database transactions per unit (tx < 0: unknown).
// The statements are those of the measured part; the transactions (from pg_stat_database) those
// of the whole life of the system's pool, warm-up included, over txUnits units.
func (r *Result) perUnit(unit string, n int, d counts, tx int64, txUnits int) {
	if n > 0 {
		r.set("stmts_per_"+unit, float64(d.stmts)/float64(n))
		r.set("trips_per_"+unit, float64(d.trips)/float64(n))
	}
	if tx >= 0 && txUnits > 0 {
		r.set("tx_per_"+unit, float64(tx)/float64(txUnits))
	}
}

// metricOrder and metricLabel say which Metrics the table shows, and how; the JSON has all.
var metricOrder = []string{"tasks_per_s", "jobs_per_s", "steps_per_s", "seconds", "create_seconds", "created_per_s",
	"stmts_per_step", "trips_per_step", "stmts_per_task", "trips_per_task", "stmts_per_job", "trips_per_job",
	"stmts_per_s", "tx_per_s"}

var metricLabel = map[string]string{
	"tasks_per_s": "%.0f tasks/s", "jobs_per_s": "%.0f jobs/s", "steps_per_s": "%.0f steps/s",
	"seconds": "%.3f s", "create_seconds": "created in %.3f s", "created_per_s": "%.0f created/s",
	"stmts_per_step": "%.1f stmt/step", "trips_per_step": "%.1f trips/step",
	"stmts_per_task": "%.1f stmt/task", "trips_per_task": "%.1f trips/task",
	"stmts_per_job": "%.2f stmt/job", "trips_per_job": "%.2f trips/job",
	"stmts_per_s": "%.2f stmt/s", "tx_per_s": "%.2f tx/s",
}

func (r Result) resultText() string {
	if r.Text != "" {
		return r.Text
	}
	var parts []string
	for _, k := range metricOrder {
		if v, ok := r.Metrics[k]; ok {
			parts = append(parts, fmt.Sprintf(metricLabel[k], v))
		}
	}
	if vs := r.vsText(); vs != "" {
		parts = append(parts, vs)
	}
	return strings.Join(parts, ", ")
}

func (r Result) summary() string {
	var parts []string
	if r.N > 0 {
		parts = append(parts, fmt.Sprintf("n=%d", r.N))
	}
	if r.P50 > 0 {
		parts = append(parts, "p50="+ms(r.P50), "p90="+ms(r.P90), "p99="+ms(r.P99))
	}
	if t := r.resultText(); t != "" {
		parts = append(parts, t)
	}
	if r.Note != "" {
		parts = append(parts, "("+r.Note+")")
	}
	return strings.Join(parts, " ")
}

// plural writes n and the noun, with an s unless n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// ms formats a latency in milliseconds with three significant figures (below 0.1 ms, in whole
// microseconds).
func ms(d time.Duration) string {
	if d == 0 {
		return ""
	}
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v < 0.1: // the memory engine's handoffs
		return fmt.Sprintf("%.0f µs", v*1000)
	case v < 10:
		return fmt.Sprintf("%.2f ms", v)
	case v < 100:
		return fmt.Sprintf("%.1f ms", v)
	default:
		return fmt.Sprintf("%.0f ms", v)
	}
}

func printEnv(w io.Writer, rep Report) {
	e := rep.Env
	fmt.Fprintf(w, "\nmachine:    %s, %d CPUs, %.1f GiB RAM, Linux %s, %s\n", e.CPUModel, e.CPUs, e.MemoryGiB, e.Kernel, e.Go)
	fmt.Fprintf(w, "postgres:   %s", e.PostgresVersion)
	keys := make([]string, 0, len(e.PostgresSettings))
	for k := range e.PostgresSettings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		sep := ", "
		if i == 0 {
			sep = " — "
		}
		fmt.Fprintf(w, "%s%s=%s", sep, k, e.PostgresSettings[k])
	}
	fmt.Fprintln(w)
	mods := make([]string, 0, len(e.Modules))
	for k, v := range e.Modules {
		mods = append(mods, k+" "+v)
	}
	sort.Strings(mods)
	fmt.Fprintf(w, "modules:    tasker %s; %s\n", e.TaskerCommit, strings.Join(mods, "; "))
	fmt.Fprintf(w, "run:        %s mode, %s, pool of %d connections per system\n", rep.Mode, rep.Duration.Round(time.Second), rep.Sizes.PoolConns)
	fmt.Fprintf(w, "quiet?:     load average %s at start, %s at end, 1-minute peak %.2f; %d other client sessions on the server at start\n\n",
		e.LoadAvgStart, e.LoadAvgEnd, e.LoadAvgMax, e.OtherSessions)
}

// loadText says how busy the machine was: the 1-minute load average at the result, and with
// -quiet the share of CPU busy just before the run.
func (r Result) loadText() string {
	if r.Published || r.Unsupported || r.Skipped {
		return ""
	}
	t := fmt.Sprintf("%.1f", r.Load1)
	if r.BusyBefore > 0 {
		t += fmt.Sprintf(" (%.0f%%)", 100*r.BusyBefore)
	}
	return t
}

func printTable(w io.Writer, rs []Result) {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tsystem\tn\tp50\tp90\tp99\tresult\tload\tnote")
	for _, r := range rs {
		n := ""
		if r.N > 0 {
			n = fmt.Sprint(r.N)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Scenario, r.System, n, ms(r.P50), ms(r.P90), ms(r.P99), r.resultText(), r.loadText(), r.Note)
	}
	tw.Flush()
}

// writeMarkdown writes the environment and the results as Markdown (for BENCHMARKS.md).
func writeMarkdown(path string, rep Report) error {
	var sb strings.Builder
	fmt.Fprintln(&sb, "```")
	printEnv(&sb, rep)
	fmt.Fprintln(&sb, "```")
	fmt.Fprintln(&sb)
	markdownTable(&sb, rep.Results)
	var bl strings.Builder
	printBackends(&bl, rep.Results)
	if bl.Len() > 0 {
		fmt.Fprintf(&sb, "\n```%s```\n", bl.String())
	}
	return os.WriteFile(path, []byte(sb.String()), 0o644)
}

// markdownTable writes the results as a Markdown table.
func markdownTable(w io.Writer, rs []Result) {
	fmt.Fprintln(w, "| scenario | system | n | p50 | p90 | p99 | result | load | note |")
	fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|---|--:|---|")
	for _, r := range rs {
		n := ""
		if r.N > 0 {
			n = fmt.Sprint(r.N)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.Scenario, r.System, n, ms(r.P50), ms(r.P90), ms(r.P99), r.resultText(), r.loadText(), r.Note)
	}
}

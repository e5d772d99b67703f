package main

import (
	"crypto/rand"
	"fmt"
	"io"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/tasker-systems/tasker/queue/rabbitmq"
)

// backend is the store and queue a tasker engine runs on.
type backend string

// The backends the bench runs tasker on. pgqueue is the reference: the other two are compared
// with it, within the same run.
const (
	// backendPG is store/postgres with its own queue (queue/pgqueue): the system "tasker".
	backendPG backend = "pgqueue"
	// backendRabbit is store/postgres with queue/rabbitmq.
	backendRabbit backend = "rabbitmq"
	// backendMemory is tasker on store/memory: no database at all, an upper bound for the
	// engine's own overhead.
	backendMemory backend = "memory"
)

// taskerBackends are the tasker variants, in run order: the -systems name, the backend and the
// label of its rows.
var taskerBackends = []struct {
	system string
	be     backend
	label  string
}{
	{"tasker", backendPG, "tasker"},
	{"tasker-rabbitmq", backendRabbit, "tasker (Postgres+RabbitMQ)"},
	{"tasker-memory", backendMemory, "tasker (memory)"},
}

// rabbitURLDefault is the broker of the RabbitMQ variant, unless TASKER_RABBITMQ_URL says
// otherwise.
const rabbitURLDefault = "amqp://guest:guest@127.0.0.1:5672/"

// backendLabel is the system label of the rows of a backend.
func backendLabel(be backend) string {
	for _, t := range taskerBackends {
		if t.be == be {
			return t.label
		}
	}
	return "tasker (" + string(be) + ")"
}

// backends returns the tasker backends selected with -systems, in run order.
func (b *bench) backends() []backend {
	var out []backend
	for _, t := range taskerBackends {
		if b.has(t.system) {
			out = append(out, t.be)
		}
	}
	return out
}

// newRabbitQueue connects a RabbitMQ queue whose broker queues carry a prefix of their own
// ("tasker-bench-<random>."), so that no two rigs or runs share a queue. When the broker does not
// answer it returns a skipError, and remembers it so that later scenarios skip at once.
func (b *bench) newRabbitQueue(prefetch int) (q *rabbitmq.Queue, prefix string, err error) {
	if b.rabbitSkip != "" {
		return nil, "", &skipError{b.rabbitSkip}
	}
	prefix = "tasker-bench-" + strings.ToLower(rand.Text()[:8]) + "."
	q, err = rabbitmq.New(b.o.rabbitURL, rabbitmq.WithPrefix(prefix), rabbitmq.WithPrefetch(prefetch),
		rabbitmq.WithConnectionName("tasker-bench"))
	if err != nil {
		b.rabbitSkip = fmt.Sprintf("no RabbitMQ broker answers at %s (%v)", redactURL(b.o.rabbitURL), err)
		return nil, "", &skipError{b.rabbitSkip}
	}
	return q, prefix, nil
}

// deleteRabbitQueues closes q, made with prefix, and deletes what it declared on the broker for
// the namespaces: each main queue, its dead-letter queue and the dead-letter exchange. Delay
// queues, which only retries create, expire on their own (rabbitmq.DelayQueueGrace).
func (b *bench) deleteRabbitQueues(q *rabbitmq.Queue, prefix string, namespaces ...string) {
	_ = q.Close()
	conn, err := amqp.Dial(b.o.rabbitURL)
	if err != nil {
		b.logf("delete broker queues: %v", err)
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		b.logf("delete broker queues: %v", err)
		return
	}
	defer ch.Close()
	for _, ns := range namespaces {
		for _, name := range []string{q.QueueName(ns), q.DeadLetterQueueName(ns)} {
			if _, err := ch.QueueDelete(name, false, false, false); err != nil {
				b.logf("delete broker queue %s: %v", name, err)
				return // a failed delete closes the channel
			}
		}
	}
	// Package rabbitmq names the exchange Prefix+"dead-letter" (its doc's Topology).
	dlx := prefix + "dead-letter"
	if err := ch.ExchangeDelete(dlx, false, false); err != nil {
		b.logf("delete broker exchange %s: %v", dlx, err)
	}
}

// redactURL hides the password of a URL in messages.
func redactURL(u string) string {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		return u
	}
	userinfo, host, ok := strings.Cut(rest, "@")
	if !ok {
		return u
	}
	user, _, _ := strings.Cut(userinfo, ":")
	return scheme + "://" + user + ":***@" + host
}

// skipped adds the row of a variant that could not run, with the reason.
func (b *bench) skipped(scenario string, be backend, reason string) {
	b.add(Result{Scenario: scenario, System: backendLabel(be), Backend: string(be), Skipped: true, Text: "skipped", Note: reason})
}

// comparedMetrics are the figures a backend's row is compared on with the pgqueue row of the
// same scenario: latencies (lower is better) and rates (higher is better).
var comparedMetrics = []string{"p50", "p90", "p99", "tasks_per_s", "steps_per_s"}

// metric returns a compared figure of a row (0 when it has none).
func (r Result) metric(k string) float64 {
	switch k {
	case "p50":
		return float64(r.P50)
	case "p90":
		return float64(r.P90)
	case "p99":
		return float64(r.P99)
	}
	return r.Metrics[k]
}

// compareBackends sets VsTasker on the rows of the RabbitMQ and memory variants: each figure
// divided by the same figure of the pgqueue row of the same scenario and run.
func compareBackends(rs []Result) {
	ref := map[string]Result{}
	for _, r := range rs {
		if r.Backend == string(backendPG) && !r.Skipped {
			ref[r.Scenario] = r
		}
	}
	for i, r := range rs {
		pg, ok := ref[r.Scenario]
		if !ok || r.Skipped || r.Backend == "" || r.Backend == string(backendPG) {
			continue
		}
		for _, k := range comparedMetrics {
			if v, p := r.metric(k), pg.metric(k); v > 0 && p > 0 {
				if rs[i].VsTasker == nil {
					rs[i].VsTasker = map[string]float64{}
				}
				rs[i].VsTasker[k] = v / p
			}
		}
	}
}

// backendLines are the comparisons printed under the table: one line per scenario and figure,
// from the pgqueue row and the other backends' rows of the same scenario.
var backendLines = []struct{ scenario, metric, label string }{
	{"handoff", "p50", "handoff p50"},
	{"handoff", "p99", "handoff p99"},
	{"throughput 1-step", "tasks_per_s", "throughput 1-step"},
	{"dag throughput", "steps_per_s", "dag throughput"},
	{"dag throughput", "p50", "dag task p50"},
}

// printBackends writes, when the run has rows of another backend than pgqueue, each compared
// figure of every backend with its ratio to pgqueue's.
func printBackends(w io.Writer, rs []Result) {
	var lines []string
	for _, l := range backendLines {
		var parts []string
		var pg float64
		others := false
		for _, r := range rs {
			if r.Scenario != l.scenario || r.Backend == "" {
				continue
			}
			short := r.Backend
			if r.Backend == string(backendPG) {
				short = "pg"
			} else {
				others = true
			}
			if r.Skipped {
				parts = append(parts, short+" skipped")
				continue
			}
			v := r.metric(l.metric)
			if v <= 0 {
				continue
			}
			text := short + " " + metricText(l.metric, v)
			if r.Backend == string(backendPG) {
				pg = v
			} else if pg > 0 {
				text += fmt.Sprintf(" (%s×)", ratio(v/pg))
			}
			parts = append(parts, text)
		}
		if others && len(parts) > 1 {
			lines = append(lines, fmt.Sprintf("  %-18s %s", l.label+":", strings.Join(parts, ", ")))
		}
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprintln(w, "\ntasker's queue backends, same run (× = the backend's figure / Postgres+pgqueue's):")
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
}

// metricText formats a compared figure.
func metricText(k string, v float64) string {
	switch k {
	case "p50", "p90", "p99":
		return ms(time.Duration(v))
	case "tasks_per_s":
		return fmt.Sprintf("%.0f tasks/s", v)
	case "steps_per_s":
		return fmt.Sprintf("%.0f steps/s", v)
	}
	return fmt.Sprintf("%g", v)
}

// ratio formats a ratio with two or three significant figures.
func ratio(v float64) string {
	switch {
	case v < 0.1:
		return fmt.Sprintf("%.3f", v)
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

// vsText is the comparison shown in a backend's result column: the p50 and the scenario's rate
// (the JSON has every compared figure).
func (r Result) vsText() string {
	var parts []string
	if v, ok := r.VsTasker["p50"]; ok {
		parts = append(parts, "p50 "+ratio(v)+"×")
	}
	if v, ok := r.VsTasker["tasks_per_s"]; ok {
		parts = append(parts, "tasks/s "+ratio(v)+"×")
	} else if v, ok := r.VsTasker["steps_per_s"]; ok {
		parts = append(parts, "steps/s "+ratio(v)+"×")
	}
	if len(parts) == 0 {
		return ""
	}
	return "vs pgqueue: " + strings.Join(parts, ", ")
}

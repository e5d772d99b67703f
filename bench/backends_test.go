package main

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestCompareBackends(t *testing.T) {
	t.Parallel()
	rs := []Result{
		{Scenario: "handoff", System: "tasker", Backend: "pgqueue", P50: 4 * time.Millisecond, P99: 10 * time.Millisecond,
			Metrics: map[string]float64{"steps_per_s": 200}},
		{Scenario: "handoff", System: backendLabel(backendRabbit), Backend: "rabbitmq", P50: 2 * time.Millisecond, P99: 5 * time.Millisecond,
			Metrics: map[string]float64{"steps_per_s": 300}},
		{Scenario: "handoff", System: backendLabel(backendMemory), Backend: "memory", P50: 40 * time.Microsecond, P99: 100 * time.Microsecond,
			Metrics: map[string]float64{"steps_per_s": 20000}},
		{Scenario: "handoff", System: "river (cooldown 1ms)", P50: 3 * time.Millisecond},
		{Scenario: "throughput 1-step", System: "tasker", Backend: "pgqueue", Metrics: map[string]float64{"tasks_per_s": 500}},
		{Scenario: "throughput 1-step", System: backendLabel(backendRabbit), Backend: "rabbitmq", Skipped: true, Text: "skipped", Note: "no broker"},
		{Scenario: "throughput 1-step", System: backendLabel(backendMemory), Backend: "memory", Metrics: map[string]float64{"tasks_per_s": 15000}},
		// No pgqueue row in this scenario: nothing to compare with.
		{Scenario: "dag throughput", System: backendLabel(backendMemory), Backend: "memory", Metrics: map[string]float64{"steps_per_s": 9000}},
	}
	compareBackends(rs)
	near := func(got, want float64) bool { return math.Abs(got-want) < 1e-9 }
	if v := rs[1].VsTasker; !near(v["p50"], 0.5) || !near(v["p99"], 0.5) || !near(v["steps_per_s"], 1.5) {
		t.Errorf("rabbitmq handoff ratios = %v", v)
	}
	if v := rs[2].VsTasker; !near(v["p50"], 0.01) || !near(v["steps_per_s"], 100) {
		t.Errorf("memory handoff ratios = %v", v)
	}
	for _, i := range []int{0, 3, 4, 5, 7} {
		if rs[i].VsTasker != nil {
			t.Errorf("row %d (%s, %s) got ratios %v", i, rs[i].Scenario, rs[i].System, rs[i].VsTasker)
		}
	}
	if v := rs[6].VsTasker; !near(v["tasks_per_s"], 30) {
		t.Errorf("memory throughput ratios = %v", v)
	}
	if got, want := rs[1].vsText(), "vs pgqueue: p50 0.50×, steps/s 1.50×"; got != want {
		t.Errorf("vsText = %q, want %q", got, want)
	}

	var sb strings.Builder
	printBackends(&sb, rs)
	out := sb.String()
	for _, want := range []string{
		"handoff p50:       pg 4.00 ms, rabbitmq 2.00 ms (0.50×), memory 40 µs (0.010×)",
		"throughput 1-step: pg 500 tasks/s, rabbitmq skipped, memory 15000 tasks/s (30×)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("printBackends output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "dag throughput") {
		t.Errorf("printBackends compared a scenario without a pgqueue row:\n%s", out)
	}

	var none strings.Builder
	printBackends(&none, rs[:1])
	if none.Len() != 0 {
		t.Errorf("printBackends with pgqueue alone wrote %q", none.String())
	}
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"amqp://guest:guest@127.0.0.1:5672/": "amqp://guest:***@127.0.0.1:5672/",
		"amqp://127.0.0.1:5672/":             "amqp://127.0.0.1:5672/",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// TestObservabilityExampleOnMemory runs the example on the in-memory store: the spans of each
// task's one trace reach the stdout exporter, and the Prometheus scrape holds the tasker metrics.
func TestObservabilityExampleOnMemory(t *testing.T) {
	var traces, out bytes.Buffer
	if err := run(context.Background(), options{memory: true, tasks: 1}, &traces, &out); err != nil {
		t.Fatal(err)
	}
	names := map[string]int{}
	traceIDs := map[string]bool{}
	dec := json.NewDecoder(&traces)
	for dec.More() {
		var span struct {
			Name        string
			SpanContext struct{ TraceID string }
		}
		if err := dec.Decode(&span); err != nil {
			t.Fatal(err)
		}
		names[span.Name]++
		traceIDs[span.SpanContext.TraceID] = true
	}
	if len(traceIDs) != 1 {
		t.Errorf("one task, one trace: got %d trace ids", len(traceIDs))
	}
	for name, want := range map[string]int{"checkout": 1, "tasker.task.create": 1, "tasker.step.attempt": 5,
		"tasker.step.run": 5, "tasker.step.commit": 5, "tasker.step.retry": 1, "work charge": 2} {
		if names[name] != want {
			t.Errorf("%d spans named %q, want %d (all: %v)", names[name], name, want, names)
		}
	}
	for _, series := range []string{`tasker_step_attempts_total{`, `tasker_outcome="retry"} 1`, `tasker_outcome="complete"} 4`,
		"tasker_step_handler_duration_seconds_count{", "tasker_tasks_completed_total{", "tasker_queue_depth{"} {
		if !strings.Contains(out.String(), series) {
			t.Errorf("the scrape has no %s:\n%s", series, out.String())
		}
	}
}

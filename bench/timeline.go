package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// timeline records, when BENCH_TIMELINE is set, every statement's start and end (and marks the
// bench adds) so that one task's critical path can be printed: where a lone task's time goes.
type timeline struct {
	mu     sync.Mutex
	on     bool
	events []tlEvent
}

type tlEvent struct {
	start, end time.Time
	label      string
}

var tl = &timeline{}

func init() { tl.on = os.Getenv("BENCH_TIMELINE") != "" }

func (t *timeline) add(start time.Time, label string) {
	if !t.on {
		return
	}
	t.mu.Lock()
	t.events = append(t.events, tlEvent{start, time.Now(), label})
	t.mu.Unlock()
}

func (t *timeline) reset() {
	t.mu.Lock()
	t.events = t.events[:0]
	t.mu.Unlock()
}

func (t *timeline) print(w io.Writer, t0 time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, e := range t.events {
		fmt.Fprintf(w, "%8.3f %8.3f  %6.3f  %s\n", tms(e.start.Sub(t0)), tms(e.end.Sub(t0)), tms(e.end.Sub(e.start)), truncate(e.label, 160))
	}
}

func tms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

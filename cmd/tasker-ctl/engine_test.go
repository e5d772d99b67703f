package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/store/postgres"
)

// runEngine starts an engine in the test process on the test's schema, as an application would
// run next to tasker-ctl, with the template registered and the handlers bound; it stops at
// cleanup.
func runEngine(t *testing.T, db *testDB, yaml string, handlers map[string]tasker.HandlerFunc) *tasker.Engine {
	t.Helper()
	eng, err := tasker.NewEngine(tasker.Config{Store: postgres.New(db.Pool, postgres.WithSchema(db.Schema)),
		Lease: 5 * time.Second, ShutdownTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := tasker.ParseTemplate([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Register(tmpl); err != nil {
		t.Fatal(err)
	}
	for name, h := range handlers {
		eng.Handle(name, h)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.RunWorkers(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("RunWorkers: %v", err)
		}
	})
	return eng
}

// gate lets a test release each step's handler by name.
type gate struct {
	ch map[string]chan struct{} // fixed at creation; each is closed once
}

func newGate(names ...string) *gate {
	g := &gate{ch: map[string]chan struct{}{}}
	for _, n := range names {
		g.ch[n] = make(chan struct{})
	}
	return g
}

func (g *gate) open(name string) { close(g.ch[name]) }

func (g *gate) handler(ctx context.Context, s *tasker.Step) (any, error) {
	select {
	case <-g.ch[s.Name]:
		return map[string]string{"step": s.Name}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// lineReader reads a running command's output line by line, with a deadline per wait.
type lineReader struct {
	lines chan string
	all   []string
}

func newLineReader(r io.Reader) *lineReader {
	lr := &lineReader{lines: make(chan string, 256)}
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lr.lines <- sc.Text()
		}
		close(lr.lines)
	}()
	return lr
}

// await reads lines until one contains all of wants, failing the test after d.
func (lr *lineReader) await(t *testing.T, d time.Duration, wants ...string) string {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case l, ok := <-lr.lines:
			if !ok {
				t.Fatalf("output ended before a line with %q; output:\n%s", wants, strings.Join(lr.all, "\n"))
			}
			lr.all = append(lr.all, l)
			match := true
			for _, w := range wants {
				match = match && strings.Contains(l, w)
			}
			if match {
				return l
			}
		case <-timer.C:
			t.Fatalf("no line with %q within %v; output:\n%s", wants, d, strings.Join(lr.all, "\n"))
		}
	}
}

// rest reads the remaining lines.
func (lr *lineReader) rest() []string {
	for l := range lr.lines {
		lr.all = append(lr.all, l)
	}
	return lr.all
}

// TestTaskWatch: watch follows a running task step by step (each handler waits until the test has
// seen the step running), and ends with the final state and exit 0.
func TestTaskWatch(t *testing.T) {
	t.Parallel()
	db := newDB(t, true)
	g := newGate("fetch", "transform", "load")
	eng := runEngine(t, db, linearYAML, map[string]tasker.HandlerFunc{"slow": g.handler})
	task, err := eng.CreateTask(context.Background(), tasker.TaskRequest{Namespace: "ctltest", Name: "pipeline", Context: map[string]int{"n": 1}})
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "--database-url", db.URL, "--schema", db.Schema, "task", "watch", task.ID.String(), "--interval", "50ms")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lr := newLineReader(out)
	lr.await(t, 20*time.Second, "[--------------------] 0/3 steps", "running: fetch")
	g.open("fetch")
	lr.await(t, 20*time.Second, "] 1/3 steps", "running: transform")
	g.open("transform")
	lr.await(t, 20*time.Second, "] 2/3 steps", "running: load")
	g.open("load")
	all := lr.rest()
	err = cmd.Wait()
	if err != nil {
		t.Fatalf("watch: %v\n%s\n%s", err, strings.Join(all, "\n"), stderr.String())
	}
	last := all[len(all)-1]
	if want := "task " + task.ID.String() + " complete (3/3 steps)"; last != want {
		t.Fatalf("last line %q, want %q; output:\n%s", last, want, strings.Join(all, "\n"))
	}
	if !strings.Contains(all[len(all)-2], "[####################] 3/3 steps") {
		t.Fatalf("the bar does not end full:\n%s", strings.Join(all, "\n"))
	}

	// A settled task: one frame and the final state; as JSON, the task.
	ctl(t, db, "task", "watch", task.ID.String()).code(t, 0).contains(t, "stdout", "complete (3/3 steps)")
	var v taskView
	ctl(t, db, "task", "watch", task.ID.String(), "-o", "json").code(t, 0).json(t, &v)
	if v.State != "complete" || *v.StepsDone != 3 {
		t.Fatalf("watch JSON: %+v", v)
	}
}

const failingYAML = `
name: fragile
namespace_name: ctlfail
version: 1.0.0
steps:
  - name: first
    handler: {callable: ok}
  - name: flaky
    handler: {callable: flaky}
    dependencies: [first]
  - name: last
    handler: {callable: ok}
    dependencies: [flaky]
`

// flaky fails for good while failing is set.
type flaky struct {
	mu      sync.Mutex
	failing bool
}

func (f *flaky) set(v bool) { f.mu.Lock(); f.failing = v; f.mu.Unlock() }

func (f *flaky) handle(context.Context, *tasker.Step) (any, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failing {
		return nil, tasker.Permanent(errors.New("the upstream said no"))
	}
	return map[string]bool{"ok": true}, nil
}

func okHandler(context.Context, *tasker.Step) (any, error) { return map[string]bool{"ok": true}, nil }

// blockedTask creates a fragile task and waits until it is blocked by its flaky step.
func blockedTask(t *testing.T, eng *tasker.Engine) *tasker.Task {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	task, err := eng.CreateTask(ctx, tasker.TaskRequest{Namespace: "ctlfail", Name: "fragile", Context: map[string]string{"run": uuid.NewString()}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := eng.WaitTask(ctx, task.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != tasker.TaskBlockedByFailures {
		t.Fatalf("task is %s, want blocked_by_failures", got.State)
	}
	return got
}

// waitState waits for the task to settle and checks its state.
func waitState(t *testing.T, eng *tasker.Engine, id uuid.UUID, want tasker.TaskState) *tasker.Task {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, err := eng.WaitTask(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != want {
		t.Fatalf("task %s is %s, want %s", id, got.State, want)
	}
	return got
}

// TestStepCommands: retry, resolve and complete a failed step, by name and by ID, with the audit
// trail recording the operator.
func TestStepCommands(t *testing.T) {
	t.Parallel()
	db := newDB(t, true)
	f := &flaky{failing: true}
	eng := runEngine(t, db, failingYAML, map[string]tasker.HandlerFunc{"ok": okHandler, "flaky": f.handle})

	// watch on a task that fails: exit 1, ending with its state and the step's error.
	blocked := blockedTask(t, eng)
	r := ctl(t, db, "task", "watch", blocked.ID.String()).code(t, 1)
	r.contains(t, "stdout", "blocked_by_failures (1/3 steps)", "step flaky error: the upstream said no")
	ctl(t, db, "task", "steps", blocked.ID.String()).code(t, 0).contains(t, "stdout", "flaky", "error", "the upstream said no")

	// retry, by name, once the upstream says yes.
	f.set(false)
	var retried stepActionView
	ctl(t, db, "step", "retry", blocked.ID.String(), "flaky", "--by", "alice", "--reason", "upstream fixed", "-o", "json").code(t, 0).json(t, &retried)
	if retried.Action != "retry" || retried.Step.Name != "flaky" || retried.Step.State == "error" {
		t.Fatalf("retry JSON: %+v", retried)
	}
	waitState(t, eng, blocked.ID, tasker.TaskComplete)
	ctl(t, db, "task", "audit", blocked.ID.String()).code(t, 0).contains(t, "stdout", "flaky", "reset")
	var trs []transitionView
	ctl(t, db, "task", "audit", blocked.ID.String(), "-o", "json").code(t, 0).json(t, &trs)
	found := false
	for _, tr := range trs {
		found = found || (tr.StepName == "flaky" && strings.Contains(string(tr.Metadata), "alice") && strings.Contains(string(tr.Metadata), "upstream fixed"))
	}
	if !found {
		t.Fatalf("no transition of flaky records the operator: %+v", trs)
	}

	// complete, by ID, with a result.
	f.set(true)
	blocked = blockedTask(t, eng)
	step, _ := blocked.Step("flaky")
	var act stepActionView
	ctl(t, db, "step", "complete", blocked.ID.String(), step.ID.String(), "--result", `{"value": 42}`, "--by", "bob", "--reason", "done by hand", "-o", "json").code(t, 0).json(t, &act)
	if act.Action != "complete" || act.Step.Name != "flaky" || act.Step.State != "complete" {
		t.Fatalf("complete: %+v", act)
	}
	done := waitState(t, eng, blocked.ID, tasker.TaskComplete)
	var res map[string]int
	if err := done.Result("flaky", &res); err != nil || res["value"] != 42 {
		t.Fatalf("flaky's result: %v %v", res, err)
	}
	blocked = blockedTask(t, eng)
	ctl(t, db, "step", "complete", blocked.ID.String(), "flaky", "--result", `"by hand"`, "--by", "bob", "--reason", "r").code(t, 0).
		contains(t, "stdout", "ACTION", "complete", "STEP        flaky", "STEP STATE  complete")
	waitState(t, eng, blocked.ID, tasker.TaskComplete)
	ctl(t, db, "step", "complete", blocked.ID.String(), "flaky", "--result", `{"value":`, "--by", "b", "--reason", "r").code(t, 2).contains(t, "stderr", "--result: malformed JSON")

	// resolve.
	blocked = blockedTask(t, eng)
	ctl(t, db, "step", "resolve", blocked.ID.String(), "flaky", "--by", "carol", "--reason", "not needed").code(t, 0).contains(t, "stdout", "resolved_manually")
	waitState(t, eng, blocked.ID, tasker.TaskComplete)
	blocked = blockedTask(t, eng)
	var resolved stepActionView
	ctl(t, db, "step", "resolve", blocked.ID.String(), "flaky", "--by", "carol", "--reason", "not needed", "-o", "json").code(t, 0).json(t, &resolved)
	if resolved.Step.State != "resolved_manually" {
		t.Fatalf("resolve JSON: %+v", resolved)
	}
	waitState(t, eng, blocked.ID, tasker.TaskComplete)

	// Unknown step; a step that is not failed.
	ctl(t, db, "step", "retry", blocked.ID.String(), "nope", "--by", "a", "--reason", "r").code(t, 3).contains(t, "stderr", `no step "nope"`)
	ctl(t, db, "step", "retry", blocked.ID.String(), "first", "--by", "a", "--reason", "r").code(t, 1).contains(t, "stderr", "retry step first")
}

// TestDLQAndSystem: the dead-letter commands on an entry written by the engine, and the system
// reports.
func TestDLQAndSystem(t *testing.T) {
	t.Parallel()
	db := newDB(t, true)
	f := &flaky{failing: true}
	eng := runEngine(t, db, failingYAML, map[string]tasker.HandlerFunc{"ok": okHandler, "flaky": f.handle})
	blocked := blockedTask(t, eng)
	entry, err := eng.DeadLetterTask(context.Background(), blocked.ID, tasker.DeadLetterRequest{By: "test", Reason: "investigate"})
	if err != nil {
		t.Fatal(err)
	}
	id := entry.ID.String()

	ctl(t, db, "dlq", "list").code(t, 0).contains(t, "stdout", "ENTRY", id, blocked.ID.String(), "manual", "pending")
	var page dlqPageView
	ctl(t, db, "dlq", "list", "--status", "pending", "-o", "json").code(t, 0).json(t, &page)
	if len(page.Entries) != 1 || page.Entries[0].ID != entry.ID || page.Entries[0].TaskState != "blocked_by_failures" {
		t.Fatalf("dlq list: %+v", page)
	}
	ctl(t, db, "dlq", "list", "--status", "cancelled", "-o", "json").code(t, 0).json(t, &page)
	if len(page.Entries) != 0 {
		t.Fatalf("dlq list --status cancelled: %+v", page)
	}
	ctl(t, db, "dlq", "list", "--status", "bogus").code(t, 2)

	ctl(t, db, "dlq", "get", blocked.ID.String()).code(t, 0).contains(t, "stdout", "ENTRY", id, "STATUS", "pending", "STEP (AT ENTRY)", "flaky")
	var got deadLetterView
	ctl(t, db, "dlq", "get", blocked.ID.String(), "-o", "json").code(t, 0).json(t, &got)
	if got.ID != entry.ID || len(got.Snapshot) == 0 {
		t.Fatalf("dlq get: %+v", got)
	}

	var stats []dlqStatsView
	ctl(t, db, "dlq", "stats", "-o", "json").code(t, 0).json(t, &stats)
	if len(stats) != 1 || stats[0].Total != 1 || stats[0].ByStatus["pending"] != 1 {
		t.Fatalf("dlq stats: %+v", stats)
	}
	ctl(t, db, "dlq", "stats").code(t, 0).contains(t, "stdout", "REASON", "TOTAL", stats[0].Reason)

	ctl(t, db, "dlq", "update", id, "--status", "pending", "--by", "x").code(t, 2)
	ctl(t, db, "dlq", "update", id, "--status", "permanently_failed").code(t, 2).contains(t, "stderr", `"by"`)
	ctl(t, db, "dlq", "update", uuid.NewString(), "--status", "cancelled", "--by", "x").code(t, 3)
	ctl(t, db, "dlq", "update", id, "--status", "permanently_failed", "--notes", "gave up", "--by", "dora").code(t, 0).contains(t, "stdout", "permanently_failed", "dora", "gave up")
	ctl(t, db, "dlq", "update", id, "--status", "cancelled", "--by", "dora").code(t, 1) // already resolved

	blocked2 := blockedTask(t, eng)
	entry2, err := eng.DeadLetterTask(context.Background(), blocked2.ID, tasker.DeadLetterRequest{By: "test"})
	if err != nil {
		t.Fatal(err)
	}
	var upd deadLetterView
	ctl(t, db, "dlq", "update", entry2.ID.String(), "--status", "manually_resolved", "--by", "erin", "-o", "json").code(t, 0).json(t, &upd)
	if upd.Status != "manually_resolved" || upd.ResolvedBy != "erin" || upd.ResolvedAt == nil {
		t.Fatalf("dlq update JSON: %+v", upd)
	}

	// system health and staleness.
	ctl(t, db, "system", "health").code(t, 0).contains(t, "stdout", "STATUS", "ok", "DATABASE", "POOL")
	var h struct {
		Status   string
		Database struct{ OK bool }
	}
	ctl(t, db, "system", "health", "-o", "json").code(t, 0).json(t, &h)
	if h.Status != "ok" || !h.Database.OK {
		t.Fatalf("health: %+v", h)
	}
	var stale []staleView
	ctl(t, db, "system", "staleness", "-o", "json").code(t, 0).json(t, &stale)
	if len(stale) != 2 || stale[0].TaskID != blocked.ID.String() || stale[0].State != "blocked_by_failures" || stale[0].Band == "" {
		t.Fatalf("staleness: %+v", stale)
	}
	ctl(t, db, "system", "staleness").code(t, 0).contains(t, "stdout", "BAND", blocked.ID.String(), "blocked_by_failures")
}

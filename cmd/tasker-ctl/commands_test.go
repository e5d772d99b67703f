package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

const linearYAML = `
name: pipeline
namespace_name: ctltest
version: 1.0.0
description: three steps in a row
input_schema:
  type: object
  required: [n]
  properties:
    n: {type: integer}
steps:
  - name: fetch
    handler: {callable: slow}
  - name: transform
    handler: {callable: slow}
    dependencies: [fetch]
  - name: load
    handler: {callable: slow}
    dependencies: [transform]
`

// cycleYAML has a cycle whose first dependency list is on line 7, and an unknown dependency
// (line 13): validate reports both at once.
const cycleYAML = `name: cyclic
namespace_name: ctltest
version: 1.0.0
steps:
  - name: a
    handler: {callable: x}
    dependencies: [b]
  - name: b
    handler: {callable: x}
    dependencies: [a]
  - name: c
    handler: {callable: x}
    dependencies: [missing]
`

func TestMigrate(t *testing.T) {
	t.Parallel()
	db := newDB(t, false)
	ctl(t, db, "migrate", "status").code(t, 1).contains(t, "stdout", "VERSION", "0001", "init", "-")
	ctl(t, db, "migrate", "up").code(t, 0).contains(t, "stdout", "is at version")
	var up migrationStatusView
	ctl(t, db, "migrate", "up", "-o", "json").code(t, 0).json(t, &up) // idempotent
	if up.Current != up.Latest || up.Schema != db.Schema {
		t.Fatalf("migrate up JSON: %+v", up)
	}
	r := ctl(t, db, "migrate", "status").code(t, 0)
	if strings.Contains(r.stdout, " -\n") {
		t.Fatalf("a migration is not applied after up:\n%s", r.stdout)
	}
	var st migrationStatusView
	ctl(t, db, "migrate", "status", "-o", "json").code(t, 0).json(t, &st)
	if st.Schema != db.Schema || st.Current != st.Latest || st.Current < 7 || len(st.Migrations) != st.Latest || st.Migrations[0].AppliedAt == nil {
		t.Fatalf("status JSON: %+v", st)
	}
	ctl(t, db, "migrate", "status", "-o", "yaml").code(t, 0).contains(t, "stdout", "schema: "+db.Schema, "current: ")
	ctl(t, nil, "--schema", "ops_x", "migrate", "sql").code(t, 0).contains(t, "stdout", "-- 0001_init", `CREATE TABLE "ops_x".templates`)
	dir := t.TempDir()
	ctl(t, nil, "migrate", "sql", "--goose", dir).code(t, 0).contains(t, "stderr", "goose migrations")
}

func TestTemplateValidate(t *testing.T) {
	t.Parallel()
	good := writeFile(t, "good.yaml", linearYAML)
	bad := writeFile(t, "cycle.yaml", cycleYAML)

	ctl(t, nil, "template", "validate", good).code(t, 0).contains(t, "stdout", "good.yaml: ok (ctltest/pipeline@1.0.0, 3 steps)")
	r := ctl(t, nil, "template", "validate", good, bad).code(t, 1)
	r.contains(t, "stdout", "good.yaml: ok", "cycle.yaml:7: CYCLE_DETECTED", "a -> b -> a", "cycle.yaml:13: ")

	var views []validationView
	ctl(t, nil, "template", "validate", "-o", "json", good, bad).code(t, 1).json(t, &views)
	if len(views) != 2 || !views[0].Valid || views[1].Valid {
		t.Fatalf("validate JSON: %+v", views)
	}
	var cycle *problemView
	for i, p := range views[1].Problems {
		if p.Code == "CYCLE_DETECTED" {
			cycle = &views[1].Problems[i]
		}
	}
	if cycle == nil || cycle.Line != 7 || len(views[1].Problems) < 2 {
		t.Fatalf("want a cycle problem on line 7 among several: %+v", views[1].Problems)
	}
	ctl(t, nil, "template", "validate", "/no/such/file.yaml").code(t, 1).contains(t, "stdout", "file.yaml: open /no/such/file.yaml")
	ctl(t, nil, "template", "validate").code(t, 2)
}

func TestTemplateVisualize(t *testing.T) {
	t.Parallel()
	good := writeFile(t, "good.yaml", linearYAML)
	ctl(t, nil, "template", "visualize", good).code(t, 0).contains(t, "stdout", "flowchart", "s_fetch --> s_transform")
	ctl(t, nil, "template", "visualize", good, "--format", "dot").code(t, 0).contains(t, "stdout", "digraph", "s_fetch -> s_transform")
	ctl(t, nil, "template", "visualize", good, "--format", "png").code(t, 2).contains(t, "stderr", "want mermaid or dot")
	bad := writeFile(t, "cycle.yaml", cycleYAML)
	ctl(t, nil, "template", "visualize", bad).code(t, 1).contains(t, "stderr", "cycle.yaml:7: CYCLE_DETECTED")
}

func TestTaskCommands(t *testing.T) {
	t.Parallel()
	db := newDB(t, true)
	file := writeFile(t, "pipeline.yaml", linearYAML)

	// Create with --template: the table shows the task and its steps.
	r := ctl(t, db, "task", "create", "--template", file, "--context", `{"n": 1}`, "--tag", "a,b").code(t, 0)
	r.contains(t, "stdout", "TEMPLATE   ctltest/pipeline@1.0.0", "PROGRESS   0/3 steps", "fetch", "enqueued", "transform", "pending")

	// From the registry (no file), as JSON; the context from a file.
	ctxFile := writeFile(t, "ctx.json", `{"n": 2}`)
	var created taskView
	ctl(t, db, "task", "create", "--namespace", "ctltest", "--name", "pipeline", "--context", "@"+ctxFile, "-o", "json").code(t, 0).json(t, &created)
	if created.Name != "pipeline" || *created.StepsTotal != 3 || !strings.Contains(string(created.Context), `"n": 2`) || len(created.Steps) != 3 {
		t.Fatalf("created: %+v", created)
	}
	// And from standard input.
	var third taskView
	r = ctlIn(t, db, `{"n": 3}`, "task", "create", "--namespace", "ctltest", "--name", "pipeline", "--context", "-", "-o", "json").code(t, 0)
	r.json(t, &third)

	// The registry lists the template once.
	ctl(t, db, "template", "list").code(t, 0).contains(t, "stdout", "NAMESPACE", "ctltest", "pipeline", "1.0.0", "3")
	var tmpls []templateView
	ctl(t, db, "template", "list", "-o", "json").code(t, 0).json(t, &tmpls)
	if len(tmpls) != 1 || tmpls[0].Steps != 3 || tmpls[0].Description != "three steps in a row" || len(tmpls[0].Checksum) != 64 {
		t.Fatalf("template list: %+v", tmpls)
	}

	id := created.ID.String()
	if r := ctl(t, db, "task", "get", id); strings.Contains(r.stdout, "\x1b[") {
		t.Fatalf("colour on output that is not a terminal: %q", r.stdout)
	}
	ctl(t, db, "task", "get", id).code(t, 0).contains(t, "stdout", id, "STATE      steps_in_process", "CONTEXT    {\"n\": 2}")
	var got taskView
	ctl(t, db, "task", "get", id, "-o", "json").code(t, 0).json(t, &got)
	if got.ID != created.ID || got.State != "steps_in_process" || got.Steps[0].Name != "fetch" || got.Steps[0].State != "enqueued" {
		t.Fatalf("get: %+v", got)
	}
	ctl(t, db, "task", "get", id, "-o", "yaml").code(t, 0).contains(t, "stdout", "id: "+id, "state: steps_in_process")

	ctl(t, db, "task", "steps", id).code(t, 0).contains(t, "stdout", "STEP", "ATTEMPTS", "fetch", "0/3")
	var steps []stepView
	ctl(t, db, "task", "steps", id, "-o", "json").code(t, 0).json(t, &steps)
	if len(steps) != 3 || steps[2].Name != "load" || steps[2].State != "pending" {
		t.Fatalf("steps: %+v", steps)
	}

	ctl(t, db, "task", "audit", id).code(t, 0).contains(t, "stdout", "EVENT", "steps_enqueued", "enqueue")
	var trs []transitionView
	ctl(t, db, "task", "audit", id, "-o", "json").code(t, 0).json(t, &trs)
	if len(trs) < 4 || trs[len(trs)-1].To != "steps_in_process" {
		t.Fatalf("audit: %+v", trs)
	}

	ctl(t, db, "task", "visualize", id).code(t, 0).contains(t, "stdout", "flowchart", "fetch<br/>enqueued")
	ctl(t, db, "task", "visualize", id, "--format", "dot").code(t, 0).contains(t, "stdout", "digraph")

	// List: filters and paging.
	ctl(t, db, "task", "list").code(t, 0).contains(t, "stdout", "ID", "NAMESPACE", id, third.ID.String())
	var list []taskView
	ctl(t, db, "task", "list", "-o", "json", "--namespace", "ctltest", "--name", "pipeline", "--state", "steps_in_process", "--since", "1h").code(t, 0).json(t, &list)
	if len(list) != 3 {
		t.Fatalf("list: %d tasks, want 3", len(list))
	}
	var page1, page2 []taskView
	r = ctl(t, db, "task", "list", "-o", "json", "--limit", "2").code(t, 0)
	r.json(t, &page1)
	ctl(t, db, "task", "list", "-o", "json", "--limit", "2", "--after", page1[1].ID.String()).code(t, 0).json(t, &page2)
	if len(page1) != 2 || len(page2) != 1 || page2[0].ID == page1[0].ID || page2[0].ID == page1[1].ID {
		t.Fatalf("paging: %v then %v", page1, page2)
	}
	ctl(t, db, "task", "list", "--limit", "2").code(t, 0).contains(t, "stderr", "more may follow: --after")
	ctl(t, db, "task", "list", "-o", "json", "--namespace", "other").code(t, 0).contains(t, "stdout", "[]")
	ctl(t, db, "task", "list", "-o", "json", "--since", "2000-01-01", "--state", "complete").code(t, 0).contains(t, "stdout", "[]")
	ctl(t, db, "task", "list", "--state", "nonsense").code(t, 2).contains(t, "stderr", "not a task state")

	// Cancel.
	ctl(t, db, "task", "cancel", id, "--reason", "test").code(t, 0).contains(t, "stdout", "STATE      cancelled")
	ctl(t, db, "task", "get", id, "-o", "json").code(t, 0).json(t, &got)
	if got.State != "cancelled" {
		t.Fatalf("after cancel: %s", got.State)
	}
	ctl(t, db, "task", "cancel", id).code(t, 1).contains(t, "stderr", "cancel task "+id) // finished: refused
	var cancelled taskView
	ctl(t, db, "task", "cancel", third.ID.String(), "-o", "json").code(t, 0).json(t, &cancelled)
	if cancelled.State != "cancelled" || cancelled.Steps[0].State != "cancelled" {
		t.Fatalf("cancel JSON: %+v", cancelled)
	}
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	db := newDB(t, true)
	file := writeFile(t, "pipeline.yaml", linearYAML)
	unknown := "01a2371c-0000-7000-8000-000000000000"

	for _, args := range [][]string{{"task", "get", unknown}, {"task", "steps", unknown}, {"task", "audit", unknown},
		{"task", "visualize", unknown}, {"task", "cancel", unknown}, {"task", "watch", unknown},
		{"step", "retry", unknown, "fetch", "--by", "me", "--reason", "x"}, {"dlq", "get", unknown}} {
		ctl(t, db, args...).code(t, 3).contains(t, "stderr", "task not found", unknown)
	}
	var empty []taskView
	ctl(t, db, "task", "list", "-o", "json").code(t, 0).json(t, &empty)

	// A malformed JSON context, a context that is not an object, and a context the schema refuses.
	ctl(t, db, "task", "create", "--template", file, "--context", `{"n": 1,`).code(t, 2).contains(t, "stderr", "--context: malformed JSON")
	ctl(t, db, "task", "create", "--template", file, "--context", `{"n" 1}`).code(t, 2).contains(t, "stderr", "malformed JSON at byte 6")
	ctl(t, db, "task", "create", "--template", file, "--context", `[1]`).code(t, 2).contains(t, "stderr", "want a JSON object")
	ctl(t, db, "task", "create", "--template", file, "--context", `{"n": "x"}`).code(t, 1).contains(t, "stderr", "invalid input for ctltest/pipeline@1.0.0", "want integer")
	ctl(t, db, "task", "create", "--template", file, "--context", "@/no/such/file").code(t, 2)

	// A template with a cycle names the line; an unknown template is not found.
	bad := writeFile(t, "cycle.yaml", cycleYAML)
	ctl(t, db, "task", "create", "--template", bad).code(t, 1).contains(t, "stderr", "cycle.yaml:7: CYCLE_DETECTED")
	ctl(t, db, "task", "create", "--namespace", "ctltest", "--name", "nope").code(t, 3).contains(t, "stderr", "template ctltest/nope is not in the registry")

	// Usage errors.
	ctl(t, db, "task", "get", "not-a-uuid").code(t, 2).contains(t, "stderr", `task "not-a-uuid" is not a UUID`)
	ctl(t, db, "task", "get").code(t, 2).contains(t, "stderr", "accepts 1 arg")
	ctl(t, db, "task", "frobnicate").code(t, 2).contains(t, "stderr", `unknown command "frobnicate"`)
	ctl(t, db, "frobnicate").code(t, 2)
	ctl(t, db, "task", "list", "--bogus").code(t, 2).contains(t, "stderr", "unknown flag: --bogus")
	ctl(t, db, "step", "retry", unknown, "fetch").code(t, 2).contains(t, "stderr", `required flag(s) "by", "reason" not set`)
	ctl(t, db, "task", "create").code(t, 2).contains(t, "stderr", "--namespace and --name are required")
	ctl(t, db, "task", "list", "-o", "xml").code(t, 2).contains(t, "stderr", "want table, json or yaml")
	ctl(t, nil, "task", "list").code(t, 2).contains(t, "stderr", "no database")

	// The database: unreachable, or not migrated.
	ctl(t, nil, "--database-url", "postgres://postgres@127.0.0.1:1/postgres?connect_timeout=2", "task", "list").code(t, 4).contains(t, "stderr", "database unreachable")
	fresh := newDB(t, false)
	ctl(t, fresh, "task", "list").code(t, 1).contains(t, "stderr", "tasker-ctl migrate up")
}

func TestHelpAndCompletion(t *testing.T) {
	t.Parallel()
	ctl(t, nil, "--help").code(t, 0).contains(t, "stdout", "Exit codes:", "4  the database is unreachable", "mcp", "completion")
	ctl(t, nil, "task", "watch", "--help").code(t, 0).contains(t, "stdout", "exit code follows the outcome")
	ctl(t, nil, "completion", "bash").code(t, 0).contains(t, "stdout", "bash completion")
	ctl(t, nil, "completion", "zsh").code(t, 0).contains(t, "stdout", "#compdef tasker-ctl")
	// Dynamic completion of a flag's values.
	ctl(t, nil, "__complete", "task", "list", "--state", "").code(t, 0).contains(t, "stdout", "blocked_by_failures", "complete")
	ctl(t, nil, "__complete", "template", "visualize", "x.yaml", "--format", "").code(t, 0).contains(t, "stdout", "mermaid", "dot")
}

// TestColourOnTerminal runs tasker-ctl on a pseudo-terminal (util-linux's script): states are
// coloured there, and not with NO_COLOR or --no-color.
func TestColourOnTerminal(t *testing.T) {
	t.Parallel()
	script, err := exec.LookPath("script")
	if err != nil {
		t.Skip("no script(1) to give tasker-ctl a terminal")
	}
	db := newDB(t, true)
	file := writeFile(t, "pipeline.yaml", linearYAML)
	var task taskView
	ctl(t, db, "task", "create", "--template", file, "--context", `{"n": 1}`, "-o", "json").code(t, 0).json(t, &task)
	onTTY := func(env string, extra ...string) string {
		args := append([]string{binary, "--database-url", db.URL, "--schema", db.Schema, "task", "get", task.ID.String()}, extra...)
		cmd := exec.Command(script, "-qec", strings.Join(args, " "), "/dev/null")
		cmd.Env = append(os.Environ(), "NO_COLOR="+env)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("script: %v\n%s", err, out)
		}
		return string(out)
	}
	if out := onTTY(""); !strings.Contains(out, "\x1b[33msteps_in_process\x1b[0m") {
		t.Fatalf("no colour on a terminal: %q", out)
	}
	if out := onTTY("1"); strings.Contains(out, "\x1b[") {
		t.Fatalf("colour with NO_COLOR: %q", out)
	}
	if out := onTTY("", "--no-color"); strings.Contains(out, "\x1b[") {
		t.Fatalf("colour with --no-color: %q", out)
	}
}

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tasker-systems/tasker"
)

// mcpClient speaks JSON-RPC to tasker-ctl mcp over its standard input and output, one message a
// line, as an MCP client does.
type mcpClient struct {
	t      *testing.T
	in     io.WriteCloser
	out    *bufio.Scanner
	nextID int
}

type rpcResponse struct {
	ID     *int            `json:"id"`
	Method string          `json:"method"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func startMCP(t *testing.T, db *testDB) *mcpClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	cmd := exec.CommandContext(ctx, binary, "--database-url", db.URL, "--schema", db.Schema, "mcp")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = in.Close() // end of input stops the server
		err := cmd.Wait()
		cancel()
		if err != nil {
			t.Errorf("tasker-ctl mcp: %v\n%s", err, stderr.String())
		}
	})
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<22)
	return &mcpClient{t: t, in: in, out: sc}
}

func (c *mcpClient) send(v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.in.Write(append(b, '\n')); err != nil {
		c.t.Fatal(err)
	}
}

// call sends a request and returns its response's result (failing on a JSON-RPC error).
func (c *mcpClient) call(method string, params any) json.RawMessage {
	c.t.Helper()
	c.nextID++
	id := c.nextID
	c.send(map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": params})
	for c.out.Scan() {
		var r rpcResponse
		if err := json.Unmarshal(c.out.Bytes(), &r); err != nil {
			c.t.Fatalf("not JSON-RPC: %v: %s", err, c.out.Text())
		}
		if r.ID == nil || *r.ID != id { // a notification
			continue
		}
		if r.Error != nil {
			c.t.Fatalf("%s: JSON-RPC error %d: %s", method, r.Error.Code, r.Error.Message)
		}
		return r.Result
	}
	c.t.Fatalf("%s: the server closed its output: %v", method, c.out.Err())
	return nil
}

type toolResult struct {
	Content []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"content"`
	StructuredContent json.RawMessage `json:"structuredContent"`
	IsError           bool            `json:"isError"`
}

// tool calls a tool; wantError says whether the result must be an error result. It returns the
// structured content (or, for an error, the text).
func (c *mcpClient) tool(name string, args map[string]any, wantError bool) (json.RawMessage, string) {
	c.t.Helper()
	var r toolResult
	if err := json.Unmarshal(c.call("tools/call", map[string]any{"name": name, "arguments": args}), &r); err != nil {
		c.t.Fatal(err)
	}
	text := ""
	if len(r.Content) > 0 {
		text = r.Content[0].Text
	}
	if r.IsError != wantError {
		c.t.Fatalf("tool %s: isError %v, want %v: %s", name, r.IsError, wantError, text)
	}
	return r.StructuredContent, text
}

func TestMCP(t *testing.T) {
	t.Parallel()
	db := newDB(t, true)
	c := startMCP(t, db)

	// initialize, then the initialized notification.
	var init struct {
		ProtocolVersion string `json:"protocolVersion"`
		ServerInfo      struct{ Name, Version string }
		Capabilities    struct {
			Tools json.RawMessage `json:"tools"`
		}
	}
	raw := c.call("initialize", map[string]any{"protocolVersion": "2025-06-18", "capabilities": map[string]any{},
		"clientInfo": map[string]any{"name": "tasker-ctl-test", "version": "1"}})
	if err := json.Unmarshal(raw, &init); err != nil {
		t.Fatal(err)
	}
	if init.ServerInfo.Name != "tasker-ctl" || init.ProtocolVersion != "2025-06-18" || len(init.Capabilities.Tools) == 0 {
		t.Fatalf("initialize: %s", raw)
	}
	c.send(map[string]any{"jsonrpc": "2.0", "method": "notifications/initialized"})

	// tools/list: every read and write tool, the write tools with a confirm argument.
	var list struct {
		Tools []struct {
			Name        string `json:"name"`
			InputSchema struct {
				Properties map[string]json.RawMessage `json:"properties"`
			} `json:"inputSchema"`
			Annotations struct {
				ReadOnlyHint bool `json:"readOnlyHint"`
			} `json:"annotations"`
		} `json:"tools"`
	}
	if err := json.Unmarshal(c.call("tools/list", map[string]any{}), &list); err != nil {
		t.Fatal(err)
	}
	reads := []string{"dlq_list", "dlq_stats", "health", "step_audit", "task_inspect", "task_list", "task_visualize", "template_validate", "template_visualize"}
	writes := []string{"dlq_update", "step_complete", "step_resolve", "step_retry", "task_cancel", "task_create"}
	var gotReads, gotWrites []string
	for _, tl := range list.Tools {
		_, confirm := tl.InputSchema.Properties["confirm"]
		if tl.Annotations.ReadOnlyHint {
			gotReads = append(gotReads, tl.Name)
		} else if confirm {
			gotWrites = append(gotWrites, tl.Name)
		}
	}
	slices.Sort(gotReads)
	slices.Sort(gotWrites)
	if !slices.Equal(gotReads, reads) || !slices.Equal(gotWrites, writes) {
		t.Fatalf("tools: reads %v, writes %v", gotReads, gotWrites)
	}

	// template_validate reports the cycle with its line; template_visualize draws.
	out, _ := c.tool("template_validate", map[string]any{"yaml": cycleYAML}, false)
	var val struct {
		Valid    bool
		Problems []problemView
	}
	_ = json.Unmarshal(out, &val)
	if val.Valid || len(val.Problems) == 0 || val.Problems[0].Code != "CYCLE_DETECTED" || val.Problems[0].Line != 7 {
		t.Fatalf("template_validate: %s", out)
	}
	out, _ = c.tool("template_visualize", map[string]any{"yaml": linearYAML, "format": "dot"}, false)
	if !strings.Contains(string(out), "digraph") {
		t.Fatalf("template_visualize: %s", out)
	}

	// A write tool without confirm is refused and changes nothing.
	_, text := c.tool("task_create", map[string]any{"template_yaml": linearYAML, "context": map[string]int{"n": 1}}, true)
	if !strings.Contains(text, `"confirm": true`) {
		t.Fatalf("refusal: %s", text)
	}
	out, _ = c.tool("task_list", map[string]any{}, false)
	if string(out) != `{"tasks":[]}` {
		t.Fatalf("a refused create created something: %s", out)
	}

	// With confirm it creates; the read tools see the task.
	out, _ = c.tool("task_create", map[string]any{"template_yaml": linearYAML, "context": map[string]int{"n": 1}, "confirm": true}, false)
	var task taskView
	_ = json.Unmarshal(out, &task)
	if task.Name != "pipeline" || len(task.Steps) != 3 {
		t.Fatalf("task_create: %s", out)
	}
	id := task.ID.String()
	out, _ = c.tool("task_create", map[string]any{"namespace": "ctltest", "name": "pipeline", "context": map[string]int{"n": 2}, "confirm": true}, false)
	if !strings.Contains(string(out), `"state":"steps_in_process"`) {
		t.Fatalf("task_create from the registry: %s", out)
	}
	out, _ = c.tool("task_list", map[string]any{"namespace": "ctltest", "limit": 10}, false)
	if strings.Count(string(out), `"id":`) != 2 {
		t.Fatalf("task_list: %s", out)
	}
	out, _ = c.tool("task_inspect", map[string]any{"task_id": id}, false)
	if !strings.Contains(string(out), `"name":"fetch"`) {
		t.Fatalf("task_inspect: %s", out)
	}
	out, _ = c.tool("task_visualize", map[string]any{"task_id": id}, false)
	if !strings.Contains(string(out), "flowchart") {
		t.Fatalf("task_visualize: %s", out)
	}
	out, _ = c.tool("step_audit", map[string]any{"task_id": id, "step": "fetch"}, false)
	if !strings.Contains(string(out), `"to":"enqueued"`) || strings.Contains(string(out), `"to":"steps_in_process"`) {
		t.Fatalf("step_audit for fetch: %s", out)
	}
	out, _ = c.tool("health", map[string]any{}, false)
	if !strings.Contains(string(out), `"Status":"ok"`) {
		t.Fatalf("health: %s", out)
	}
	out, _ = c.tool("dlq_list", map[string]any{"status": "pending"}, false)
	if string(out) != `{"entries":[]}` {
		t.Fatalf("dlq_list: %s", out)
	}
	out, _ = c.tool("dlq_stats", map[string]any{}, false)
	if string(out) != `{"stats":[]}` {
		t.Fatalf("dlq_stats: %s", out)
	}

	// Errors are tool errors: an unknown task, a step that is not failed, a bad argument.
	_, text = c.tool("task_inspect", map[string]any{"task_id": "01a2371c-0000-7000-8000-000000000000"}, true)
	if !strings.Contains(text, "task not found") {
		t.Fatalf("unknown task: %s", text)
	}
	_, text = c.tool("step_retry", map[string]any{"task_id": id, "step": "fetch", "by": "agent", "reason": "r", "confirm": true}, true)
	if !strings.Contains(text, "retry step fetch") {
		t.Fatalf("retry of a step not failed: %s", text)
	}
	_, text = c.tool("dlq_update", map[string]any{"entry_id": "x", "status": "cancelled", "by": "a", "confirm": true}, true)
	if !strings.Contains(text, "not a UUID") {
		t.Fatalf("dlq_update: %s", text)
	}

	// task_cancel needs confirm too.
	c.tool("task_cancel", map[string]any{"task_id": id}, true)
	out, _ = c.tool("task_cancel", map[string]any{"task_id": id, "confirm": true}, false)
	if !strings.Contains(string(out), `"state":"cancelled"`) {
		t.Fatalf("task_cancel: %s", out)
	}
}

// initMCP runs the handshake.
func initMCP(t *testing.T, c *mcpClient) {
	t.Helper()
	c.call("initialize", map[string]any{"protocolVersion": "2025-06-18", "capabilities": map[string]any{},
		"clientInfo": map[string]any{"name": "tasker-ctl-test", "version": "1"}})
	c.send(map[string]any{"jsonrpc": "2.0", "method": "notifications/initialized"})
}

// TestMCPStepAndDLQTools: the step and dead-letter write tools on a failed task that an engine in
// the test process runs.
func TestMCPStepAndDLQTools(t *testing.T) {
	t.Parallel()
	db := newDB(t, true)
	f := &flaky{failing: true}
	eng := runEngine(t, db, failingYAML, map[string]tasker.HandlerFunc{"ok": okHandler, "flaky": f.handle})
	c := startMCP(t, db)
	initMCP(t, c)

	// step_complete with a result, after a refusal without confirm.
	blocked := blockedTask(t, eng)
	args := map[string]any{"task_id": blocked.ID.String(), "step": "flaky", "by": "agent", "reason": "done by hand", "result": map[string]int{"value": 7}}
	c.tool("step_complete", args, true)
	args["confirm"] = true
	out, _ := c.tool("step_complete", args, false)
	if !strings.Contains(string(out), `"action":"complete"`) {
		t.Fatalf("step_complete: %s", out)
	}
	done := waitState(t, eng, blocked.ID, tasker.TaskComplete)
	var res map[string]int
	if err := done.Result("flaky", &res); err != nil || res["value"] != 7 {
		t.Fatalf("result %v %v", res, err)
	}

	// step_resolve, then step_retry.
	blocked = blockedTask(t, eng)
	c.tool("step_resolve", map[string]any{"task_id": blocked.ID.String(), "step": "flaky", "by": "agent", "reason": "skip", "confirm": true}, false)
	waitState(t, eng, blocked.ID, tasker.TaskComplete)
	blocked = blockedTask(t, eng)
	f.set(false)
	c.tool("step_retry", map[string]any{"task_id": blocked.ID.String(), "step": "flaky", "by": "agent", "reason": "fixed", "confirm": true}, false)
	waitState(t, eng, blocked.ID, tasker.TaskComplete)

	// dlq_update on an entry the engine wrote.
	f.set(true)
	blocked = blockedTask(t, eng)
	entry, err := eng.DeadLetterTask(context.Background(), blocked.ID, tasker.DeadLetterRequest{By: "test"})
	if err != nil {
		t.Fatal(err)
	}
	out, _ = c.tool("dlq_list", map[string]any{"status": "pending"}, false)
	if !strings.Contains(string(out), entry.ID.String()) {
		t.Fatalf("dlq_list: %s", out)
	}
	upd := map[string]any{"entry_id": entry.ID.String(), "status": "cancelled", "by": "agent", "notes": "duplicate"}
	c.tool("dlq_update", upd, true)
	upd["confirm"] = true
	out, _ = c.tool("dlq_update", upd, false)
	if !strings.Contains(string(out), `"status":"cancelled"`) || !strings.Contains(string(out), `"notes":"duplicate"`) {
		t.Fatalf("dlq_update: %s", out)
	}
	out, _ = c.tool("dlq_stats", map[string]any{}, false)
	if !strings.Contains(string(out), `"cancelled":1`) {
		t.Fatalf("dlq_stats: %s", out)
	}
}

package workerapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/httpapi"
	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/store/memory"
	"github.com/tasker-systems/tasker/store/postgres"
	"github.com/tasker-systems/tasker/workerapi"
)

// polyglot is an engine on PostgreSQL running the diamond of examples/polyglot, with the Go ends
// (start, join) served here and the worker protocol on an httptest server.
type polyglot struct {
	e   *tasker.Engine
	srv *httptest.Server
}

func startPolyglot(t *testing.T) *polyglot {
	t.Helper()
	db := testdb.New(t, testdb.WithMaxConns(10))
	return startPolyglotOn(t, postgres.New(db.Pool, postgres.WithSchema(db.Schema)))
}

// eachStore runs f on PostgreSQL and on the memory store.
func eachStore(t *testing.T, f func(t *testing.T, p *polyglot)) {
	t.Run("postgres", func(t *testing.T) { f(t, startPolyglot(t)) })
	t.Run("memory", func(t *testing.T) { f(t, startPolyglotOn(t, memory.New())) })
}

// startPolyglotOn is startPolyglot on the given store.
func startPolyglotOn(t *testing.T, st tasker.Store) *polyglot {
	t.Helper()
	e, err := tasker.NewEngine(tasker.Config{Store: st,
		WorkerID: "go-" + t.Name(), Lease: 2 * time.Second, ShutdownTimeout: time.Second})
	require.NoError(t, err)
	raw, err := os.ReadFile("../examples/polyglot/diamond.yaml")
	require.NoError(t, err)
	tmpl, err := tasker.ParseTemplate(raw)
	require.NoError(t, err)
	require.NoError(t, e.Register(tmpl))
	e.HandleFunc("start", func(context.Context, *tasker.Step) (any, error) { return map[string]string{"from": "go"}, nil })
	e.HandleFunc("join", func(_ context.Context, s *tasker.Step) (any, error) {
		var ts struct {
			Doubled int    `json:"doubled"`
			By      string `json:"by"`
		}
		var py struct {
			PlusOne int    `json:"plus_one"`
			By      string `json:"by"`
		}
		if err := s.DependencyResult("ts", &ts); err != nil {
			return nil, tasker.Permanent(err)
		}
		if err := s.DependencyResult("py", &py); err != nil {
			return nil, tasker.Permanent(err)
		}
		return map[string]any{"sum": ts.Doubled + py.PlusOne, "by": []string{ts.By, py.By}}, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.RunWorkers(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(60 * time.Second):
			t.Error("RunWorkers did not return")
		}
	})
	srv := httptest.NewServer(workerapi.New(e, workerapi.WithAuthorizer(httpapi.AllowAll)))
	t.Cleanup(srv.Close)
	return &polyglot{e: e, srv: srv}
}

// needTool skips the test when a tool is missing, unless TASKER_POLYGLOT_TESTS=1 asks for it.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("TASKER_POLYGLOT_TESTS") == "1" {
			t.Fatalf("%s is required (TASKER_POLYGLOT_TESTS=1): %v", name, err)
		}
		t.Skipf("%s not installed; set TASKER_POLYGLOT_TESTS=1 to make this a failure", name)
	}
	return p
}

// worker starts a worker process; its output lines go to lines (when non-nil) and the test log.
func (p *polyglot) worker(t *testing.T, tool, script, id string, lines chan<- string) *exec.Cmd {
	t.Helper()
	bin := needTool(t, tool)
	abs, err := filepath.Abs(filepath.Join("../examples/polyglot", script))
	require.NoError(t, err)
	cmd := exec.Command(bin, abs)
	cmd.Env = append(os.Environ(), "TASKER_URL="+p.srv.URL, "TASKER_NAMESPACE=polyglot", "TASKER_WORKER_ID="+id,
		"TASKER_LEASE_SECONDS=2", "PYTHONUNBUFFERED=1")
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = cmd.Stdout
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			t.Log(id + ": " + sc.Text())
			if lines != nil {
				select {
				case lines <- sc.Text():
				default:
				}
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		_ = cmd.Wait()
	})
	return cmd
}

func (p *polyglot) run(t *testing.T, ctx map[string]any) *tasker.Task {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	task, err := p.e.CreateTask(c, tasker.TaskRequest{Namespace: "polyglot", Name: "diamond", Version: "1.0.0", Context: ctx})
	require.NoError(t, err)
	task, err = p.e.WaitTask(c, task.ID)
	require.NoError(t, err)
	return task
}

func stepOf(t *testing.T, task *tasker.Task, name string) tasker.StepInfo {
	t.Helper()
	for _, s := range task.Steps {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no step %q", name)
	return tasker.StepInfo{}
}

// TestPolyglotDiamond runs the diamond's branches in a TypeScript and a Python worker process
// and joins them in Go.
func TestPolyglotDiamond(t *testing.T) {
	p := startPolyglot(t)
	p.worker(t, "node", "ts_worker.mjs", "ts-1", nil)
	p.worker(t, "python3", "py_worker.py", "py-1", nil)
	task := p.run(t, map[string]any{"n": 20})
	require.Equal(t, tasker.TaskState("complete"), task.State, "task %+v", task)
	var join struct {
		Sum int      `json:"sum"`
		By  []string `json:"by"`
	}
	require.NoError(t, json.Unmarshal(stepOf(t, task, "join").Result, &join))
	require.Equal(t, 20*2+20+1, join.Sum)
	require.Equal(t, []string{"node", "python"}, join.By)
	var ts struct {
		Start struct {
			From string `json:"from"`
		} `json:"start"`
	}
	require.NoError(t, json.Unmarshal(stepOf(t, task, "ts").Result, &ts))
	require.Equal(t, "go", ts.Start.From, "the TypeScript handler saw its dependency's result")
}

// TestPolyglotKilledWorkerRescued kills the TypeScript worker mid-step: the step's lease expires,
// the engine rescues it, and another TypeScript worker completes it at its second attempt.
func TestPolyglotKilledWorkerRescued(t *testing.T) {
	p := startPolyglot(t)
	lines := make(chan string, 16)
	first := p.worker(t, "node", "ts_worker.mjs", "ts-doomed", lines)
	p.worker(t, "python3", "py_worker.py", "py-1", nil)
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	task, err := p.e.CreateTask(c, tasker.TaskRequest{Namespace: "polyglot", Name: "diamond", Version: "1.0.0",
		Context: map[string]any{"n": 3, "sleep_first": true}})
	require.NoError(t, err)
	select {
	case l := <-lines:
		require.True(t, strings.HasPrefix(l, "sleeping"), l)
	case <-c.Done():
		t.Fatal("the TypeScript worker never claimed its step")
	}
	require.NoError(t, first.Process.Kill()) // SIGKILL mid-step
	p.worker(t, "node", "ts_worker.mjs", "ts-rescuer", nil)
	task, err = p.e.WaitTask(c, task.ID)
	require.NoError(t, err)
	require.Equal(t, tasker.TaskState("complete"), task.State)
	ts := stepOf(t, task, "ts")
	require.Equal(t, 2, ts.Attempts, "the rescued step ran again")
	var res struct {
		Doubled int `json:"doubled"`
	}
	require.NoError(t, json.Unmarshal(ts.Result, &res))
	require.Equal(t, 6, res.Doubled)
}

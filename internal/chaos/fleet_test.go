package chaos_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// workerRunningLine is what worker/main.go logs once it handles SIGTERM and takes work.
const workerRunningLine = "chaos worker running"

// proc is one OS process of the worker program.
type proc struct {
	slot, gen int
	cmd       *exec.Cmd
	log       string
	done      chan struct{} // closed once the process has been waited for
	err       error         // cmd.Wait's error, set before done closes
	killed    bool          // we sent SIGKILL (under fleet.mu)
}

// fleet runs a fixed number of worker processes: slot i always has one process, the latest
// generation of which is procs[i].
type fleet struct {
	t      testing.TB
	name   string // the processes' worker IDs are name-slot.generation
	bin    string
	env    []string
	logDir string

	mu         sync.Mutex
	procs      []*proc
	all        []*proc
	stopping   bool
	kills      int
	unexpected []string // processes that exited without being killed or stopped
}

func newFleet(t testing.TB, bin string, env []string, n int) *fleet {
	return newNamedFleet(t, "chaos", bin, env, n)
}

// newNamedFleet is newFleet whose worker IDs (and log files) start with name, so that fleets of
// different roles can share a test.
func newNamedFleet(t testing.TB, name, bin string, env []string, n int) *fleet {
	logDir := *flagLogs
	if logDir == "" {
		logDir = t.TempDir()
	} else if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	f := &fleet{t: t, name: name, bin: bin, env: env, logDir: logDir, procs: make([]*proc, n)}
	// Whatever happens to the test, no process outlives it.
	t.Cleanup(f.killAll)
	for i := range n {
		f.mu.Lock()
		err := f.startLocked(i)
		f.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// startLocked starts a new generation of slot i; f.mu is held.
func (f *fleet) startLocked(slot int) error {
	gen := 0
	if old := f.procs[slot]; old != nil {
		gen = old.gen + 1
	}
	id := fmt.Sprintf("%s-%d.%d", f.name, slot, gen)
	p := &proc{slot: slot, gen: gen, log: filepath.Join(f.logDir, id+".log"), done: make(chan struct{})}
	out, err := os.Create(p.log)
	if err != nil {
		return err
	}
	p.cmd = exec.Command(f.bin)
	p.cmd.Env = append(append([]string{}, f.env...), "TASKER_CHAOS_WORKER_ID="+id)
	p.cmd.Stdout, p.cmd.Stderr = out, out
	p.cmd.SysProcAttr = sysProcAttr()
	if err := p.cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("start worker %s: %w", id, err)
	}
	f.procs[slot] = p
	f.all = append(f.all, p)
	go func() {
		p.err = p.cmd.Wait()
		out.Close()
		f.mu.Lock()
		if !p.killed && !f.stopping {
			f.unexpected = append(f.unexpected, fmt.Sprintf("worker %s (pid %d) exited on its own: %v\n%s",
				id, p.cmd.Process.Pid, p.err, tail(p.log, 30)))
		}
		f.mu.Unlock()
		close(p.done)
	}()
	return nil
}

// killAndRestart SIGKILLs the process in slot i, waits until it is gone and starts the next
// generation at once. It returns the killed process's pid.
func (f *fleet) killAndRestart(slot int) (int, error) {
	f.mu.Lock()
	p := f.procs[slot]
	p.killed = true
	f.mu.Unlock()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return 0, fmt.Errorf("kill worker %d.%d: %w", p.slot, p.gen, err)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		return 0, fmt.Errorf("worker %d.%d (pid %d) still runs 10s after SIGKILL", p.slot, p.gen, p.cmd.Process.Pid)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.kills++
	return p.cmd.Process.Pid, f.startLocked(slot)
}

// stop sends SIGTERM to every current process and waits up to timeout for each to exit; it
// returns the processes that did not exit cleanly, with the tail of their logs.
func (f *fleet) stop(timeout time.Duration) []string {
	f.mu.Lock()
	f.stopping = true
	cur := append([]*proc{}, f.procs...)
	f.mu.Unlock()
	for _, p := range cur {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	var bad []string
	deadline := time.After(timeout)
	for _, p := range cur {
		select {
		case <-p.done:
			if p.err != nil && !terminatedInStartUp(p) {
				bad = append(bad, fmt.Sprintf("worker %d.%d (pid %d) exited with %v after SIGTERM\n%s",
					p.slot, p.gen, p.cmd.Process.Pid, p.err, tail(p.log, 30)))
			}
		case <-deadline:
			bad = append(bad, fmt.Sprintf("worker %d.%d (pid %d) still runs %s after SIGTERM\n%s",
				p.slot, p.gen, p.cmd.Process.Pid, timeout, tail(p.log, 30)))
		}
	}
	return bad
}

// killAll SIGKILLs every process still running and waits for it.
func (f *fleet) killAll() {
	f.mu.Lock()
	f.stopping = true
	all := append([]*proc{}, f.all...)
	f.mu.Unlock()
	for _, p := range all {
		select {
		case <-p.done:
			continue
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			f.t.Errorf("worker %d.%d (pid %d) survives SIGKILL", p.slot, p.gen, p.cmd.Process.Pid)
		}
	}
}

// grepLogs returns the log lines of every generation that contain s, at most max of them.
func (f *fleet) grepLogs(s string, max int) []string {
	f.mu.Lock()
	all := append([]*proc{}, f.all...)
	f.mu.Unlock()
	var hits []string
	for _, p := range all {
		b, err := os.ReadFile(p.log)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if bytes.Contains(sc.Bytes(), []byte(s)) {
				hits = append(hits, fmt.Sprintf("%d.%d: %s", p.slot, p.gen, sc.Text()))
				if len(hits) >= max {
					return hits
				}
			}
		}
	}
	return hits
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// terminatedInStartUp reports whether a process died of SIGTERM before it logged that it runs: it
// was restarted just before the stop, and a Go program dies of SIGTERM until it calls
// signal.Notify. It had taken no work.
func terminatedInStartUp(p *proc) bool {
	var ee *exec.ExitError
	if !errors.As(p.err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		return false
	}
	b, err := os.ReadFile(p.log)
	return err == nil && !bytes.Contains(b, []byte(workerRunningLine))
}

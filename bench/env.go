package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Env describes the machine and the database.
type Env struct {
	CPUModel         string            `json:"cpu_model"`
	CPUs             int               `json:"cpus"`
	MemoryGiB        float64           `json:"memory_gib"`
	Kernel           string            `json:"kernel"`
	Go               string            `json:"go"`
	PostgresVersion  string            `json:"postgres_version"`
	PostgresSettings map[string]string `json:"postgres_settings"`
	Modules          map[string]string `json:"modules"`
	TaskerCommit     string            `json:"tasker_commit,omitempty"`
	// LoadAvgStart and LoadAvgEnd are /proc/loadavg before and after the run; OtherSessions counts
	// the server's client sessions that were not the bench's when it started. Both say how quiet
	// the machine and the server were.
	LoadAvgStart string  `json:"loadavg_start"`
	LoadAvgEnd   string  `json:"loadavg_end"`
	LoadAvgMax   float64 `json:"loadavg_1m_max"` // the highest 1-minute load average sampled every 5 s

	OtherSessions int `json:"other_sessions_at_start"`
}

// cpuBusy samples /proc/stat over d and returns the share of all CPUs that was busy (-1 when
// unknown).
func cpuBusy(d time.Duration) float64 {
	read := func() (busy, total float64, ok bool) {
		b, err := os.ReadFile("/proc/stat")
		if err != nil {
			return 0, 0, false
		}
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(line)
		if len(f) < 5 || f[0] != "cpu" {
			return 0, 0, false
		}
		for i, s := range f[1:] {
			var v float64
			fmt.Sscanf(s, "%f", &v)
			total += v
			if i != 3 && i != 4 { // idle, iowait
				busy += v
			}
		}
		return busy, total, true
	}
	b0, t0, ok0 := read()
	time.Sleep(d)
	b1, t1, ok1 := read()
	if !ok0 || !ok1 || t1 <= t0 {
		return -1
	}
	return (b1 - b0) / (t1 - t0)
}

// settle, with -quiet, waits (at most -quiet-wait) until the machine is quiet: less than the
// -quiet share of its CPUs busy over a second while the bench itself is idle. It records what
// it measured for the next results.
func (b *bench) settle(ctx context.Context) {
	if b.o.quiet <= 0 {
		return
	}
	deadline := time.Now().Add(b.o.quietWait)
	for {
		busy := cpuBusy(time.Second)
		b.busyBefore = busy
		if busy < b.o.quiet || time.Now().After(deadline) || ctx.Err() != nil {
			if busy >= b.o.quiet {
				b.logf("  machine still busy (%.0f%% of CPU); measuring anyway", 100*busy)
			}
			return
		}
		b.logf("  waiting for a quiet machine (%.0f%% of CPU busy, want < %.0f%%)", 100*busy, 100*b.o.quiet)
		select {
		case <-ctx.Done():
		case <-time.After(4 * time.Second):
		}
	}
}

// load1 returns the 1-minute load average.
func load1() float64 {
	var v float64
	fmt.Sscanf(loadAvg(), "%f", &v)
	return v
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// settingsShown are the PostgreSQL settings that matter to these numbers.
var settingsShown = []string{"synchronous_commit", "fsync", "wal_sync_method", "full_page_writes", "commit_delay",
	"shared_buffers", "effective_cache_size", "work_mem", "max_connections", "max_wal_size", "checkpoint_timeout",
	"wal_level", "autovacuum", "jit", "random_page_cost", "huge_pages", "shared_preload_libraries"}

func collectEnv(ctx context.Context, db *pgx.Conn) (Env, error) {
	e := Env{CPUs: runtime.NumCPU(), Go: runtime.Version(), PostgresSettings: map[string]string{}, Modules: map[string]string{}}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				e.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb float64
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "MemTotal:") {
				fmt.Sscanf(strings.TrimPrefix(line, "MemTotal:"), "%f", &kb)
			}
		}
		e.MemoryGiB = float64(int(kb/1024/1024*10+0.5)) / 10
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		e.Kernel = strings.TrimSpace(string(b))
	}
	if err := db.QueryRow(ctx, `SELECT current_setting('server_version')`).Scan(&e.PostgresVersion); err != nil {
		return e, err
	}
	e.LoadAvgStart = loadAvg()
	if err := db.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()`).Scan(&e.OtherSessions); err != nil {
		return e, err
	}
	rows, err := db.Query(ctx, `SELECT name, setting || coalesce(' ' || unit, '') FROM pg_settings WHERE name = ANY($1)`, settingsShown)
	if err != nil {
		return e, err
	}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return e, err
		}
		e.PostgresSettings[k] = v
	}
	if err := rows.Err(); err != nil {
		return e, err
	}
	// Human-readable sizes for the two that are counted in pages.
	for _, k := range []string{"shared_buffers", "effective_cache_size"} {
		var v string
		if err := db.QueryRow(ctx, "SELECT current_setting('"+k+"')").Scan(&v); err == nil {
			e.PostgresSettings[k] = v
		}
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			switch d.Path {
			case "github.com/riverqueue/river", "github.com/dbos-inc/dbos-transact-golang", "github.com/jackc/pgx/v5", "gonum.org/v1/plot":
				e.Modules[d.Path] = d.Version
			}
		}
	}
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		e.TaskerCommit = strings.TrimSpace(string(out))
		if out, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(strings.TrimSpace(string(out))) > 0 {
			e.TaskerCommit += "+dirty"
		}
	}
	return e, nil
}

package testdb

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"
)

// EnvPGBin names the environment variable that points NewCluster at PostgreSQL's server binaries
// (the directory holding initdb, pg_ctl and postgres) when they are not in a standard place.
const EnvPGBin = "TASKER_TEST_PG_BIN"

// Cluster is a private, throwaway PostgreSQL server for tests that stop, restart or otherwise hurt
// their server, which they must never do to the server every other test shares. It listens on
// 127.0.0.1 on a free port with trust authentication, keeps its data in a temporary directory,
// and is stopped and deleted when the test ends.
//
// When the test runs as root, the server runs as the postgres OS user (PostgreSQL refuses root).
type Cluster struct {
	// URL reaches the cluster's postgres database as user postgres.
	URL string
	// Port is the TCP port the server listens on.
	Port int

	bin     string // directory of initdb, pg_ctl, postgres
	dir     string // owns everything: data/, the socket, the log
	data    string
	logFile string
	runAs   string // OS user to run the server binaries as; "" means the current user
}

// NewCluster initialises and starts a private cluster. It fails the test (never skips) when the
// PostgreSQL server binaries cannot be found or the server does not start.
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	bin, err := findPGBin()
	if err != nil {
		t.Fatalf("testdb: private cluster: %v", err)
	}
	c := &Cluster{bin: bin}
	if os.Geteuid() == 0 {
		c.runAs = "postgres"
	}
	// Not t.TempDir: its parent directories belong to root with mode 0700, which the postgres
	// user could not traverse.
	dir, err := os.MkdirTemp("", "tasker-pg-")
	if err != nil {
		t.Fatalf("testdb: private cluster: %v", err)
	}
	c.dir, c.data, c.logFile = dir, filepath.Join(dir, "data"), filepath.Join(dir, "server.log")
	t.Cleanup(func() {
		c.stop("immediate")
		_ = os.RemoveAll(dir)
	})
	if c.runAs != "" {
		u, err := user.Lookup(c.runAs)
		if err != nil {
			t.Fatalf("testdb: private cluster: running as root, but there is no %q OS user to run PostgreSQL as "+
				"(apt-get install postgresql creates it): %v", c.runAs, err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatalf("testdb: private cluster: chown %s: %v", dir, err)
		}
	}
	if out, err := c.run("initdb", "-D", c.data, "-U", "postgres", "--auth=trust", "-E", "UTF8",
		"--locale=C", "--no-sync"); err != nil {
		t.Fatalf("testdb: private cluster: initdb: %v\n%s", err, out)
	}
	var lastErr error
	for range 3 { // a free port may be taken between the probe and the server's bind
		c.Port, err = freePort()
		if err != nil {
			t.Fatalf("testdb: private cluster: find a free port: %v", err)
		}
		if lastErr = c.Start(); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		t.Fatalf("testdb: private cluster: %v", lastErr)
	}
	c.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.Port)
	if err := ping(c.URL, 10*time.Second); err != nil {
		t.Fatalf("testdb: private cluster does not answer at %s: %v\n%s", c.URL, err, c.Log())
	}
	return c
}

// Start starts the stopped server and waits until it accepts connections.
func (c *Cluster) Start() error {
	out, err := c.run("pg_ctl", "-D", c.data, "-l", c.logFile, "-o", c.serverOptions(), "-w", "-t", "60", "start")
	if err != nil {
		return fmt.Errorf("pg_ctl start: %w\n%s\n%s", err, out, c.Log())
	}
	return nil
}

// Stop stops the server with the given shutdown mode: "smart", "fast" or "immediate".
func (c *Cluster) Stop(mode string) error {
	out, err := c.run("pg_ctl", "-D", c.data, "-m", mode, "-w", "-t", "60", "stop")
	if err != nil {
		return fmt.Errorf("pg_ctl stop -m %s: %w\n%s", mode, err, out)
	}
	return nil
}

// Restart is pg_ctl restart -m fast: every session is terminated, the server stops and starts
// again on the same port. It returns once the server accepts connections.
func (c *Cluster) Restart() error {
	out, err := c.run("pg_ctl", "-D", c.data, "-l", c.logFile, "-o", c.serverOptions(), "-m", "fast", "-w", "-t", "60", "restart")
	if err != nil {
		return fmt.Errorf("pg_ctl restart -m fast: %w\n%s\n%s", err, out, c.Log())
	}
	return nil
}

// Log returns the server's log so far, for failure messages.
func (c *Cluster) Log() string {
	b, _ := os.ReadFile(c.logFile)
	return string(b)
}

func (c *Cluster) stop(mode string) {
	if _, err := os.Stat(filepath.Join(c.data, "postmaster.pid")); err != nil {
		return
	}
	_ = c.Stop(mode)
}

// serverOptions are the postgres options: loopback TCP on the cluster's port, the socket in the
// cluster's own directory, and durability traded for speed (the data is thrown away anyway).
func (c *Cluster) serverOptions() string {
	return fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "+
		"-c full_page_writes=off -c max_connections=200", c.Port, c.dir)
}

func (c *Cluster) run(tool string, args ...string) ([]byte, error) {
	path := filepath.Join(c.bin, tool)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var cmd *exec.Cmd
	if c.runAs != "" {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", c.runAs, "--", path}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, path, args...)
	}
	cmd.Dir = c.dir // readable by the server's user, unlike the test's working directory perhaps
	return cmd.CombinedOutput()
}

// findPGBin returns the directory of the newest installed PostgreSQL server binaries.
func findPGBin() (string, error) {
	if d := os.Getenv(EnvPGBin); d != "" {
		if _, err := os.Stat(filepath.Join(d, "pg_ctl")); err != nil {
			return "", fmt.Errorf("%s=%s holds no pg_ctl: %w", EnvPGBin, d, err)
		}
		return d, nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	sort.Slice(matches, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(matches[i]))))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(matches[j]))))
		return vi > vj
	})
	for _, m := range matches {
		d := filepath.Dir(m)
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if _, err := os.Stat(filepath.Join(filepath.Dir(p), "initdb")); err == nil {
			return filepath.Dir(p), nil
		}
	}
	return "", fmt.Errorf("no PostgreSQL server binaries (initdb, pg_ctl) found in /usr/lib/postgresql/*/bin "+
		"or on PATH: install them (apt-get install postgresql) or set %s to their directory", EnvPGBin)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

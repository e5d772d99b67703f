package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The tests build tasker-ctl once and run the binary as a user would, against a real PostgreSQL
// (TASKER_TEST_DATABASE_URL, default the local server), each test in a schema of its own.

const envTestURL = "TASKER_TEST_DATABASE_URL"

var binary string // the built tasker-ctl

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tasker-ctl-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "tasker-ctl")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build tasker-ctl: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// testURL is the server the tests use.
func testURL() string {
	if u := os.Getenv(envTestURL); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres"
}

// testDB is a private schema on the test server, migrated by tasker-ctl itself.
type testDB struct {
	URL, Schema string
	Pool        *pgxpool.Pool
}

// newDB creates a private schema name and a pool; with migrate, tasker-ctl migrate up runs on
// it. The schema is dropped when the test ends.
func newDB(t *testing.T, migrate bool) *testDB {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	db := &testDB{URL: testURL(), Schema: "ctl_" + hex.EncodeToString(b)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, db.URL)
	if err == nil {
		err = pool.Ping(ctx)
	}
	if err != nil {
		t.Fatalf("PostgreSQL at %s (set %s): %v", db.URL, envTestURL, err)
	}
	db.Pool = pool
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = pool.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{db.Schema}.Sanitize()+` CASCADE`)
		pool.Close()
	})
	if migrate {
		r := ctl(t, db, "migrate", "up")
		r.code(t, 0)
	}
	return db
}

// result is one run of tasker-ctl.
type result struct {
	args           []string
	stdout, stderr string
	exit           int
}

// code fails the test unless the run exited with want.
func (r result) code(t *testing.T, want int) result {
	t.Helper()
	if r.exit != want {
		t.Fatalf("tasker-ctl %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(r.args, " "), r.exit, want, r.stdout, r.stderr)
	}
	return r
}

// json decodes the run's standard output into v.
func (r result) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		t.Fatalf("tasker-ctl %s: stdout is not JSON: %v\n%s", strings.Join(r.args, " "), err, r.stdout)
	}
}

// contains fails the test unless the output (stdout, or stderr with err) has every string.
func (r result) contains(t *testing.T, stream string, wants ...string) result {
	t.Helper()
	got := r.stdout
	if stream == "stderr" {
		got = r.stderr
	}
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Fatalf("tasker-ctl %s: %s lacks %q:\n%s", strings.Join(r.args, " "), stream, w, got)
		}
	}
	return r
}

// ctl runs tasker-ctl on the test's schema (db may be nil for commands that need none).
func ctl(t *testing.T, db *testDB, args ...string) result {
	t.Helper()
	return ctlIn(t, db, "", args...)
}

// ctlIn is ctl with a standard input.
func ctlIn(t *testing.T, db *testDB, stdin string, args ...string) result {
	t.Helper()
	full := args
	if db != nil {
		full = append([]string{"--database-url", db.URL, "--schema", db.Schema}, args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, full...)
	cmd.Env = append(os.Environ(), "TASKER_DATABASE_URL=", "NO_COLOR=")
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{args: args, stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.exit = ee.ExitCode()
	default:
		t.Fatalf("run tasker-ctl %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// writeFile writes a file into the test's temporary directory and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

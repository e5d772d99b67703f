// Package testdb gives each test its own PostgreSQL schema, migrated and dropped afterwards, so that
// test packages and parallel tests never see each other's rows.
//
// The server is found, once per test binary, in this order:
//  1. TASKER_TEST_DATABASE_URL, when set;
//  2. the local server at postgres://postgres@127.0.0.1:5432/postgres (trust auth);
//  3. a throwaway postgres:15 container through ory/dockertest, when a Docker engine answers.
//
// When none answers, the test fails (never skips) with a message saying what to do.
package testdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/ory/dockertest/v3"
	"github.com/ory/dockertest/v3/docker"

	"github.com/tasker-systems/tasker/migrations"
)

// EnvURL names the environment variable that points the tests at a PostgreSQL server.
const EnvURL = "TASKER_TEST_DATABASE_URL"

// LocalURL is the server tried when EnvURL is unset.
const LocalURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// DB is one test's schema and a pool whose connections use it.
type DB struct {
	Pool   *pgxpool.Pool
	Schema string // a fresh schema name such as t_3f9a0c12b4d1
	URL    string // the server's URL (the schema is not part of it)
}

// Option configures New.
type Option func(*config)

type config struct {
	migrate  bool
	maxConns int32
	tracer   pgx.QueryTracer
}

// WithoutMigrations leaves the schema name unused: nothing is created, for tests of migrations.
func WithoutMigrations() Option { return func(c *config) { c.migrate = false } }

// WithMaxConns sets the pool's size (default 8).
func WithMaxConns(n int32) Option { return func(c *config) { c.maxConns = n } }

// WithTracer sets the tracer of the pool's connections (see pgx.ConnConfig.Tracer), for tests that
// watch the statements sent.
func WithTracer(tr pgx.QueryTracer) Option { return func(c *config) { c.tracer = tr } }

var (
	urlOnce sync.Once
	urlVal  string
	urlErr  error
)

// URL returns the server URL the tests use, failing the test when no server can be had.
func URL(t testing.TB) string {
	t.Helper()
	urlOnce.Do(func() { urlVal, urlErr = findServer() })
	if urlErr != nil {
		t.Fatalf("testdb: %v", urlErr)
	}
	return urlVal
}

// New returns a pool on a fresh schema, migrated unless WithoutMigrations is given. The schema is
// dropped and the pool closed when the test ends.
func New(t testing.TB, opts ...Option) *DB {
	t.Helper()
	c := config{migrate: true, maxConns: 8}
	for _, o := range opts {
		o(&c)
	}
	url := URL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatalf("testdb: parse %s: %v", EnvURL, err)
	}
	cfg.MaxConns = c.maxConns
	if c.tracer != nil {
		cfg.ConnConfig.Tracer = c.tracer
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("testdb: connect: %v", err)
	}
	schema := "t_" + randomHex(6)
	db := &DB{Pool: pool, Schema: schema, URL: url}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = pool.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`)
		pool.Close()
	})
	if c.migrate {
		if err := migrations.Migrate(ctx, pool, migrations.WithSchema(schema)); err != nil {
			t.Fatalf("testdb: migrate %s: %v", schema, err)
		}
	}
	return db
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func ping(url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.Ping(ctx)
}

func findServer() (string, error) {
	if url := os.Getenv(EnvURL); url != "" {
		if err := ping(url, 10*time.Second); err != nil {
			return "", fmt.Errorf("%s is set but its server does not answer: %w", EnvURL, err)
		}
		return url, nil
	}
	localErr := ping(LocalURL, 3*time.Second)
	if localErr == nil {
		return LocalURL, nil
	}
	url, dockerErr := startContainer()
	if dockerErr == nil {
		return url, nil
	}
	return "", errors.New("no PostgreSQL for the tests.\n" +
		"  - set " + EnvURL + "=postgres://user@host:5432/db, or\n" +
		"  - start the local server: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start\n" +
		"    (trust auth for user postgres on 127.0.0.1:5432), or\n" +
		"  - run a Docker engine so that a postgres:15 container can be started.\n" +
		"  local server: " + localErr.Error() + "\n  docker: " + dockerErr.Error())
}

// startContainer runs postgres:15 with trust auth; the container removes itself after 30 minutes
// even if the test binary is killed.
func startContainer() (string, error) {
	pool, err := dockertest.NewPool("")
	if err != nil {
		return "", err
	}
	if err := pool.Client.Ping(); err != nil {
		return "", err
	}
	res, err := pool.RunWithOptions(&dockertest.RunOptions{
		Repository: "postgres", Tag: "15",
		Env: []string{"POSTGRES_HOST_AUTH_METHOD=trust"},
	}, func(hc *docker.HostConfig) { hc.AutoRemove = true })
	if err != nil {
		return "", err
	}
	_ = res.Expire(1800)
	url := fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", res.GetHostPort("5432/tcp"))
	pool.MaxWait = 60 * time.Second
	if err := pool.Retry(func() error { return ping(url, 2*time.Second) }); err != nil {
		_ = pool.Purge(res)
		return "", err
	}
	return url, nil
}

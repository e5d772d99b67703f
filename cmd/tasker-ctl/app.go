package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/term"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/migrations"
	"github.com/tasker-systems/tasker/store/postgres"
)

// envDatabaseURL names the environment variable that --database-url defaults to.
const envDatabaseURL = "TASKER_DATABASE_URL"

// connectTimeout bounds the first contact with the database.
const connectTimeout = 10 * time.Second

// app is one invocation's state: the global flags, the streams and the connection, opened on
// first use.
type app struct {
	databaseURL string
	schema      string
	output      string
	noColor     bool

	in          io.Reader
	out, errOut io.Writer

	mu   sync.Mutex // guards eng (the MCP server's tools run concurrently)
	pool *pgxpool.Pool
	eng  *tasker.Engine
}

// colour reports whether output is coloured: only on a terminal, and never with NO_COLOR or
// --no-color.
func (a *app) colour() bool {
	if a.noColor || os.Getenv("NO_COLOR") != "" {
		return false
	}
	f, ok := a.out.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// terminal reports whether the output is a terminal (watch redraws its line there).
func (a *app) terminal() bool {
	f, ok := a.out.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// connect opens the pool and checks that the database answers (exit 4 when it does not).
func (a *app) connect(ctx context.Context) (*pgxpool.Pool, error) {
	if a.pool != nil {
		return a.pool, nil
	}
	if a.databaseURL == "" {
		a.databaseURL = os.Getenv(envDatabaseURL)
	}
	if a.databaseURL == "" {
		return nil, usageErr("no database: set --database-url or %s", envDatabaseURL)
	}
	if err := migrations.ValidateSchemaName(a.schema); err != nil {
		return nil, usageErr("--schema %q: %v", a.schema, err)
	}
	cfg, err := pgxpool.ParseConfig(a.databaseURL)
	if err != nil {
		return nil, usageErr("--database-url: %v", err)
	}
	cfg.MaxConns = 4
	cfg.ConnConfig.RuntimeParams["application_name"] = "tasker-ctl"
	pctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(pctx, cfg)
	if err == nil {
		err = pool.Ping(pctx)
		if err != nil {
			pool.Close()
		}
	}
	if err != nil {
		return nil, &exitError{code: exitUnreachable, err: fmt.Errorf("database unreachable: %w", err)}
	}
	a.pool = pool
	return pool, nil
}

// engine returns an engine on the database that runs no workers and takes no part in maintenance:
// it only reads and acts as an operator. The schema must be migrated.
func (a *app) engine(ctx context.Context) (*tasker.Engine, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.eng != nil {
		return a.eng, nil
	}
	pool, err := a.connect(ctx)
	if err != nil {
		return nil, err
	}
	if err := migrations.CheckVersion(ctx, pool, migrations.WithSchema(a.schema)); err != nil {
		if errors.Is(err, migrations.ErrNotMigrated) {
			return nil, failure("%v (run: tasker-ctl migrate up)", err)
		}
		return nil, err
	}
	host, _ := os.Hostname()
	eng, err := tasker.NewEngine(tasker.Config{
		Store:              postgres.New(pool, postgres.WithSchema(a.schema)),
		Logger:             logr.Discard(),
		WorkerID:           fmt.Sprintf("tasker-ctl-%s-%d", host, os.Getpid()),
		DisableMaintenance: true,
	})
	if err != nil {
		return nil, err
	}
	a.eng = eng
	return eng, nil
}

// close releases the connection.
func (a *app) close() {
	if a.pool != nil {
		a.pool.Close()
	}
}

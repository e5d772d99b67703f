// Package exampledb connects the example programs to PostgreSQL, with one clear message when no
// server answers. It is internal: real services build their pool as they like.
package exampledb

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// URLDefault is the server the examples use when no variable names one.
const URLDefault = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// URL returns TASKER_DATABASE_URL, else DATABASE_URL, else URLDefault.
func URL() string {
	for _, k := range []string{"TASKER_DATABASE_URL", "DATABASE_URL"} {
		if v := os.Getenv(k); v != "" {
			return v
		}
	}
	return URLDefault
}

// Connect opens a pool on URL() and checks that the server answers within five seconds.
func Connect(ctx context.Context) (*pgxpool.Pool, error) {
	url := URL()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("bad database URL: %w", err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("no PostgreSQL answers at %s (%v).\n"+
			"Start one (on Debian: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start)\n"+
			"or set TASKER_DATABASE_URL=postgres://user:pass@host:5432/db", url, err)
	}
	return pool, nil
}

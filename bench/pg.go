package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// bench holds what the scenarios share: the options, the environment and the results.
type bench struct {
	o      options
	env    Env
	log    io.Writer
	seq    int
	nonce  int64
	start  time.Time
	dbosDB string
	// db is the database the tasker and River schemas live in ("" for the URL's own).
	db string

	results        []Result
	handoffSamples []series
	busyBefore     float64 // CPU share busy before the current system's run, from settle
	// sqlProf, with -sqlprofile, profiles tasker's statements (all of tasker's rigs together).
	sqlProf      *sqlProfile
	sqlProfUnits int
	sqlProfUnit  string
	// lock holds the advisory lock that keeps two bench runs from sharing the server; dbOID is the
	// bench database's OID, which must not change during the run.
	lock  *pgx.Conn
	dbOID uint32
	// rabbitSkip, once the broker did not answer, is why the RabbitMQ variant is skipped.
	rabbitSkip string
}

// benchLockKey is the advisory lock (in the URL's database) that one bench run holds at a time:
// two runs would drop and re-create each other's databases.
const benchLockKey = 0x7a5c6e72

// series is one system's latency samples, for the plot.
type series struct {
	Label   string
	Samples []time.Duration
}

func newBench(ctx context.Context, o options, log io.Writer) (*bench, error) {
	cfg, err := pgx.ParseConfig(o.url)
	if err != nil {
		return nil, fmt.Errorf("bad database URL: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(pctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("no PostgreSQL answers at %s (%v).\n"+
			"Start one (on Debian: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start)\n"+
			"or set TASKER_DATABASE_URL=postgres://user:pass@host:5432/db", o.url, err)
	}
	b := &bench{o: o, log: log, nonce: time.Now().UnixNano(), start: time.Now(), dbosDB: "tasker_bench_dbos", lock: conn}
	ok := false
	defer func() {
		if !ok {
			conn.Close(context.Background())
		}
	}()
	var locked bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, benchLockKey).Scan(&locked); err != nil {
		return nil, err
	}
	if !locked {
		b.logf("another bench run is using this server; waiting for it to finish")
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, benchLockKey); err != nil {
			return nil, err
		}
	}
	if b.env, err = collectEnv(ctx, conn); err != nil {
		return nil, err
	}
	if o.database != "" {
		// A database of the bench's own, so that pg_stat_database counts only the bench.
		db := pgx.Identifier{o.database}.Sanitize()
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)"); err != nil {
			return nil, fmt.Errorf("drop database %s: %w", o.database, err)
		}
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+db); err != nil {
			return nil, fmt.Errorf("create database %s (or run with -db \"\" to use the URL's database): %w", o.database, err)
		}
		b.db = o.database
		if err := conn.QueryRow(ctx, `SELECT oid FROM pg_database WHERE datname = $1`, o.database).Scan(&b.dbOID); err != nil {
			return nil, err
		}
	}
	ok = true
	return b, nil
}

// checkDB returns an error when the bench's database is no longer the one it created: someone
// dropped it during the run, and the pools may have reconnected to another of the same name.
func (b *bench) checkDB(ctx context.Context) error {
	if b.db == "" {
		return nil
	}
	var oid uint32
	err := b.lock.QueryRow(ctx, `SELECT coalesce((SELECT oid FROM pg_database WHERE datname = $1), 0)`, b.db).Scan(&oid)
	if err != nil {
		return err
	}
	if oid != b.dbOID {
		return fmt.Errorf("database %s was dropped during the run (by another program?): the results are void", b.db)
	}
	return nil
}

// close drops the bench's database and releases the bench lock.
func (b *bench) close() {
	defer b.lock.Close(context.Background())
	if b.db == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db := b.db
	b.db = ""
	if err := b.exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{db}.Sanitize()+" WITH (FORCE)"); err != nil {
		b.logf("drop database %s: %v", db, err)
	}
}

// database returns d, or the bench's database when d is "".
func (b *bench) database(d string) string {
	if d == "" {
		return b.db
	}
	return d
}

// withConn runs fn on a connection of its own (to database, "" for the URL's), closed afterwards.
// Set-up and tear-down use such connections rather than a pool so that their statistics are
// flushed (a backend flushes when it exits) before a measurement starts.
func (b *bench) withConn(ctx context.Context, database string, fn func(*pgx.Conn) error) error {
	cfg, err := pgx.ParseConfig(b.o.url)
	if err != nil {
		return err
	}
	if database = b.database(database); database != "" {
		cfg.Database = database
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return fn(conn)
}

func (b *bench) exec(ctx context.Context, sql string) error {
	return b.withConn(ctx, "", func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, sql)
		return err
	})
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.log, "[%6.1fs] %s\n", time.Since(b.start).Seconds(), fmt.Sprintf(format, args...))
}

func (b *bench) has(system string) bool {
	for _, s := range b.o.systems {
		if s == system {
			return true
		}
	}
	return false
}

func (b *bench) add(r Result) {
	if !r.Published && !r.Unsupported && !r.Skipped {
		r.Load1 = load1()
		if b.o.quiet > 0 {
			r.BusyBefore = b.busyBefore
		}
	}
	b.results = append(b.results, r)
	b.logf("  %-11s %-26s %s", r.Scenario, r.System, r.summary())
}

// freshSchema drops and re-creates a schema named prefix_<n>.
func (b *bench) freshSchema(ctx context.Context, prefix string) (string, error) {
	b.seq++
	name := fmt.Sprintf("%s_%d", prefix, b.seq)
	if err := b.exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{name}.Sanitize()+" CASCADE"); err != nil {
		return "", err
	}
	return name, nil
}

func (b *bench) dropSchema(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := b.exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{name}.Sanitize()+" CASCADE"); err != nil {
		b.logf("drop schema %s: %v", name, err)
	}
}

// pool opens a pool of sz.PoolConns connections, optionally on another database and with
// per-session settings, whose statements count in c (when not nil).
func (b *bench) pool(ctx context.Context, database string, params map[string]string, c *stmtCounter) (*pgxpool.Pool, error) {
	cfg, err := b.poolConfig(database, params, c)
	if err != nil {
		return nil, err
	}
	return pgxpool.NewWithConfig(ctx, cfg)
}

func (b *bench) poolConfig(database string, params map[string]string, c *stmtCounter) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(b.o.url)
	if err != nil {
		return nil, err
	}
	if c != nil {
		cfg.ConnConfig.Tracer = c
		// pgxpool's default: ping a connection idle for a second or more when it is acquired.
		// The ping is a statement (an empty one) and a round trip too.
		cfg.ShouldPing = func(_ context.Context, p pgxpool.ShouldPingParams) bool {
			if p.IdleDuration < time.Second {
				return false
			}
			c.stmts.Add(1)
			c.trips.Add(1)
			return true
		}
	}
	cfg.MaxConns = b.o.sz.PoolConns
	if database = b.database(database); database != "" {
		cfg.ConnConfig.Database = database
	}
	for k, v := range params {
		cfg.ConnConfig.RuntimeParams[k] = v
	}
	return cfg, nil
}

// xacts returns the committed plus rolled-back transactions of a database (the bench's when
// database is ""), from pg_stat_database, over a connection of its own to the URL's database that
// it closes. A backend flushes its pending statistics when it exits, so when the measured database
// is the URL's, this call's own transaction shows in the next call: self is then 1.
func (b *bench) xacts(ctx context.Context, database string) (n int64, self int64, err error) {
	cfg, err := pgx.ParseConfig(b.o.url)
	if err != nil {
		return 0, 0, err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close(context.Background())
	if database = b.database(database); database == "" || database == cfg.Database {
		database, self = cfg.Database, 1
	}
	err = conn.QueryRow(ctx, `SELECT coalesce(sum(xact_commit + xact_rollback), 0)::bigint FROM pg_stat_database WHERE datname = $1`, database).Scan(&n)
	return n, self, err
}

// xactMeter counts a database's transactions between start and stop. stop should follow the
// closing of the measured pool: exiting backends flush their statistics.
type xactMeter struct {
	b        *bench
	database string
	first    int64
	self     int64
	ok       bool
}

func (b *bench) meter(ctx context.Context, database string) *xactMeter {
	m := &xactMeter{b: b, database: database}
	time.Sleep(100 * time.Millisecond) // let the set-up connections exit and flush
	n, self, err := b.xacts(ctx, database)
	if err == nil {
		m.first, m.self, m.ok = n, self, true
	}
	return m
}

// stop returns the transactions counted since start, or -1 when unknown.
func (m *xactMeter) stop(ctx context.Context) int64 {
	if !m.ok {
		return -1
	}
	time.Sleep(300 * time.Millisecond) // let the closed backends exit and flush
	n, _, err := m.b.xacts(ctx, m.database)
	if err != nil {
		return -1
	}
	return n - m.first - m.self
}

package tasker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/migrations"
	"github.com/tasker-systems/tasker/store/postgres"
)

// The tests of this file feed the engine bad input and check that each gets a clear, typed error
// and writes nothing: no partial task, no stray row in any table.

const badInputYAML = `
name: order
namespace_name: bad
version: 1.0.0
input_schema:
  type: object
  required: [amount]
  properties:
    amount: {type: integer, minimum: 1}
steps:
  - {name: a, handler: {callable: work}}
  - {name: b, handler: {callable: work}, dependencies: [a]}
`

// dbSnapshot is the row count of every table in a schema, plus whether the schema exists.
type dbSnapshot map[string]int64

func snapshotDB(t *testing.T, pool *pgxpool.Pool, schema string) dbSnapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	snap := dbSnapshot{}
	var exists bool
	require.NoError(t, pool.QueryRow(ctx,
		`SELECT EXISTS (SELECT 1 FROM information_schema.schemata WHERE schema_name = $1)`, schema).Scan(&exists))
	if exists {
		snap["(schema exists)"] = 1
	}
	rows, err := pool.Query(ctx, `SELECT table_name FROM information_schema.tables
		WHERE table_schema = $1 AND table_type = 'BASE TABLE' ORDER BY table_name`, schema)
	require.NoError(t, err)
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	for _, table := range tables {
		var n int64
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{schema, table}.Sanitize()).Scan(&n))
		snap[table] = n
	}
	return snap
}

// badDB is how a bad-input case's schema is prepared.
type badDB int

const (
	badDBMigrated   badDB = iota // migrated, empty
	badDBUnmigrated              // never migrated: the schema does not exist
	badDBTooNew                  // migrated by a (pretend) newer tasker
)

// badSetup is setup with a choice of schema state; the template is registered, no worker runs.
func badSetup(t *testing.T, kind badDB, cfg func(*tasker.Config)) *bundle {
	t.Helper()
	var db *testdb.DB
	if kind == badDBUnmigrated {
		db = testdb.New(t, testdb.WithoutMigrations())
	} else {
		db = testdb.New(t)
	}
	if kind == badDBTooNew {
		_, err := db.Pool.Exec(context.Background(),
			`INSERT INTO `+pgx.Identifier{db.Schema}.Sanitize()+`.schema_migrations (version, name) VALUES ($1, 'from_the_future')`,
			migrations.Latest()+1)
		require.NoError(t, err)
	}
	st := postgres.New(db.Pool, postgres.WithSchema(db.Schema))
	c := tasker.Config{Store: st, Logger: testLogger(), Lease: 2 * time.Second, ShutdownTimeout: 2 * time.Second}
	if cfg != nil {
		cfg(&c)
	}
	eng, err := tasker.NewEngine(c)
	require.NoError(t, err)
	b := &bundle{db: db, engine: eng, store: st}
	b.register(t, badInputYAML)
	b.engine.HandleFunc("work", addOne)
	return b
}

func badRequest(ctxValue any) tasker.TaskRequest {
	return tasker.TaskRequest{Namespace: "bad", Name: "order", Context: ctxValue}
}

// createBad is a bad-input case that creates the task the request asks for.
func createBad(req tasker.TaskRequest) func(t *testing.T, b *bundle) error {
	return func(t *testing.T, b *bundle) error {
		_, err := b.engine.CreateTask(context.Background(), req)
		return err
	}
}

// withReq returns req changed by f.
func withReq(req tasker.TaskRequest, f func(*tasker.TaskRequest)) tasker.TaskRequest {
	f(&req)
	return req
}

// randomText is n bytes of random letters, which do not compress (an index entry is compressed
// before its size is checked).
func randomText(n int) string {
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = letters[rand.IntN(len(letters))]
	}
	return string(b)
}

// runWorkersBriefly runs the engine's workers; a RunWorkers that cannot start returns at once,
// one that does start is stopped after a few seconds (and the case then fails on its nil error).
func runWorkersBriefly(b *bundle) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return b.engine.RunWorkers(ctx)
}

func requireValidationError(t *testing.T, err error, code string) *tasker.ValidationError {
	t.Helper()
	var ve *tasker.ValidationError
	require.ErrorAs(t, err, &ve)
	require.True(t, ve.Has(code), "problems %v include %s", ve.Problems, code)
	return ve
}

func requireInputError(t *testing.T, err error, want string) {
	t.Helper()
	var ie *tasker.InputError
	require.ErrorAs(t, err, &ie)
	require.Equal(t, "bad/order@1.0.0", ie.Template)
	require.NotEmpty(t, ie.Violations)
	require.Contains(t, strings.Join(ie.Violations, "; "), want)
}

func requireVersionError(t *testing.T, err error, db, lib int, advice string) {
	t.Helper()
	var ve *migrations.VersionError
	require.ErrorAs(t, err, &ve, "a *migrations.VersionError, not %T: %v", err, err)
	require.Equal(t, db, ve.Database)
	require.Equal(t, lib, ve.Library)
	require.Contains(t, err.Error(), advice, "the error says what to do")
}

// TestBadInput walks through every kind of bad input that is refused before anything runs: each
// case asserts the error's type (errors.Is and errors.As) and its message, then checks that every
// table of the schema holds what it held before (or, for an unmigrated database, that nothing was
// created at all).
func TestBadInput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		db    badDB
		cfg   func(*tasker.Config)
		do    func(t *testing.T, b *bundle) error
		is    error
		check func(t *testing.T, err error)
	}{
		{
			name: "malformed YAML",
			do: func(*testing.T, *bundle) error {
				_, err := tasker.ParseTemplate([]byte("name: order\nnamespace_name: bad\nsteps:\n  - {name: a, handler: {callable: work}\n"))
				return err
			},
			is: tasker.ErrInvalidTemplate,
			check: func(t *testing.T, err error) {
				ve := requireValidationError(t, err, tasker.CodeInvalidYAML)
				require.Positive(t, ve.Problems[0].Line, "the problem has a line")
			},
		},
		{
			name: "misspelt key",
			do: func(*testing.T, *bundle) error {
				_, err := tasker.ParseTemplate([]byte("name: order\nnamespace_name: bad\nsteps:\n  - name: a\n    handler: {callable: work}\n    retry: {limit: 3}\n"))
				return err
			},
			is: tasker.ErrInvalidTemplate,
			check: func(t *testing.T, err error) {
				requireValidationError(t, err, tasker.CodeUnknownKey)
				require.Contains(t, err.Error(), "limit")
			},
		},
		{
			name: "cyclic template in YAML",
			do: func(*testing.T, *bundle) error {
				_, err := tasker.ParseTemplate([]byte(`
name: cycle
namespace_name: bad
steps:
  - {name: a, handler: {callable: work}, dependencies: [c]}
  - {name: b, handler: {callable: work}, dependencies: [a]}
  - {name: c, handler: {callable: work}, dependencies: [b]}
  - {name: root, handler: {callable: work}}
`))
				return err
			},
			is: tasker.ErrInvalidTemplate,
			check: func(t *testing.T, err error) {
				ve := requireValidationError(t, err, tasker.CodeCycleDetected)
				require.Positive(t, ve.Problems[0].Line, "the problem has a line")
				require.Contains(t, err.Error(), "a -> c -> b -> a", "the message names the cycle")
			},
		},
		{
			name: "cyclic template built in Go is not registered",
			do: func(t *testing.T, b *bundle) error {
				err := b.engine.Register(&tasker.Template{Namespace: "bad", Name: "cycle", Steps: []tasker.StepTemplate{
					{Name: "a", Handler: tasker.HandlerSpec{Callable: "work"}, Dependencies: []string{"b"}},
					{Name: "b", Handler: tasker.HandlerSpec{Callable: "work"}, Dependencies: []string{"a"}},
				}})
				_, cerr := b.engine.CreateTask(context.Background(), tasker.TaskRequest{Namespace: "bad", Name: "cycle"})
				require.ErrorIs(t, cerr, tasker.ErrTemplateNotFound, "the refused template is not registered")
				return err
			},
			is:    tasker.ErrInvalidTemplate,
			check: func(t *testing.T, err error) { requireValidationError(t, err, tasker.CodeCycleDetected) },
		},
		{
			name: "unknown template",
			do: func(t *testing.T, b *bundle) error {
				_, err := b.engine.CreateTask(context.Background(), tasker.TaskRequest{Namespace: "bad", Name: "nope"})
				return err
			},
			is:    tasker.ErrTemplateNotFound,
			check: func(t *testing.T, err error) { require.Contains(t, err.Error(), "bad/nope") },
		},
		{
			name: "unknown version",
			do: func(t *testing.T, b *bundle) error {
				req := badRequest(map[string]any{"amount": 1})
				req.Version = "9.9.9"
				_, err := b.engine.CreateTask(context.Background(), req)
				return err
			},
			is:    tasker.ErrTemplateNotFound,
			check: func(t *testing.T, err error) { require.Contains(t, err.Error(), "bad/order@9.9.9") },
		},
		{
			name: "context fails input_schema",
			do: func(t *testing.T, b *bundle) error {
				_, err := b.engine.CreateTask(context.Background(), badRequest(map[string]any{"amount": 0}))
				return err
			},
			is:    tasker.ErrInvalidInput,
			check: func(t *testing.T, err error) { requireInputError(t, err, "/amount") },
		},
		{
			name: "context misses a required field",
			do: func(t *testing.T, b *bundle) error {
				_, err := b.engine.CreateTask(context.Background(), badRequest(map[string]any{"other": 1}))
				return err
			},
			is:    tasker.ErrInvalidInput,
			check: func(t *testing.T, err error) { requireInputError(t, err, "amount") },
		},
		{
			name: "context is not a JSON object",
			do: func(t *testing.T, b *bundle) error {
				_, err := b.engine.CreateTask(context.Background(), badRequest([]int{1, 2}))
				return err
			},
			is:    tasker.ErrInvalidInput,
			check: func(t *testing.T, err error) { requireInputError(t, err, "JSON object") },
		},
		{
			name: "context is not JSON-encodable",
			do: func(t *testing.T, b *bundle) error {
				_, err := b.engine.CreateTask(context.Background(), badRequest(map[string]any{"amount": 1, "ch": make(chan int)}))
				return err
			},
			is:    tasker.ErrInvalidInput,
			check: func(t *testing.T, err error) { requireInputError(t, err, "not JSON-encodable") },
		},
		{
			name: "context over the default limit of 1 MiB",
			do: func(t *testing.T, b *bundle) error {
				require.Equal(t, 1<<20, tasker.MaxPayloadBytesDefault)
				_, err := b.engine.CreateTask(context.Background(), badRequest(map[string]any{"amount": 1, "blob": strings.Repeat("x", 1<<20)}))
				return err
			},
			is:    tasker.ErrPayloadTooLarge,
			check: func(t *testing.T, err error) { require.Contains(t, err.Error(), fmt.Sprint(1<<20)) },
		},
		{
			name: "context over a configured limit",
			cfg:  func(c *tasker.Config) { c.MaxPayloadBytes = 64 },
			do: func(t *testing.T, b *bundle) error {
				_, err := b.engine.CreateTask(context.Background(), badRequest(map[string]any{"amount": 1, "blob": strings.Repeat("x", 64)}))
				return err
			},
			is:    tasker.ErrPayloadTooLarge,
			check: func(t *testing.T, err error) { require.Contains(t, err.Error(), "limit 64") },
		},
		{
			name: "bad context inside the caller's transaction, which then commits",
			do: func(t *testing.T, b *bundle) error {
				ctx := context.Background()
				tx, err := b.db.Pool.Begin(ctx)
				require.NoError(t, err)
				defer func() { _ = tx.Rollback(ctx) }()
				_, cerr := b.engine.CreateTaskTx(ctx, tx, badRequest(map[string]any{"amount": "lots"}))
				require.NoError(t, tx.Commit(ctx), "the caller's transaction stays usable")
				return cerr
			},
			is:    tasker.ErrInvalidInput,
			check: func(t *testing.T, err error) { requireInputError(t, err, "/amount") },
		},
		// Values PostgreSQL cannot store: an *InputError naming the field, before anything is written.
		{
			name: "context holds \\u0000 (JSON bytes)",
			do:   createBad(badRequest(json.RawMessage(`{"amount": 1, "note": {"x": "a\u0000"}}`))),
			is:   tasker.ErrInvalidInput,
			check: func(t *testing.T, err error) {
				requireInputError(t, err, "context cannot be stored: at /note/x")
				require.Contains(t, err.Error(), `\u0000`)
			},
		},
		{
			name:  "context holds NUL (a Go string)",
			do:    createBad(badRequest(map[string]any{"amount": 1, "note": "a\x00b"})),
			is:    tasker.ErrInvalidInput,
			check: func(t *testing.T, err error) { requireInputError(t, err, "at /note") },
		},
		{
			name:  "context holds bytes that are not UTF-8",
			do:    createBad(badRequest(json.RawMessage("{\"amount\": 1, \"note\": \"\xff\"}"))),
			is:    tasker.ErrInvalidInput,
			check: func(t *testing.T, err error) { requireInputError(t, err, "not UTF-8") },
		},
		{
			name:  "context holds a lone surrogate",
			do:    createBad(badRequest(json.RawMessage(`{"amount": 1, "note": ["\ud800"]}`))),
			is:    tasker.ErrInvalidInput,
			check: func(t *testing.T, err error) { requireInputError(t, err, "at /note/0") },
		},
		{
			name:  "context holds a number out of numeric's range (JSON bytes)",
			do:    createBad(badRequest(json.RawMessage(`{"amount": 1e1000000}`))),
			is:    tasker.ErrInvalidInput,
			check: func(t *testing.T, err error) { requireInputError(t, err, "numeric") },
		},
		{
			name:  "context holds a number out of numeric's range (json.Number)",
			do:    createBad(badRequest(map[string]any{"amount": 1, "tiny": json.Number("1e-16384")})),
			is:    tasker.ErrInvalidInput,
			check: func(t *testing.T, err error) { requireInputError(t, err, "at /tiny") },
		},
		{
			name: "tag holds NUL",
			do: createBad(withReq(badRequest(map[string]any{"amount": 1}),
				func(r *tasker.TaskRequest) { r.Tags = []string{"ok", "bad\x00"} })),
			is:    tasker.ErrInvalidInput,
			check: func(t *testing.T, err error) { requireInputError(t, err, "tags[1]: at byte 3") },
		},
		{
			name: "tag holds bytes that are not UTF-8",
			do: createBad(withReq(badRequest(map[string]any{"amount": 1}),
				func(r *tasker.TaskRequest) { r.Tags = []string{"\xc3"} })),
			is:    tasker.ErrInvalidInput,
			check: func(t *testing.T, err error) { requireInputError(t, err, "tags[0]") },
		},
		{
			name: "correlation id holds NUL",
			do: createBad(withReq(badRequest(map[string]any{"amount": 1}),
				func(r *tasker.TaskRequest) { r.CorrelationID = "\x00" })),
			is:    tasker.ErrInvalidInput,
			check: func(t *testing.T, err error) { requireInputError(t, err, "correlation_id") },
		},
		{
			name: "correlation id holds bytes that are not UTF-8",
			do: createBad(withReq(badRequest(map[string]any{"amount": 1}),
				func(r *tasker.TaskRequest) { r.CorrelationID = "order-\xfe" })),
			is:    tasker.ErrInvalidInput,
			check: func(t *testing.T, err error) { requireInputError(t, err, "correlation_id") },
		},
		{
			name: "correlation id too long for its index",
			do: createBad(withReq(badRequest(map[string]any{"amount": 1}),
				func(r *tasker.TaskRequest) { r.CorrelationID = randomText(3000) })),
			is: tasker.ErrInvalidInput,
			check: func(t *testing.T, err error) {
				requireInputError(t, err, sprintf("correlation_id: 3000 bytes, over the limit of %d", tasker.MaxCorrelationIDBytes))
			},
		},
		{
			name: "idempotency key holds NUL",
			do: createBad(withReq(badRequest(map[string]any{"amount": 1}),
				func(r *tasker.TaskRequest) { r.IdempotencyKey = "k\x00" })),
			is:    tasker.ErrInvalidInput,
			check: func(t *testing.T, err error) { requireInputError(t, err, "idempotency_key") },
		},
		{
			name: "idempotency key holds bytes that are not UTF-8",
			do: createBad(withReq(badRequest(map[string]any{"amount": 1}),
				func(r *tasker.TaskRequest) { r.IdempotencyKey = "\xff" })),
			is:    tasker.ErrInvalidInput,
			check: func(t *testing.T, err error) { requireInputError(t, err, "idempotency_key") },
		},
		{
			name: "priority out of int4's range",
			do: createBad(withReq(badRequest(map[string]any{"amount": 1}),
				func(r *tasker.TaskRequest) { r.Priority = math.MaxInt32 + 1 })),
			is:    tasker.ErrInvalidInput,
			check: func(t *testing.T, err error) { requireInputError(t, err, "priority") },
		},
		{
			name: "unstorable values inside the caller's transaction, which then commits",
			do: func(t *testing.T, b *bundle) error {
				ctx := context.Background()
				tx, err := b.db.Pool.Begin(ctx)
				require.NoError(t, err)
				defer func() { _ = tx.Rollback(ctx) }()
				_, cerr := b.engine.CreateTaskTx(ctx, tx, badRequest(json.RawMessage(`{"amount": 1, "n": 1e1000000}`)))
				require.ErrorIs(t, cerr, tasker.ErrInvalidInput)
				req := badRequest(map[string]any{"amount": 1})
				req.Tags = []string{"\x00"}
				_, terr := b.engine.CreateTaskTx(ctx, tx, req)
				require.ErrorIs(t, terr, tasker.ErrInvalidInput)
				var one int
				require.NoError(t, tx.QueryRow(ctx, `SELECT 1`).Scan(&one), "the caller's transaction stays usable")
				require.NoError(t, tx.Commit(ctx))
				return errors.Join(cerr, terr)
			},
			is: tasker.ErrInvalidInput,
			check: func(t *testing.T, err error) {
				require.Contains(t, err.Error(), "/n")
				require.Contains(t, err.Error(), "tags[0]")
			},
		},
		{
			name: "unmigrated database: RunWorkers",
			db:   badDBUnmigrated,
			do:   func(t *testing.T, b *bundle) error { return runWorkersBriefly(b) },
			is:   migrations.ErrNotMigrated,
			check: func(t *testing.T, err error) {
				requireVersionError(t, err, 0, migrations.Latest(), "run migrations.Migrate")
			},
		},
		// CreateTask, like RunWorkers, should check the schema's version (once per engine, say)
		// and return the same *migrations.VersionError, rather than a raw "relation does not
		// exist" (unmigrated) or a successful write into a schema it does not know (too new).
		{
			name: "unmigrated database: CreateTask",
			db:   badDBUnmigrated,
			do: func(t *testing.T, b *bundle) error {
				_, err := b.engine.CreateTask(context.Background(), badRequest(map[string]any{"amount": 1}))
				return err
			},
			is: migrations.ErrNotMigrated,
			check: func(t *testing.T, err error) {
				require.Contains(t, err.Error(), "migrations.Migrate", "the error says to run the migrations")
			},
		},
		{
			name: "schema newer than the library: RunWorkers",
			db:   badDBTooNew,
			do:   func(t *testing.T, b *bundle) error { return runWorkersBriefly(b) },
			is:   migrations.ErrSchemaTooNew,
			check: func(t *testing.T, err error) {
				requireVersionError(t, err, migrations.Latest()+1, migrations.Latest(), "upgrade tasker")
			},
		},
		{
			name: "schema newer than the library: CreateTask",
			db:   badDBTooNew,
			do: func(t *testing.T, b *bundle) error {
				_, err := b.engine.CreateTask(context.Background(), badRequest(map[string]any{"amount": 1}))
				return err
			},
			is: migrations.ErrSchemaTooNew,
			check: func(t *testing.T, err error) {
				require.Contains(t, err.Error(), "upgrade tasker", "the error says what to do")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := badSetup(t, tt.db, tt.cfg)
			before := snapshotDB(t, b.db.Pool, b.db.Schema)
			if tt.db == badDBUnmigrated {
				require.Empty(t, before, "an unmigrated database has no schema")
			}
			start := time.Now()
			err := tt.do(t, b)
			took := time.Since(start)
			after := snapshotDB(t, b.db.Pool, b.db.Schema)
			require.Error(t, err, "bad input is refused (rows before: %v, after: %v)", before, after)
			require.Less(t, took, 4*time.Second, "the error comes at once")
			require.ErrorIs(t, err, tt.is, "got %T: %v", err, err)
			tt.check(t, err)
			require.Equal(t, before, after, "nothing was written")
		})
	}
}

// logCapture records an engine's log lines so that a test can check what was reported.
type logCapture struct {
	mu    sync.Mutex
	lines []string
	tee   logr.Logger
}

func newLogCapture() *logCapture { return &logCapture{tee: testLogger()} }

func (c *logCapture) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		c.mu.Lock()
		c.lines = append(c.lines, args)
		c.mu.Unlock()
		c.tee.Info(args)
	}, funcr.Options{Verbosity: 1})
}

func (c *logCapture) contains(s string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

const badStepYAML = `
name: bad_step
namespace_name: steps
version: 1.0.0
steps:
  - name: first
    handler: {callable: %s}
    retry: {retryable: false}
    timeout_seconds: %d
  - {name: after, handler: {callable: ok}, dependencies: [first]}
`

const goodStepYAML = `
name: good
namespace_name: steps
version: 1.0.0
steps:
  - {name: only, handler: {callable: ok}}
`

// blockingHandler ignores its context until released (or a safety bound passes), so that the
// engine has to abandon it; the test releases it, and waits for it, before it ends.
type blockingHandler struct {
	started  chan struct{}
	release  chan struct{}
	returned chan struct{}
	once     sync.Once
}

func newBlockingHandler(t *testing.T) *blockingHandler {
	h := &blockingHandler{started: make(chan struct{}), release: make(chan struct{}), returned: make(chan struct{})}
	t.Cleanup(func() {
		h.unblock()
		select {
		case <-h.returned:
		case <-time.After(30 * time.Second):
			t.Error("the blocking handler did not return")
		}
	})
	return h
}

func (h *blockingHandler) unblock() { h.once.Do(func() { close(h.release) }) }

func (h *blockingHandler) handle(context.Context, *tasker.Step) (any, error) {
	defer close(h.returned)
	close(h.started)
	select {
	case <-h.release:
	case <-time.After(20 * time.Second):
	}
	return "too late", nil
}

func (h *blockingHandler) stillRunning() bool {
	select {
	case <-h.returned:
		return false
	default:
		return true
	}
}

func waitStarted(t *testing.T, h *blockingHandler) {
	t.Helper()
	select {
	case <-h.started:
	case <-time.After(30 * time.Second):
		t.Fatal("the blocking handler did not start")
	}
}

// stepSetup is an engine of one handler slot, so that a handler holding its slot would stop
// everything: "the engine goes on" is then a real check.
func stepSetup(t *testing.T, logs *logCapture, cfg func(*tasker.Config)) *bundle {
	t.Helper()
	b := setup(t, func(c *tasker.Config) {
		c.Concurrency = 1
		c.Lease = 2 * time.Second
		c.ShutdownTimeout = 2 * time.Second
		if logs != nil {
			c.Logger = logs.logger()
		}
		if cfg != nil {
			cfg(c)
		}
	})
	b.register(t, goodStepYAML)
	b.engine.HandleFunc("ok", func(context.Context, *tasker.Step) (any, error) { return "ok", nil })
	return b
}

// requireNoResultStored checks that the failed step's result was not written.
func requireNoResultStored(t *testing.T, b *bundle, taskID uuid.UUID) {
	t.Helper()
	var n int
	require.NoError(t, b.db.Pool.QueryRow(context.Background(),
		`SELECT count(*) FROM `+pgx.Identifier{b.db.Schema}.Sanitize()+`.steps WHERE task_id = $1 AND result IS NOT NULL`,
		taskID).Scan(&n))
	require.Zero(t, n, "no result is stored for the task")
}

// TestBadInputStepFailures covers bad input met while a step runs: a result over the size limit or
// not JSON-encodable, a handler name with no handler, a handler that ignores its context after its
// timeout. Each fails its step for good with a kind and a message that says why, stores no result,
// and the engine — with a single handler slot — goes on to complete another task.
func TestBadInputStepFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		callable string // the first step's handler name
		handler  func(t *testing.T) (tasker.HandlerFunc, *blockingHandler)
		cfg      func(*tasker.Config)
		kind     string
		message  []string
		log      string // a line the engine must log
	}{
		{
			name: "result over the size limit", callable: "big",
			cfg: func(c *tasker.Config) { c.MaxPayloadBytes = 512 },
			handler: func(*testing.T) (tasker.HandlerFunc, *blockingHandler) {
				return func(context.Context, *tasker.Step) (any, error) { return strings.Repeat("x", 600), nil }, nil
			},
			kind: "invalid_result", message: []string{"602 bytes", "over the 512-byte limit"},
		},
		{
			name: "result over the default size limit", callable: "big",
			handler: func(*testing.T) (tasker.HandlerFunc, *blockingHandler) {
				return func(context.Context, *tasker.Step) (any, error) { return strings.Repeat("x", 1<<20), nil }, nil
			},
			kind: "invalid_result", message: []string{"over the 1048576-byte limit"},
		},
		{
			name: "result not JSON-encodable (a channel)", callable: "chan",
			handler: func(*testing.T) (tasker.HandlerFunc, *blockingHandler) {
				return func(context.Context, *tasker.Step) (any, error) { return map[string]any{"ch": make(chan int)}, nil }, nil
			},
			kind: "invalid_result", message: []string{"not JSON-encodable", "chan"},
		},
		{
			name: "result not JSON-encodable (NaN)", callable: "nan",
			handler: func(*testing.T) (tasker.HandlerFunc, *blockingHandler) {
				return func(context.Context, *tasker.Step) (any, error) { return math.NaN(), nil }, nil
			},
			kind: "invalid_result", message: []string{"not JSON-encodable", "NaN"},
		},
		{
			name: "handler ignores its context after its timeout", callable: "deaf",
			handler: func(t *testing.T) (tasker.HandlerFunc, *blockingHandler) {
				h := newBlockingHandler(t)
				return h.handle, h
			},
			kind: "timeout", message: []string{"timed out after 1s", "no retry left"},
			log: "ignores its cancelled context",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			logs := newLogCapture()
			b := stepSetup(t, logs, tt.cfg)
			b.register(t, fmt.Sprintf(badStepYAML, tt.callable, 1))
			h, blocking := tt.handler(t)
			if h != nil {
				b.engine.Handle(tt.callable, h)
			}
			b.start(t)

			bad := b.create(t, "steps", "bad_step", nil)
			if blocking != nil {
				waitStarted(t, blocking)
			}
			good := b.create(t, "steps", "good", nil)
			require.Equal(t, tasker.TaskComplete, b.wait(t, good.ID).State, "the engine goes on")
			if blocking != nil {
				require.True(t, blocking.stillRunning(), "the abandoned handler's slot was reclaimed while it still ran")
			}

			got := b.wait(t, bad.ID)
			require.Equal(t, tasker.TaskBlockedByFailures, got.State)
			first, _ := got.Step("first")
			require.Equal(t, tasker.StepError, first.State)
			require.Equal(t, 1, first.Attempts)
			require.Nil(t, first.Result)
			require.NotNil(t, first.LastError)
			require.Equal(t, tt.kind, first.LastError.Kind, "message: %s", first.LastError.Message)
			require.Equal(t, 1, first.LastError.Attempt)
			for _, m := range tt.message {
				require.Contains(t, first.LastError.Message, m)
			}
			after, _ := got.Step("after")
			require.Equal(t, tasker.StepPending, after.State, "the dependent never ran")
			require.Zero(t, after.Attempts)
			requireNoResultStored(t, b, bad.ID)
			requireLegalTransitions(t, b.engine, bad.ID)
			if tt.log != "" {
				require.True(t, logs.contains(tt.log), "the engine reports %q", tt.log)
			}
			requireQueueDrains(t, b.db.Pool, b.db.Schema)
		})
	}
}

// TestBadInputHandlerIgnoresContext covers a handler that ignores its context after its task is
// cancelled or its engine stops: it is reported, its slot is reclaimed (or RunWorkers returns)
// within a bound, and its step is not lost.
func TestBadInputHandlerIgnoresContext(t *testing.T) {
	t.Parallel()
	t.Run("after cancel", func(t *testing.T) {
		t.Parallel()
		logs := newLogCapture()
		b := stepSetup(t, logs, nil)
		b.register(t, fmt.Sprintf(badStepYAML, "deaf", 30)) // no timeout within the test
		h := newBlockingHandler(t)
		b.engine.HandleFunc("deaf", h.handle)
		b.start(t)

		bad := b.create(t, "steps", "bad_step", nil)
		waitStarted(t, h)
		require.NoError(t, b.engine.CancelTask(context.Background(), bad.ID, "test"))
		good := b.create(t, "steps", "good", nil)
		t0 := time.Now()
		require.Equal(t, tasker.TaskComplete, b.wait(t, good.ID).State, "the engine goes on")
		require.Less(t, time.Since(t0), 10*time.Second)
		require.True(t, h.stillRunning(), "the slot was reclaimed while the handler still ran")
		require.True(t, logs.contains("ignores its cancelled context"), "the abandoned handler is reported")

		got := b.wait(t, bad.ID)
		require.Equal(t, tasker.TaskCancelled, got.State)
		first, _ := got.Step("first")
		require.Equal(t, tasker.StepCancelled, first.State)
		requireNoResultStored(t, b, bad.ID)
		requireLegalTransitions(t, b.engine, bad.ID)
		h.unblock()
		<-h.returned
		requireQueueDrains(t, b.db.Pool, b.db.Schema)
	})

	t.Run("after shutdown", func(t *testing.T) {
		t.Parallel()
		logs := newLogCapture()
		b := stepSetup(t, logs, nil)
		b.register(t, fmt.Sprintf(badStepYAML, "deaf", 30)) // no timeout within the test
		h := newBlockingHandler(t)
		b.engine.HandleFunc("deaf", h.handle)
		b.start(t)

		bad := b.create(t, "steps", "bad_step", nil)
		waitStarted(t, h)
		t0 := time.Now()
		b.stop()
		took := time.Since(t0)
		t.Logf("RunWorkers returned %s after its context ended, its handler still running", took.Round(time.Millisecond))
		// ShutdownTimeout (2s) for the handler to finish, then cancellation and a grace period.
		require.Less(t, took, 10*time.Second, "RunWorkers does not hang on a handler that ignores its context")
		require.True(t, h.stillRunning(), "RunWorkers returned while the handler still ran")
		require.True(t, logs.contains("ignores its cancelled context"), "the abandoned handler is reported")

		got, err := b.engine.GetTask(context.Background(), bad.ID)
		require.NoError(t, err)
		first, _ := got.Step("first")
		require.Equal(t, tasker.StepEnqueued, first.State, "the step went back to the queue")
		h.unblock()
		<-h.returned

		// Nothing is lost: a fresh RunWorkers with a well-behaved handler finishes the task.
		b.engine.HandleFunc("deaf", func(context.Context, *tasker.Step) (any, error) { return "ok", nil })
		b.start(t)
		got = b.wait(t, bad.ID)
		require.Equal(t, tasker.TaskComplete, got.State)
		requireLegalTransitions(t, b.engine, bad.ID)
	})
}

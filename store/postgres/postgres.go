// Package postgres is tasker's PostgreSQL store: the source of truth for templates, tasks, steps,
// edges and their audit trail. All of tasker's runtime SQL lives here, the queue's included
// (Queue, which queue/pgqueue constructs for users who run it on its own).
//
// Create one with New and hand it to tasker.NewEngine; the schema must have been migrated with
// migrations.Migrate (the engine checks at start-up and says so when it has not).
package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/go-logr/logr"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/tasker/internal/pgname"
	"github.com/tasker-systems/tasker/migrations"
	"github.com/tasker-systems/tasker/store"
)

// Store implements store.Store on a pgx pool.
type Store struct {
	pool   *pgxpool.Pool
	schema string
	ident  string // the quoted schema identifier
	cache  sync.Map

	eventsChannel string // the NOTIFY channel of ListenEvents
	log           logr.Logger
	queue         *Queue // the store's own queue, on its pool and schema

	// releaseSQL is releaseChildrenSQL (the single-step path's) and releaseCTE the set-based
	// RecordOutcomes'; a test swaps in broken releases to show that store/storetest catches them.
	releaseSQL, releaseCTE string
	// shapes are the tasks whose outcomes this store can record in one round trip (speculate.go).
	shapes *shapes
}

var (
	_ store.Store      = (*Store)(nil)
	_ store.BatchStore = (*Store)(nil)
)

// Option configures New.
type Option func(*Store)

// WithSchema selects the schema tasker's tables live in (default migrations.SchemaDefault). It
// must be a plain lower-case identifier; New panics otherwise, as for a malformed constant.
func WithSchema(name string) Option { return func(s *Store) { s.schema = name } }

// WithLogger sets the logger of the store's own background work (ListenEvents' and its queue's
// Listen's connection trouble); the default discards.
func WithLogger(l logr.Logger) Option { return func(s *Store) { s.log = l } }

// New returns a store on pool.
func New(pool *pgxpool.Pool, opts ...Option) *Store {
	s := &Store{pool: pool, schema: migrations.SchemaDefault, log: logr.Discard(), releaseSQL: releaseChildrenSQL, releaseCTE: releaseCTE, shapes: &shapes{}}
	for _, o := range opts {
		o(s)
	}
	if err := migrations.ValidateSchemaName(s.schema); err != nil {
		panic(err)
	}
	s.ident = pgx.Identifier{s.schema}.Sanitize()
	s.eventsChannel = pgname.Channel(eventsChannelPrefix, s.schema)
	s.queue = NewQueue(pool, WithQueueSchema(s.schema), WithQueueLogger(s.log))
	return s
}

// Pool returns the pool the store uses.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Schema returns the schema the store uses.
func (s *Store) Schema() string { return s.schema }

// CheckSchema returns nil when the schema is migrated to this library's version, and a typed error
// (migrations.ErrNotMigrated, migrations.ErrSchemaTooNew) otherwise.
func (s *Store) CheckSchema(ctx context.Context) error {
	return migrations.CheckVersion(ctx, s.pool, migrations.WithSchema(s.schema))
}

// q renders a query written with {s} for the schema, once.
func (s *Store) q(query string) string {
	if v, ok := s.cache.Load(query); ok {
		return v.(string)
	}
	r := strings.ReplaceAll(query, "{s}", s.ident)
	s.cache.Store(query, r)
	return r
}

// inTx runs fn in tx when it is not nil, else in a transaction of its own.
func (s *Store) inTx(ctx context.Context, tx pgx.Tx, fn func(tx pgx.Tx) error) error {
	if tx != nil {
		// A savepoint keeps a failed creation from poisoning the caller's transaction.
		return pgx.BeginFunc(ctx, tx, fn)
	}
	return pgx.BeginFunc(ctx, s.pool, fn)
}

// retryable reports errors after which the whole transaction may simply be run again.
func retryable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "40001", "40P01": // serialization failure, deadlock detected
			return true
		}
	}
	return false
}

// withRetry runs a transactional operation, running it again on deadlocks and serialization
// failures (a few times), which concurrent engines can provoke.
func (s *Store) withRetry(ctx context.Context, fn func(tx pgx.Tx) error) error {
	var err error
	for i := 0; i < 5; i++ {
		err = pgx.BeginFunc(ctx, s.pool, fn)
		if err == nil || !retryable(err) {
			return err
		}
	}
	return fmt.Errorf("after 5 tries: %w", err)
}

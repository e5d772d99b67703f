package postgres_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/store/postgres"
	"github.com/tasker-systems/tasker/store/storetest"
)

// TestConformance runs the store conformance suite on PostgreSQL, each subtest in a schema of its
// own, with the store's own queue (queue/pgqueue's) receiving the enqueues.
func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) storetest.Backend {
			db := testdb.New(t)
			t.Cleanup(func() { requireTransitionSeqs(t, db) }) // before testdb's own cleanup drops the schema
			s := postgres.New(db.Pool, postgres.WithSchema(db.Schema))
			return storetest.Backend{
				Store: s,
				Queue: s.Queue(),
				Begin: func(ctx context.Context) (pgx.Tx, error) { return db.Pool.Begin(ctx) },
			}
		},
		Capabilities: storetest.Capabilities{Transactions: true, OwnsQueue: true},
	})
}

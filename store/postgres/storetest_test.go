package postgres_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/queue/pgqueue"
	"github.com/tasker-systems/tasker/store/postgres"
	"github.com/tasker-systems/tasker/store/storetest"
)

// TestConformance runs the store conformance suite on PostgreSQL, each subtest in a schema of its
// own, with queue/pgqueue on the same schema receiving the enqueues.
func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) storetest.Backend {
			db := testdb.New(t)
			return storetest.Backend{
				Store: postgres.New(db.Pool, postgres.WithSchema(db.Schema)),
				Queue: pgqueue.New(db.Pool, pgqueue.WithSchema(db.Schema)),
				Begin: func(ctx context.Context) (pgx.Tx, error) { return db.Pool.Begin(ctx) },
			}
		},
		Capabilities: storetest.Capabilities{Transactions: true, OwnsQueue: true},
	})
}

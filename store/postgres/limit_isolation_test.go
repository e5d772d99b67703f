package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/store"
)

// TestLimitCountSeesClaimAfterWait: a LockLimit that waits for the lock must count the
// claim its predecessor committed while it waited, whatever the server's default isolation.
func TestLimitCountSeesClaimAfterWait(t *testing.T) {
	for _, iso := range []string{"read committed", "repeatable read"} {
		t.Run(iso, func(t *testing.T) {
			db := testdb.New(t)
			cfg, err := pgxpool.ParseConfig(db.URL)
			require.NoError(t, err)
			cfg.ConnConfig.RuntimeParams["default_transaction_isolation"] = iso
			cfg.MaxConns = 4
			pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
			require.NoError(t, err)
			t.Cleanup(pool.Close)
			r := &rig{s: New(pool, WithSchema(db.Schema)), trips: &tripCounter{}}
			r.createTasks(t, 1, nil)
			ctx := context.Background()
			p := store.LockLimitParams{Key: "namespace:" + rigNS, Namespace: rigNS, Scopes: []store.LimitScope{{}}}
			a, err := r.s.LockLimit(ctx, p)
			require.NoError(t, err)
			require.Equal(t, 0, a.Counts[0].InProgress)
			got := make(chan *store.LimitHold, 1)
			go func() {
				b, err := r.s.LockLimit(ctx, p)
				if err != nil {
					t.Error(err)
				}
				got <- b
			}()
			time.Sleep(300 * time.Millisecond) // b waits on the advisory lock
			res, err := r.s.ClaimFromQueue(a.Within(ctx), store.ClaimFromQueueParams{Namespace: rigNS, WorkerID: "w", Limit: 1,
				Lease: time.Minute, Callables: []string{"h_s0"}})
			require.NoError(t, err)
			require.Len(t, res.Claimed, 1)
			a.Unlock()
			b := <-got
			defer b.Unlock()
			require.Equal(t, 1, b.Counts[0].InProgress, "the second holder's count misses the step claimed under the first lock")
		})
	}
}

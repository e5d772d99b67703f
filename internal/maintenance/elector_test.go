package maintenance_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tasker-systems/tasker/internal/maintenance"
	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/store"
	"github.com/tasker-systems/tasker/store/postgres"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// candidate runs one elector and records when it leads.
type candidate struct {
	id      string
	leading atomic.Bool
	terms   atomic.Int32
	cancel  context.CancelFunc
	done    chan struct{}
}

func run(t *testing.T, st maintenance.LeaderStore, id string, ttl time.Duration, overlap *atomic.Int32, now *atomic.Int32) *candidate {
	c := &candidate{id: id, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	el := maintenance.Elector{Store: st, Name: "maintenance", ID: id, TTL: ttl, Log: logr.Discard()}
	go func() {
		defer close(c.done)
		el.Run(ctx, func(lctx context.Context) {
			if now.Add(1) > 1 {
				overlap.Add(1)
			}
			c.leading.Store(true)
			c.terms.Add(1)
			<-lctx.Done()
			c.leading.Store(false)
			now.Add(-1)
		})
	}()
	t.Cleanup(func() { cancel(); <-c.done })
	return c
}

func leader(cs []*candidate) *candidate {
	for _, c := range cs {
		if c.leading.Load() {
			return c
		}
	}
	return nil
}

func TestOneLeaderAtATimeAndQuickReElection(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	st := postgres.New(db.Pool, postgres.WithSchema(db.Schema))
	const ttl = 900 * time.Millisecond
	var overlap, now atomic.Int32
	var cs []*candidate
	for _, id := range []string{"e1", "e2", "e3"} {
		cs = append(cs, run(t, st, id, ttl, &overlap, &now))
	}
	require.Eventually(t, func() bool { return leader(cs) != nil }, 5*time.Second, 10*time.Millisecond)

	// The leader stops (resigning): another takes over at once.
	first := leader(cs)
	first.cancel()
	<-first.done
	start := time.Now()
	require.Eventually(t, func() bool { l := leader(cs); return l != nil && l != first }, 5*time.Second, 10*time.Millisecond)
	require.Less(t, time.Since(start), 2*ttl)

	// The next leader vanishes without resigning (its lease just expires): re-elected within the TTL
	// plus one campaign interval.
	second := leader(cs)
	// The ghost holds a lease as long as a real leader's: the one it displaced has stopped by the
	// time it expires, however late its own renewal comes back.
	_, err := db.Pool.Exec(context.Background(), `UPDATE `+db.Schema+`.leaders SET leader_id = 'ghost', expires_at = now() + $1 * interval '1 millisecond'`, ttl.Milliseconds())
	require.NoError(t, err)
	start = time.Now()
	require.Eventually(t, func() bool { return !second.leading.Load() }, 5*time.Second, 10*time.Millisecond, "a leader that cannot renew stops leading")
	require.Eventually(t, func() bool { return leader(cs) != nil }, 5*time.Second, 10*time.Millisecond)
	require.Less(t, time.Since(start), 2*ttl+time.Second)
	require.Zero(t, overlap.Load(), "two leaders at once")
}

func TestEveryStopsWithItsContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	var n atomic.Int32
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		maintenance.Every(ctx, 10*time.Millisecond, func(context.Context) {
			if n.Add(1) == 3 {
				cancel()
			}
		})
	}()
	wg.Wait()
	require.GreaterOrEqual(t, n.Load(), int32(3))
}

// stallingStore is a LeaderStore whose calls can be made to hang, as against a database that stops
// answering without closing the connection.
type stallingStore struct {
	maintenance.LeaderStore
	stalled atomic.Bool
	release chan struct{}
}

func (s *stallingStore) TryLead(ctx context.Context, p store.LeadParams) (bool, error) {
	if s.stalled.Load() {
		select {
		case <-s.release:
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	return s.LeaderStore.TryLead(ctx, p)
}

// TestStalledRenewalEndsTheTerm: a leader whose renewal hangs past its lease stops leading on its
// own, before the store lets another candidate take over, instead of leading on until the hung
// call returns.
func TestStalledRenewalEndsTheTerm(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	st := postgres.New(db.Pool, postgres.WithSchema(db.Schema))
	const ttl = 600 * time.Millisecond
	var overlap, now atomic.Int32
	stalling := &stallingStore{LeaderStore: st, release: make(chan struct{})}
	first := run(t, stalling, "stalls", ttl, &overlap, &now)
	require.Eventually(t, first.leading.Load, 5*time.Second, 10*time.Millisecond)
	second := run(t, st, "healthy", ttl, &overlap, &now)

	stalling.stalled.Store(true)
	stalledAt := time.Now()
	require.Eventually(t, second.leading.Load, 10*time.Second, 5*time.Millisecond, "the healthy candidate takes over")
	require.False(t, first.leading.Load(), "the stalled leader has stopped")
	require.Greater(t, time.Since(stalledAt), ttl/2, "the store's lease was still honoured")
	close(stalling.release) // the hung call answers now: too late to lead again
	time.Sleep(ttl)
	require.True(t, second.leading.Load())
	require.False(t, first.leading.Load())
	require.Zero(t, overlap.Load(), "two leaders at once")
}

// TestLeaderResignsWhenStopped: a leader whose Run ends with its context gives the leadership up
// at once (the store's row is gone when Run returns), so that another engine takes over without
// waiting for the lease to expire.
func TestLeaderResignsWhenStopped(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	st := postgres.New(db.Pool, postgres.WithSchema(db.Schema))
	var overlap, now atomic.Int32
	c := run(t, st, "stops", 5*time.Second, &overlap, &now)
	require.Eventually(t, c.leading.Load, 5*time.Second, 10*time.Millisecond)
	c.cancel()
	<-c.done
	var rows int
	require.NoError(t, db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM `+db.Schema+`.leaders`).Scan(&rows))
	require.Zero(t, rows, "the stopped leader resigned")
}

package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

// tripCounter counts the round trips of a pool's connections: a statement sent on its own, or a
// pipelined batch.
type tripCounter struct{ trips atomic.Int64 }

func (c *tripCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.trips.Add(1)
	return ctx
}
func (c *tripCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (c *tripCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	c.trips.Add(1)
	return ctx
}
func (c *tripCounter) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (c *tripCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

// rig is a store on a fresh schema whose pool counts its round trips.
type rig struct {
	s     *Store
	trips *tripCounter
}

func newRig(tb testing.TB) *rig {
	tb.Helper()
	db := testdb.New(tb)
	cfg, err := pgxpool.ParseConfig(db.URL)
	require.NoError(tb, err)
	c := &tripCounter{}
	cfg.ConnConfig.Tracer = c
	cfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(tb, err)
	tb.Cleanup(pool.Close)
	return &rig{s: New(pool, WithSchema(db.Schema)), trips: c}
}

// count returns how many round trips fn took.
func (r *rig) count(fn func()) int {
	before := r.trips.trips.Load()
	fn()
	return int(r.trips.trips.Load() - before)
}

// ownEnqueuer sends step messages on the store's own queue in the store's transaction.
type ownEnqueuer struct{ q *Queue }

func (e ownEnqueuer) EnqueueTx(ctx context.Context, tx pgx.Tx, ns string, refs []store.StepRef, delay time.Duration) error {
	docs := make([][]byte, len(refs))
	for i, ref := range refs {
		doc, err := json.Marshal(ref.Message())
		if err != nil {
			return err
		}
		docs[i] = doc
	}
	return e.q.SendTx(ctx, tx, ns, docs, delay)
}

const rigNS = "rig"

// createTasks creates n tasks of the given shape (steps by name with their parents' indices),
// their roots' messages on the store's queue.
func (r *rig) createTasks(tb testing.TB, n int, shape ...[]int) []uuid.UUID {
	tb.Helper()
	ctx := context.Background()
	ids := make([]uuid.UUID, n)
	for i := range ids {
		p := store.CreateTaskParams{TaskID: uuid.Must(uuid.NewV7()), Namespace: rigNS, Name: "t", Version: "1",
			Context: json.RawMessage(`{}`), IdentityHash: uuid.NewString(), Enqueuer: ownEnqueuer{r.s.Queue()},
			Template: &store.RegisterTemplateParams{Namespace: rigNS, Name: "t", Version: "1", Definition: json.RawMessage(`{}`), Checksum: "c"}}
		for k, parents := range shape {
			name := fmt.Sprintf("s%d", k)
			p.Steps = append(p.Steps, store.NewStep{StepID: uuid.Must(uuid.NewV7()), Name: name, TemplateStep: name, Handler: "h_" + name,
				Type: "standard", MaxAttempts: 3, Retryable: true, Backoff: "none", Timeout: time.Second, Parents: parents})
		}
		res, err := r.s.CreateTask(ctx, nil, p)
		require.NoError(tb, err)
		ids[i] = res.Task.ID
	}
	return ids
}

// claimAll reads and claims up to n messages of the namespace for worker w.
func (r *rig) claimAll(tb testing.TB, n int, callables ...string) []store.ClaimedMessage {
	tb.Helper()
	res, err := r.s.ClaimFromQueue(context.Background(), store.ClaimFromQueueParams{Namespace: rigNS, WorkerID: "w", Limit: n,
		Lease: time.Minute, Callables: callables})
	require.NoError(tb, err)
	return res.Claimed
}

// outcome is a claimed attempt's outcome of the given kind, planned as the engine plans it.
func outcome(tb testing.TB, c store.ClaimedMessage, o statemachine.Outcome) store.Outcome {
	tb.Helper()
	a := statemachine.Attempt{Outcome: o, WorkerID: c.Step.LeaseOwner, Attempt: c.Step.Attempts, RetryDelay: time.Hour}
	if o != statemachine.OutcomeSuccess {
		a.Error = json.RawMessage(`{"message": "boom"}`)
	}
	plan, err := statemachine.PlanOutcome(a)
	require.NoError(tb, err)
	out := store.Outcome{TaskID: c.Task.ID, StepID: c.Step.ID, WorkerID: a.WorkerID, Attempt: a.Attempt, Plan: plan, Error: a.Error,
		RetryDelay: a.RetryDelay, Namespace: rigNS, MessageID: c.MessageID}
	if o == statemachine.OutcomeSuccess {
		out.Result = json.RawMessage(`{"ok": true}`)
	}
	return out
}

// TestRoundTrips pins the round trips of the set-based calls: RecordOutcomes takes two for any
// batch of outcomes that spawn nothing and free no batch slot, hand-overs and owned sends
// included; ClaimFromQueue and ClaimMany take one.
func TestRoundTrips(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newRig(t)
	callables := []string{"h_s0", "h_s1", "h_s2", "h_s3"}
	for _, n := range []int{1, 20} {
		r.createTasks(t, n, nil, []int{0}, []int{0}, []int{1, 2}) // diamonds
		var claimed []store.ClaimedMessage
		require.Equal(t, 1, r.count(func() { claimed = r.claimAll(t, n, callables...) }), "ClaimFromQueue, N=%d", n)
		require.Len(t, claimed, n)
		outs := make([]store.Outcome, n)
		successes := 0
		for i, c := range claimed {
			kind := statemachine.OutcomeSuccess
			switch i % 5 {
			case 3:
				kind = statemachine.OutcomeRetry
			case 4:
				kind = statemachine.OutcomePermanent
			default:
				successes++
			}
			outs[i] = outcome(t, c, kind)
			outs[i].Handoff = true
		}
		var res *store.RecordOutcomesResult
		trips := r.count(func() {
			var err error
			res, err = r.s.RecordOutcomes(ctx, store.RecordOutcomesParams{Outcomes: outs, Lease: time.Minute, Callables: callables, OwnedQueue: true})
			require.NoError(t, err)
		})
		require.Equal(t, 2, trips, "RecordOutcomes, N=%d", n)
		handed := 0
		for i, rec := range res.Records {
			require.Equal(t, store.Recorded, rec.Status, "outcome %d", i)
			if rec.Next != nil {
				handed++
			}
		}
		require.Equal(t, successes, handed, "every success hands a middle step over")
		require.Empty(t, res.Publish)

		// The middle steps' other halves, claimed by ID.
		var refs []store.ClaimRef
		for _, c := range r.claimAll(t, 2*n, callables...) {
			refs = append(refs, store.ClaimRef{StepID: c.Step.ID})
			_, err := r.s.ReleaseSteps(ctx, store.ReleaseStepsParams{WorkerID: "w", Steps: []store.ReleaseRef{{StepID: c.Step.ID, Attempt: 1}}})
			require.NoError(t, err)
		}
		require.Equal(t, 1, r.count(func() {
			res, err := r.s.ClaimMany(ctx, store.ClaimManyParams{WorkerID: "w", Lease: time.Minute, Steps: refs})
			require.NoError(t, err)
			require.Len(t, res.Claimed, len(refs))
		}), "ClaimMany, N=%d", len(refs))
	}
}

// BenchmarkRecordOutcomes records the successes of N one-step tasks in one call, with the store's
// own queue (acks in the commit). It reports µs per step and round trips per call; the tasks'
// creation and claims are outside the timer.
//
//	GOWORK=off go test ./store/postgres -run '^$' -bench RecordOutcomes -benchtime 50x
func BenchmarkRecordOutcomes(b *testing.B) {
	for _, n := range []int{1, 10, 50} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			r := newRig(b)
			ctx := context.Background()
			var trips int
			for b.Loop() {
				b.StopTimer()
				r.createTasks(b, n, nil)
				claimed := r.claimAll(b, n, "h_s0")
				require.Len(b, claimed, n)
				outs := make([]store.Outcome, n)
				for i, c := range claimed {
					outs[i] = outcome(b, c, statemachine.OutcomeSuccess)
				}
				b.StartTimer()
				trips += r.count(func() {
					res, err := r.s.RecordOutcomes(ctx, store.RecordOutcomesParams{Outcomes: outs, OwnedQueue: true})
					if err != nil || res.Records[n-1].Status != store.Recorded {
						b.Fatalf("record: %v", err)
					}
				})
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/step")
			b.ReportMetric(float64(trips)/float64(b.N), "trips/call")
		})
	}
}

// BenchmarkClaimFromQueue reads and claims N steps (roots of one-step tasks) in one call. It
// reports µs per step and round trips per call; the tasks' creation is outside the timer.
//
//	GOWORK=off go test ./store/postgres -run '^$' -bench ClaimFromQueue -benchtime 50x
func BenchmarkClaimFromQueue(b *testing.B) {
	for _, n := range []int{1, 10, 50} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			r := newRig(b)
			var trips int
			for b.Loop() {
				b.StopTimer()
				r.createTasks(b, n, nil)
				b.StartTimer()
				trips += r.count(func() {
					if got := len(r.claimAll(b, n, "h_s0")); got != n {
						b.Fatalf("claimed %d of %d", got, n)
					}
				})
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/step")
			b.ReportMetric(float64(trips)/float64(b.N), "trips/call")
		})
	}
}

package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

// A store that owns its queue reads messages and claims their steps in one call
// (store.QueueClaimer).

func testClaimFromQueue(t *testing.T, h Harness) {
	parallelTest(t, h, "ClaimsTheVisibleAndReportsTheStale", testClaimFromQueueStale)
	parallelTest(t, h, "ReadsOnlyCallableOrUnnamedMessages", testClaimFromQueueCallables)
	parallelTest(t, h, "LoadsTheAncestorsResults", testClaimFromQueueResults)
	parallelTest(t, h, "LoadsTheResultsOfSpawnedAncestors", testClaimFromQueueSpawned)
	parallelTest(t, h, "ConcurrentClaimersClaimEachStepOnce", testClaimFromQueueConcurrent)
	parallelTest(t, h, "RetryTimersWaitForTheirPromotion", testClaimFromQueueRetries)
}

// claimer returns the store's QueueClaimer, or skips the test for a store that owns no queue.
func (b *bundle) claimer(t *testing.T) store.QueueClaimer {
	t.Helper()
	if !b.caps.OwnsQueue {
		t.Skip("the store does not own its queue: it reads no messages")
	}
	qc, ok := b.Store.(store.QueueClaimer)
	require.True(t, ok, "%T is no store.QueueClaimer", b.Store)
	return qc
}

// claimFromQueue reads and claims up to limit steps of the suite's namespace for workerID, with a
// one-minute lease.
func (b *bundle) claimFromQueue(t *testing.T, workerID string, limit int, callables ...string) *store.ClaimManyResult {
	t.Helper()
	res, err := b.claimer(t).ClaimFromQueue(context.Background(), store.ClaimFromQueueParams{Namespace: Namespace, WorkerID: workerID,
		Limit: limit, Lease: time.Minute, Callables: callables})
	require.NoError(t, err)
	return res
}

// sendRaw commits raw payloads on the suite's queue.
func (b *bundle) sendRaw(t *testing.T, payloads ...string) {
	t.Helper()
	ctx := context.Background()
	raw := make([][]byte, len(payloads))
	for i, p := range payloads {
		raw[i] = []byte(p)
	}
	tx, err := b.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	require.NoError(t, b.Queue.SendTx(ctx, tx, Namespace, raw, 0))
	require.NoError(t, tx.Commit(ctx))
}

func names(claimed []store.ClaimedMessage) []string {
	out := []string{}
	for _, c := range claimed {
		out = append(out, c.Step.Name)
	}
	return out
}

func testClaimFromQueueStale(t *testing.T, b *bundle) {
	b.claimer(t)
	g := b.createGraph(t, b.newStep("a"), b.newStep("b"), b.newStep("c", 0))
	b.claim(t, g.id["b"]) // claimed by its ID already: its message is a duplicate now
	unknown := uuid.New()
	doc, err := json.Marshal(message{TaskID: g.task, StepID: unknown, Handler: "h_a"})
	require.NoError(t, err)
	b.sendRaw(t, `{"hello": 1}`, `{"step_id": "not a uuid"}`, string(doc))
	before := time.Now()

	res := b.claimFromQueue(t, worker, 10, "h_a", "h_b")
	require.Equal(t, []string{"a"}, names(res.Claimed))
	c := res.Claimed[0]
	require.NotZero(t, c.MessageID)
	require.Equal(t, 1, c.ReadCount)
	require.WithinDuration(t, before, c.EnqueuedAt, time.Minute)
	require.Equal(t, statemachine.StepInProgress, c.Step.State)
	require.Equal(t, [2]any{worker, 1}, [2]any{c.Step.LeaseOwner, c.Step.Attempts})
	require.NotNil(t, c.Step.LeaseExpiresAt)
	require.Equal(t, g.task, c.Task.ID)
	require.JSONEq(t, `{"order": 7}`, string(c.Task.Context))
	require.Empty(t, c.Results)
	last := lastTransition(t, b, g.task, g.id["a"])
	require.Equal(t, []string{"enqueued", "in_progress", "start"}, []string{last.From, last.To, last.Event})
	require.JSONEq(t, `{"worker_id": "w1", "attempt": 1}`, string(last.Metadata))

	stale := make([]uuid.UUID, len(res.Stale))
	for i, r := range res.Stale {
		stale[i] = r.StepID
		require.NotZero(t, r.MessageID)
		if i > 0 {
			require.Greater(t, r.MessageID, res.Stale[i-1].MessageID, "in the messages' order")
		}
	}
	require.Equal(t, []uuid.UUID{g.id["b"], uuid.Nil, uuid.Nil, unknown}, stale,
		"the duplicate, the messages naming no step, the unknown step")
	require.Empty(t, res.Retries)
	require.Equal(t, 2, b.task(t, g.task).StepsActive)
	requireGapFree(t, b, g.task)

	again := b.claimFromQueue(t, worker, 10, "h_a", "h_b")
	require.Empty(t, again.Claimed, "every message read is hidden for the lease")
	require.Empty(t, again.Stale)
	rec := b.recordOwned(t, b.outcome(t, &c.ClaimedStep, store.OutcomeSuccess))
	require.Equal(t, []store.OutcomeStatus{store.Recorded}, statuses(rec))
	require.Equal(t, []string{"c"}, names(b.claimFromQueue(t, worker, 10, "h_c").Claimed), "c's message was sent in a's commit")

	_, err = b.claimer(t).ClaimFromQueue(context.Background(), store.ClaimFromQueueParams{Namespace: Namespace, WorkerID: worker, Lease: time.Minute})
	require.Error(t, err, "a limit must be positive")
	_, err = b.claimer(t).ClaimFromQueue(context.Background(), store.ClaimFromQueueParams{Namespace: Namespace, WorkerID: worker, Limit: 1})
	require.Error(t, err, "a lease must be positive")
}

func testClaimFromQueueCallables(t *testing.T, b *bundle) {
	b.claimer(t)
	u := b.newStep("u")
	u.Handler = "" // its message names no handler, as a message of an earlier version would
	g := b.createGraph(t, b.newStep("a"), b.newStep("b"), u)
	res := b.claimFromQueue(t, worker, 10, "h_a")
	require.ElementsMatch(t, []string{"a", "u"}, names(res.Claimed), "a's handler, and a message naming none")
	require.Empty(t, res.Stale)
	require.Empty(t, b.claimFromQueue(t, worker, 10).Claimed, "no callables: only unnamed messages, and none is left")
	require.Empty(t, b.claimFromQueue(t, worker, 10, "h_x").Claimed)
	require.Equal(t, []string{"b"}, names(b.claimFromQueue(t, "w2", 10, "h_b").Claimed), "b's message waited for a worker with its handler")
	require.Equal(t, statemachine.StepInProgress, b.step(t, g.task, g.id["b"]).State)

	g2 := b.createGraph(t, b.newStep("p"), b.newStep("q"), b.newStep("r"))
	res = b.claimFromQueue(t, worker, 2, "h_p", "h_q", "h_r")
	require.Equal(t, []string{"p", "q"}, names(res.Claimed), "at most the limit, oldest first")
	require.Equal(t, []string{"r"}, names(b.claimFromQueue(t, worker, 2, "h_p", "h_q", "h_r").Claimed))
	requireGapFree(t, b, g2.task)
}

func testClaimFromQueueResults(t *testing.T, b *bundle) {
	b.claimer(t)
	g := b.diamond(t)
	start := b.claimFromQueue(t, worker, 10, "h_start")
	require.Len(t, start.Claimed, 1)
	b.recordOwned(t, b.outcome(t, &start.Claimed[0].ClaimedStep, store.OutcomeSuccess))
	mid := b.claimFromQueue(t, worker, 10, "h_left", "h_right")
	require.ElementsMatch(t, []string{"left", "right"}, names(mid.Claimed))
	for _, c := range mid.Claimed {
		require.Equal(t, map[string]json.RawMessage{"start": json.RawMessage(`{"by": "start"}`)}, c.Results)
	}
	b.recordOwned(t, b.outcome(t, &mid.Claimed[0].ClaimedStep, store.OutcomeSuccess), b.outcome(t, &mid.Claimed[1].ClaimedStep, store.OutcomeSuccess))
	join := b.claimFromQueue(t, worker, 10, "h_join")
	require.Equal(t, []string{"join"}, names(join.Claimed))
	require.Equal(t, map[string]json.RawMessage{"start": json.RawMessage(`{"by": "start"}`), "left": json.RawMessage(`{"by": "left"}`),
		"right": json.RawMessage(`{"by": "right"}`)}, join.Claimed[0].Results, "every ancestor along the edges")
	requireGapFree(t, b, g.task)
}

// testClaimFromQueueSpawned: the claim of a step spawned at run time sees its ancestors along
// the edges made with it.
func testClaimFromQueueSpawned(t *testing.T, b *bundle) {
	b.claimer(t)
	route := b.newStep("route", 0)
	route.Type = "decision"
	g := b.createGraph(t, b.newStep("validate"), route)
	v := b.claimFromQueue(t, worker, 10, "h_validate")
	b.recordOwned(t, b.outcome(t, &v.Claimed[0].ClaimedStep, store.OutcomeSuccess))
	r := b.claimFromQueue(t, worker, 10, "h_route")
	require.Equal(t, []string{"route"}, names(r.Claimed))
	fin := b.spawnStep("fin", "a1", "a2")
	fin.Type = "deferred_convergence"
	decide := b.outcome(t, &r.Claimed[0].ClaimedStep, store.OutcomeSuccess)
	decide.Spawn = &store.SpawnPlan{Steps: []store.NewStep{b.spawnStep("a1", "route"), b.spawnStep("a2", "route"), fin}}
	b.recordOwned(t, decide)
	branches := b.claimFromQueue(t, worker, 10, "h_a1", "h_a2")
	require.ElementsMatch(t, []string{"a1", "a2"}, names(branches.Claimed))
	require.ElementsMatch(t, []string{"route", "validate"}, keys(branches.Claimed[0].Results))
	b.recordOwned(t, b.outcome(t, &branches.Claimed[0].ClaimedStep, store.OutcomeSuccess), b.outcome(t, &branches.Claimed[1].ClaimedStep, store.OutcomeSuccess))
	f := b.claimFromQueue(t, worker, 10, "h_fin")
	require.Equal(t, []string{"fin"}, names(f.Claimed))
	require.ElementsMatch(t, []string{"a1", "a2", "route", "validate"}, keys(f.Claimed[0].Results))
	requireGapFree(t, b, g.task)
}

// testClaimFromQueueConcurrent: four workers read and claim from the same queue at once, a few
// messages at a time, until every step is claimed: each exactly once.
func testClaimFromQueueConcurrent(t *testing.T, b *bundle) {
	qc := b.claimer(t)
	const n = 24
	steps := make([]store.NewStep, n)
	callables := make([]string, n)
	for i := range steps {
		steps[i] = b.newStep(fmt.Sprintf("s%d", i))
		callables[i] = steps[i].Handler
	}
	g := b.createGraph(t, steps...)
	var mu sync.Mutex
	owner := map[uuid.UUID]string{}
	deadline := time.Now().Add(20 * time.Second)
	parallel(4, func(i int) {
		w := fmt.Sprintf("w%d", i+1)
		for time.Now().Before(deadline) {
			res, err := qc.ClaimFromQueue(context.Background(), store.ClaimFromQueueParams{Namespace: Namespace, WorkerID: w,
				Limit: 5, Lease: time.Minute, Callables: callables})
			if !assertNoError(t, err) {
				return
			}
			mu.Lock()
			if len(res.Stale) > 0 {
				t.Errorf("%s: %d stale messages", w, len(res.Stale))
			}
			for _, c := range res.Claimed {
				if prev, dup := owner[c.Step.ID]; dup {
					t.Errorf("%s claimed by %s and %s", c.Step.Name, prev, w)
				}
				owner[c.Step.ID] = w
			}
			done := len(owner) == n
			mu.Unlock()
			if done {
				return
			}
		}
	})
	require.Len(t, owner, n, "every step is claimed")
	for id, w := range owner {
		st := b.step(t, g.task, id)
		require.Equal(t, [2]any{w, 1}, [2]any{st.LeaseOwner, st.Attempts})
	}
	require.Equal(t, n, b.task(t, g.task).StepsActive)
	requireGapFree(t, b, g.task)
}

// testClaimFromQueueRetries: a retry timer whose step still waits comes back in Retries, for the
// caller to promote and claim; one whose step an earlier delivery promoted is claimed.
func testClaimFromQueueRetries(t *testing.T, b *bundle) {
	b.claimer(t)
	ctx := context.Background()
	g := b.createGraph(t, b.newStep("x"), b.newStep("y"))
	first := b.claimFromQueue(t, worker, 10, "h_x", "h_y")
	require.Len(t, first.Claimed, 2)
	outs := make([]store.Outcome, 2)
	for i, c := range first.Claimed {
		outs[i] = b.outcome(t, &c.ClaimedStep, store.OutcomeRetry)
		outs[i].RetryDelay, outs[i].MessageID = 200*time.Millisecond, c.MessageID
	}
	b.recordOwned(t, outs...)
	time.Sleep(300 * time.Millisecond)
	// An earlier delivery of y's timer promoted y and died before its claim.
	recs, err := b.batch(t).PromoteRetries(ctx, store.PromoteRetriesParams{Steps: []uuid.UUID{g.id["y"]}})
	require.NoError(t, err)
	require.NoError(t, recs[0].Err)

	res := b.claimFromQueue(t, worker, 10, "h_x", "h_y")
	require.Equal(t, []string{"y"}, names(res.Claimed), "y was promoted: its timer claims it")
	require.Equal(t, 2, res.Claimed[0].Step.Attempts)
	require.Empty(t, res.Stale)
	require.Len(t, res.Retries, 1)
	require.Equal(t, g.id["x"], res.Retries[0].StepID)
	require.Equal(t, statemachine.StepWaitingForRetry, b.step(t, g.task, g.id["x"]).State, "the claim leaves a waiting step alone")

	recs, err = b.batch(t).PromoteRetries(ctx, store.PromoteRetriesParams{Steps: []uuid.UUID{g.id["x"]}})
	require.NoError(t, err)
	require.NoError(t, recs[0].Err)
	claimed := b.claimMany(t, worker, res.Retries[0])
	require.Equal(t, []string{"x"}, names(claimed.Claimed))
	require.Equal(t, res.Retries[0].MessageID, claimed.Claimed[0].MessageID)
	requireGapFree(t, b, g.task)
}

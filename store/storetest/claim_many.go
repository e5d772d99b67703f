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

func testClaimMany(t *testing.T, h Harness) {
	parallelTest(t, h, "ClaimsTheEnqueuedAndReportsTheStale", testClaimManyStale)
	parallelTest(t, h, "LoadsTheAncestorsResults", testClaimManyResults)
	parallelTest(t, h, "ConcurrentClaimersClaimEachStepOnce", testClaimManyConcurrent)
}

// claimMany claims refs for workerID with a one-minute lease.
func (b *bundle) claimMany(t *testing.T, workerID string, refs ...store.ClaimRef) *store.ClaimManyResult {
	t.Helper()
	res, err := b.batch(t).ClaimMany(context.Background(), store.ClaimManyParams{WorkerID: workerID, Lease: time.Minute, Steps: refs})
	require.NoError(t, err)
	return res
}

func testClaimManyStale(t *testing.T, b *bundle) {
	g := b.createGraph(t, b.newStep("a"), b.newStep("b"), b.newStep("c", 0))
	b.requireSent(t, "a", "b")
	unknown := uuid.New()
	res := b.claimMany(t, worker,
		store.ClaimRef{StepID: g.id["a"], MessageID: 11},
		store.ClaimRef{StepID: unknown, MessageID: 12},
		store.ClaimRef{StepID: g.id["b"], MessageID: 13},
		store.ClaimRef{StepID: g.id["c"], MessageID: 14}, // pending
		store.ClaimRef{StepID: g.id["a"], MessageID: 15}, // a duplicate delivery
	)
	require.Len(t, res.Claimed, 2)
	require.Len(t, res.Stale, 3)
	for i, want := range []struct {
		name string
		msg  int64
	}{{"a", 11}, {"b", 13}} {
		c := res.Claimed[i]
		require.Equal(t, want.name, c.Step.Name)
		require.Equal(t, want.msg, c.MessageID)
		require.Equal(t, statemachine.StepInProgress, c.Step.State)
		require.Equal(t, 1, c.Step.Attempts)
		require.Equal(t, worker, c.Step.LeaseOwner)
		require.NotNil(t, c.Step.LeaseExpiresAt)
		require.Equal(t, g.task, c.Task.ID)
		require.JSONEq(t, `{"order": 7}`, string(c.Task.Context))
		last := lastTransition(t, b, g.task, g.id[want.name])
		require.Equal(t, []string{"enqueued", "in_progress", "start"}, []string{last.From, last.To, last.Event})
	}
	require.Equal(t, []int64{12, 14, 15}, []int64{res.Stale[0].MessageID, res.Stale[1].MessageID, res.Stale[2].MessageID})
	require.Equal(t, unknown, res.Stale[0].StepID)
	require.Equal(t, statemachine.StepPending, b.step(t, g.task, g.id["c"]).State)
	require.Equal(t, 2, b.task(t, g.task).StepsActive)
	requireGapFree(t, b, g.task)

	// The claimed attempts are the worker's.
	res2 := b.record(t, b.outcome(t, &res.Claimed[0].ClaimedStep, store.OutcomeSuccess))
	require.Equal(t, []store.OutcomeStatus{store.Recorded}, statuses(res2))
	require.Empty(t, b.claimMany(t, worker).Claimed, "an empty call claims nothing")
}

func testClaimManyResults(t *testing.T, b *bundle) {
	g := b.diamond(t)
	b.run(t, g.id["start"])
	res := b.claimMany(t, worker,
		store.ClaimRef{StepID: g.id["left"]},                         // every ancestor along the edges
		store.ClaimRef{StepID: g.id["right"], Ancestors: []string{}}) // none
	require.Len(t, res.Claimed, 2)
	require.Equal(t, map[string]json.RawMessage{"start": json.RawMessage(`{"by": "start"}`)}, res.Claimed[0].Results)
	require.Empty(t, res.Claimed[1].Results)
	rec := b.record(t, b.outcome(t, &res.Claimed[0].ClaimedStep, store.OutcomeSuccess), b.outcome(t, &res.Claimed[1].ClaimedStep, store.OutcomeSuccess))
	require.Equal(t, []string{"join"}, b.published(t, rec))
	res = b.claimMany(t, worker, store.ClaimRef{StepID: g.id["join"], Ancestors: []string{"left", "start"}})
	require.Len(t, res.Claimed, 1)
	require.Equal(t, map[string]json.RawMessage{"start": json.RawMessage(`{"by": "start"}`), "left": json.RawMessage(`{"by": "left"}`)},
		res.Claimed[0].Results, "only the named ancestors")
}

// testClaimManyConcurrent: four workers claim the same eight steps at once; each step is claimed
// by exactly one of them, and each worker hears of every step.
func testClaimManyConcurrent(t *testing.T, b *bundle) {
	steps := make([]store.NewStep, 8)
	for i := range steps {
		steps[i] = b.newStep(fmt.Sprintf("s%d", i))
	}
	g := b.createGraph(t, steps...)
	refs := make([]store.ClaimRef, len(steps))
	for i, st := range steps {
		refs[i] = store.ClaimRef{StepID: st.StepID, MessageID: int64(i + 1)}
	}
	var mu sync.Mutex
	owner := map[uuid.UUID]string{}
	bs := b.batch(t)
	parallel(4, func(i int) {
		w := fmt.Sprintf("w%d", i+1)
		res, err := bs.ClaimMany(context.Background(), store.ClaimManyParams{WorkerID: w, Lease: time.Minute, Steps: refs})
		if !assertNoError(t, err) {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if len(res.Claimed)+len(res.Stale) != len(refs) {
			t.Errorf("%s: %d claimed and %d stale of %d", w, len(res.Claimed), len(res.Stale), len(refs))
		}
		for _, c := range res.Claimed {
			if prev, dup := owner[c.Step.ID]; dup {
				t.Errorf("%s claimed by %s and %s", c.Step.Name, prev, w)
			}
			owner[c.Step.ID] = w
		}
	})
	require.Len(t, owner, len(steps), "every step is claimed")
	for id, w := range owner {
		st := b.step(t, g.task, id)
		require.Equal(t, w, st.LeaseOwner)
		require.Equal(t, 1, st.Attempts)
	}
	require.Equal(t, len(steps), b.task(t, g.task).StepsActive)
}

// assertNoError reports err from a goroutine that must not stop the test.
func assertNoError(t *testing.T, err error) bool {
	if err != nil {
		t.Errorf("unexpected error: %v", err)
		return false
	}
	return true
}

package storetest

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

func testLeases(t *testing.T, h Harness) {
	parallelTest(t, h, "ExpiredStepsAndTheirRescue", testLeasesExpiredAndRescued)
}

func expiredNames(ex []store.ExpiredStep) []string {
	out := []string{}
	for _, x := range ex {
		out = append(out, x.Name)
	}
	return out
}

func testStaleSteps(t *testing.T, h Harness) {
	parallelTest(t, h, "ListsStepsEnqueuedTooLongOncePerPeriod", testStaleStepsOncePerPeriod)
}

func testLeadership(t *testing.T, h Harness) {

	parallelTest(t, h, "OneLeaderAmongConcurrentCandidates", testLeadershipOneLeaderAmongConcurrentCandidates)
	parallelTest(t, h, "ResignLetsAnotherLead", testLeadershipResignLetsAnotherLead)
	parallelTest(t, h, "AnExpiredLeadershipCanBeTaken", testLeadershipAnExpiredLeadershipCanBeTaken)
}

func testLeasesExpiredAndRescued(t *testing.T, b *bundle) {
	ctx := context.Background()
	g := b.createGraph(t, b.newStep("a"), b.newStep("b"), b.newStep("c"), b.newStep("d"))
	claims := map[string]*store.ClaimedStep{}
	// Claimed in this order with growing leases, they expire c, a, b; d's lease lasts.
	for i, name := range []string{"c", "a", "b"} {
		claims[name] = b.claimAs(t, g.id[name], "dead", time.Duration(100+20*i)*time.Millisecond)
	}
	claims["d"] = b.claimAs(t, g.id["d"], "alive", time.Minute)
	time.Sleep(250 * time.Millisecond)

	expired, err := b.Store.ExpiredSteps(ctx, store.ExpiredStepsParams{})
	require.NoError(t, err)
	require.Equal(t, []string{"c", "a", "b"}, expiredNames(expired), "oldest lease first")
	ex := expired[0]
	require.Equal(t, []string{Namespace, "t", "1", "dead"}, []string{ex.Namespace, ex.TaskName, ex.Version, ex.LeaseOwner})
	require.Equal(t, g.task, ex.TaskID)
	require.Equal(t, statemachine.StepInProgress, ex.State)
	require.Equal(t, 1, ex.Attempts)
	expired, err = b.Store.ExpiredSteps(ctx, store.ExpiredStepsParams{Limit: 2})
	require.NoError(t, err)
	require.Equal(t, []string{"c", "a"}, expiredNames(expired))

	rescue := func(name string) error {
		p := b.outcomeParams(claims[name], store.OutcomeRetry)
		p.LeaseExpired = true
		_, err := b.Store.RecordOutcome(ctx, p)
		return err
	}
	require.ErrorIs(t, rescue("d"), store.ErrConflict, "a live lease is not rescued")
	require.NoError(t, rescue("c"))
	require.Equal(t, statemachine.StepWaitingForRetry, b.step(t, g.task, g.id["c"]).State)
	require.ErrorIs(t, rescue("c"), store.ErrConflict, "rescued once")
	_, err = b.Store.RecordOutcome(ctx, b.outcomeParams(claims["c"], store.OutcomeSuccess))
	require.ErrorIs(t, err, store.ErrConflict, "the rescued worker's late outcome is dropped")
	// Until it is rescued, a slow worker may still record its outcome.
	b.succeed(t, claims["a"])
	expired, err = b.Store.ExpiredSteps(ctx, store.ExpiredStepsParams{})
	require.NoError(t, err)
	require.Equal(t, []string{"b"}, expiredNames(expired))
}

func testStaleStepsOncePerPeriod(t *testing.T, b *bundle) {
	ctx := context.Background()
	const olderThan = time.Second
	created := time.Now() // every step's updated_at is later than this
	g := b.createGraph(t, b.newStep("a"), b.newStep("r"), b.newStep("w"), b.newStep("p"), b.newStep("c", 0))
	for name, delay := range map[string]time.Duration{"r": 0, "w": time.Minute} {
		p := b.outcomeParams(b.claim(t, g.id[name]), store.OutcomeRetry)
		p.RetryDelay = delay
		_, err := b.Store.RecordOutcome(ctx, p)
		require.NoError(t, err)
	}
	b.claim(t, g.id["p"])
	setUp := time.Now() // every step's updated_at is earlier than this
	stale := func(limit int) []string {
		t.Helper()
		got, err := b.Store.StaleSteps(ctx, store.StaleStepsParams{OlderThan: olderThan, Limit: limit})
		require.NoError(t, err)
		out := []string{}
		for _, s := range got {
			require.Equal(t, Namespace, s.Namespace)
			require.Equal(t, g.task, s.Ref.TaskID)
			require.Equal(t, g.id[s.Ref.Name], s.Ref.StepID)
			require.Equal(t, []string{"t", "1"}, []string{s.Ref.TaskName, s.Ref.Version})
			out = append(out, fmt.Sprintf("%s/%v", s.Ref.Name, s.Ref.Retry))
		}
		slices.Sort(out)
		return out
	}
	// Each "nothing yet" check holds only while its query starts within olderThan of the moment it
	// is measured from; a machine slow enough to pass that moment skips the check.
	if asked := time.Now(); asked.Before(created.Add(olderThan)) {
		require.Empty(t, stale(0), "nothing is older than %v yet", olderThan)
	}
	time.Sleep(time.Until(setUp.Add(olderThan + 50*time.Millisecond)))
	// a is enqueued, r's retry is due; w's is not, p runs, c waits for a.
	listing := time.Now() // the listing touches them after this
	require.Equal(t, []string{"a/false", "r/true"}, stale(0))
	if asked := time.Now(); asked.Before(listing.Add(olderThan)) {
		require.Empty(t, stale(0), "listed once per period")
	}
	time.Sleep(olderThan + 50*time.Millisecond)
	first := stale(1)
	require.Len(t, first, 1, "Limit")
	second := stale(0)
	require.Len(t, second, 1)
	require.ElementsMatch(t, []string{"a/false", "r/true"}, append(first, second...))
}

func testLeadershipOneLeaderAmongConcurrentCandidates(t *testing.T, b *bundle) {
	const n = 8
	var leaders atomic.Int32
	var leader atomic.Value
	errs := make([]error, n)
	parallel(n, func(i int) {
		id := fmt.Sprint("e", i)
		ok, err := b.Store.TryLead(context.Background(), store.LeadParams{Name: "m", LeaderID: id, TTL: time.Minute})
		errs[i] = err
		if ok {
			leaders.Add(1)
			leader.Store(id)
		}
	})
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.EqualValues(t, 1, leaders.Load())
	id := leader.Load().(string)
	require.True(t, b.lead(t, "m", id, time.Minute), "the leader renews")
	require.False(t, b.lead(t, "m", id+"x", time.Minute))
	require.True(t, b.lead(t, "other", id+"x", time.Minute), "another leadership is independent")
}

func testLeadershipResignLetsAnotherLead(t *testing.T, b *bundle) {
	ctx := context.Background()
	require.True(t, b.lead(t, "m", "a", time.Minute))
	require.False(t, b.lead(t, "m", "b", time.Minute))
	require.NoError(t, b.Store.Resign(ctx, store.LeadParams{Name: "m", LeaderID: "b"}), "resigning what one does not hold is a no-op")
	require.False(t, b.lead(t, "m", "b", time.Minute))
	require.NoError(t, b.Store.Resign(ctx, store.LeadParams{Name: "m", LeaderID: "a"}))
	require.True(t, b.lead(t, "m", "b", time.Minute))
	require.False(t, b.lead(t, "m", "a", time.Minute))
}

func testLeadershipAnExpiredLeadershipCanBeTaken(t *testing.T, b *bundle) {
	const ttl = time.Second
	sent := time.Now() // a's lease runs from after this
	require.True(t, b.lead(t, "m", "a", ttl))
	// b is refused while a's lease holds (checked only while the answer comes within it).
	if refused := !b.lead(t, "m", "b", ttl); time.Now().Before(sent.Add(ttl)) {
		require.True(t, refused, "a's lease still holds")
	}
	time.Sleep(time.Until(sent.Add(ttl + 300*time.Millisecond)))
	require.True(t, b.lead(t, "m", "b", time.Minute))
	require.False(t, b.lead(t, "m", "a", time.Minute))
}

// lead tries to take or renew a leadership.
func (b *bundle) lead(t *testing.T, name, id string, ttl time.Duration) bool {
	t.Helper()
	ok, err := b.Store.TryLead(context.Background(), store.LeadParams{Name: name, LeaderID: id, TTL: ttl})
	require.NoError(t, err)
	return ok
}

package storetest

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

// testBatchSpawn: a decision's outcome spawns its branches and a convergence step in a batch with
// another task's outcome; the branches then finish together in one batch, which releases the
// convergence step once; its claim sees every ancestor along the new edges.
func testBatchSpawn(t *testing.T, b *bundle) {
	route := b.newStep("route", 0)
	route.Type = "decision"
	g := b.createGraph(t, b.newStep("validate"), route)
	other := b.createGraph(t, b.newStep("c"))
	b.run(t, g.id["validate"])
	b.requireSent(t, "validate", "c", "route")
	fin := b.spawnStep("fin", "a1", "a2")
	fin.Type = "deferred_convergence"
	a1, a2 := b.spawnStep("a1", "route"), b.spawnStep("a2", "route")
	decide := b.outcome(t, b.claim(t, g.id["route"]), store.OutcomeSuccess)
	decide.Spawn = &store.SpawnPlan{Steps: []store.NewStep{a1, a2, fin}}
	res := b.record(t, b.outcome(t, b.claim(t, other.id["c"]), store.OutcomeSuccess), decide)
	require.Equal(t, []store.OutcomeStatus{store.Recorded, store.Recorded}, statuses(res))
	require.True(t, res.Records[0].Settled)
	require.Equal(t, 2, res.Records[1].Released)
	require.Equal(t, []string{"a1", "a2"}, b.published(t, res))
	task := b.task(t, g.task)
	require.Equal(t, [3]int{5, 3, 2}, [3]int{task.StepsTotal, task.StepsUnfinished, task.StepsActive}, "total, unfinished, active")
	require.Equal(t, map[string]statemachine.StepState{"validate": "complete", "route": "complete", "a1": "enqueued", "a2": "enqueued", "fin": "pending"},
		b.states(t, g.task))

	claimed := b.claimMany(t, worker, store.ClaimRef{StepID: a1.StepID}, store.ClaimRef{StepID: a2.StepID})
	require.Len(t, claimed.Claimed, 2)
	res = b.record(t, b.outcome(t, &claimed.Claimed[0].ClaimedStep, store.OutcomeSuccess), b.outcome(t, &claimed.Claimed[1].ClaimedStep, store.OutcomeSuccess))
	require.Equal(t, 1, res.Records[0].Released+res.Records[1].Released, "the convergence step is released once")
	require.Equal(t, []string{"fin"}, b.published(t, res))
	require.Equal(t, 1, enqueueCount(t, b, graph{task: g.task, id: map[string]uuid.UUID{"fin": fin.StepID}}, "fin"))

	claimed = b.claimMany(t, worker, store.ClaimRef{StepID: fin.StepID})
	require.Len(t, claimed.Claimed, 1)
	require.ElementsMatch(t, []string{"a1", "a2", "route", "validate"}, keys(claimed.Claimed[0].Results), "the ancestors of a spawned step")
	res = b.record(t, b.outcome(t, &claimed.Claimed[0].ClaimedStep, store.OutcomeSuccess))
	require.True(t, res.Records[0].Settled)
	require.Equal(t, statemachine.TaskComplete, res.Records[0].TaskState)
	requireGapFree(t, b, g.task)
}

// testBatchSharedTasks records two batches at once that share two tasks, in opposite orders,
// a few times: neither fails (no deadlock), and each task settles exactly once.
func testBatchSharedTasks(t *testing.T, b *bundle) {
	bs := b.batch(t)
	for round := range 4 {
		g1 := b.createGraph(t, b.newStep("p"), b.newStep("q"))
		g2 := b.createGraph(t, b.newStep("p"), b.newStep("q"))
		b.requireSent(t, "p", "p", "q", "q")
		batches := [][]store.Outcome{
			{b.outcome(t, b.claim(t, g1.id["p"]), store.OutcomeSuccess), b.outcome(t, b.claim(t, g2.id["p"]), store.OutcomeSuccess)},
			{b.outcome(t, b.claim(t, g2.id["q"]), store.OutcomeSuccess), b.outcome(t, b.claim(t, g1.id["q"]), store.OutcomeSuccess)},
		}
		results := make([]*store.RecordOutcomesResult, 2)
		errs := make([]error, 2)
		parallel(2, func(i int) {
			results[i], errs[i] = bs.RecordOutcomes(context.Background(), store.RecordOutcomesParams{Outcomes: batches[i]})
		})
		require.NoError(t, errs[0], "round %d", round)
		require.NoError(t, errs[1], "round %d", round)
		settled := map[string]int{}
		for i, res := range results {
			for j, r := range res.Records {
				require.Equal(t, store.Recorded, r.Status)
				if r.Settled {
					settled[fmt.Sprint(batches[i][j].TaskID)]++
				}
			}
		}
		require.Equal(t, map[string]int{fmt.Sprint(g1.task): 1, fmt.Sprint(g2.task): 1}, settled, "each task settles once")
		for _, g := range []graph{g1, g2} {
			task := b.task(t, g.task)
			require.Equal(t, statemachine.TaskComplete, task.State)
			require.Equal(t, [3]int{0, 0, 0}, [3]int{task.StepsUnfinished, task.StepsActive, task.StepsFailed})
			requireGapFree(t, b, g.task)
		}
	}
}

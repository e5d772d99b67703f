package storetest

import (
	"context"
	"slices"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

func testSpawn(t *testing.T, h Harness) {
	t.Run("ADecisionAddsStepsAndEdges", func(t *testing.T) {
		t.Parallel()
		testDecision(t, setup(t, h))
	})

	parallelTest(t, h, "AnExistingConvergenceStepOnlyGainsEdges", testSpawnAnExistingConvergenceStepOnlyGainsEdges)

	t.Run("ABatchRunsItsWorkersWithinItsParallelism", func(t *testing.T) {
		t.Parallel()
		testBatch(t, setup(t, h))
	})

	parallelTest(t, h, "AParentNamedTwiceCountsOnce", testSpawnAParentNamedTwiceCountsOnce)
	parallelTest(t, h, "RolledBackWithTheOutcome", testSpawnRolledBackWithTheOutcome)
}

// testDecision: a decision spawns two branches and a convergence step behind them; a parent
// that does not exist is skipped, one that has finished is not waited for, and a step that
// exists is not created again.
func testDecision(t *testing.T, b *bundle) {
	route := b.newStep("route", 0)
	route.Type = "decision"
	g := b.createGraph(t, b.newStep("validate"), route)
	b.run(t, g.id["validate"])
	b.requireSent(t, "validate", "route")
	fin := b.spawnStep("fin", "a1", "a2", "nope", "validate")
	fin.Type = "deferred_convergence"
	a1, a2 := b.spawnStep("a1", "route"), b.spawnStep("a2", "route")
	res := spawn(t, b, b.claim(t, g.id["route"]), a1, a2, fin, b.spawnStep("validate"))
	require.Equal(t, 2, res.Released)
	require.Equal(t, statemachine.TaskStepsInProcess, res.TaskState)
	b.requireSent(t, "a1", "a2")

	task := b.task(t, g.task)
	require.Equal(t, [3]int{5, 3, 2}, [3]int{task.StepsTotal, task.StepsUnfinished, task.StepsActive}, "total, unfinished, active")
	require.Equal(t, map[string]statemachine.StepState{"validate": "complete", "route": "complete", "a1": "enqueued", "a2": "enqueued", "fin": "pending"},
		b.states(t, g.task))
	require.Equal(t, g.id["validate"], idOf(t, b, g, "validate"))
	require.Equal(t, []statemachine.StepState{"pending", "enqueued"}, stepPath(t, b, g.task, a1.StepID))
	require.Equal(t, []statemachine.StepState{"pending"}, stepPath(t, b, g.task, fin.StepID))
	st := b.step(t, g.task, a1.StepID)
	require.Equal(t, []string{"a1", "h_a1", "standard"}, []string{st.TemplateStep, st.Handler, st.Type})

	require.Zero(t, b.run(t, a1.StepID).Released)
	require.Equal(t, 1, b.run(t, a2.StepID).Released)
	b.requireSent(t, "fin")
	c := b.claim(t, fin.StepID)
	require.ElementsMatch(t, []string{"a1", "a2", "route", "validate"}, keys(c.Results))
	require.True(t, b.succeed(t, c).Settled)
}

// testBatch: a batchable step spawns three workers of which one may run at a time (the others
// held) and whose failures are isolated, and a convergence step behind them.
func testBatch(t *testing.T, b *bundle) {
	ctx := context.Background()
	analyze := b.newStep("analyze")
	analyze.Type = "batchable"
	g := b.createGraph(t, analyze)
	b.requireSent(t, "analyze")
	var plan []store.NewStep
	for i, name := range []string{"w1", "w2", "w3"} {
		w := b.spawnStep(name, "analyze")
		w.TemplateStep, w.Type, w.Held, w.BatchGroup, w.FailureStrategy = "w", "batch_worker", i > 0, g.id["analyze"], "isolate"
		w.Inputs = []byte(`{"cursor": ` + string(rune('0'+i)) + `}`)
		plan = append(plan, w)
	}
	total := b.spawnStep("total", "w1", "w2", "w3")
	total.Type = "deferred_convergence"
	res := spawn(t, b, b.claim(t, g.id["analyze"]), append(plan, total)...)
	require.Equal(t, 1, res.Released, "one worker at a time")
	b.requireSent(t, "w1")
	w1 := b.step(t, g.task, plan[0].StepID)
	require.Equal(t, g.id["analyze"], *w1.BatchGroup)
	require.Equal(t, []string{"w", "batch_worker", "isolate"}, []string{w1.TemplateStep, w1.Type, w1.FailureStrategy})
	require.JSONEq(t, `{"cursor": 0}`, string(w1.Inputs))

	require.Equal(t, 1, b.run(t, plan[0].StepID).Released, "w1's slot goes to w2")
	b.requireSent(t, "w2")
	p := b.outcomeParams(b.claim(t, plan[1].StepID), store.OutcomePermanent)
	p.Isolated = true
	res, err := b.Store.RecordOutcome(ctx, p)
	require.NoError(t, err)
	require.Equal(t, 1, res.Released, "an isolated failure frees its slot")
	require.Equal(t, statemachine.TaskStepsInProcess, res.TaskState)
	b.requireSent(t, "w3")
	res = b.run(t, plan[2].StepID)
	require.Equal(t, statemachine.TaskBlockedByFailures, res.TaskState, "total waits for w2, nothing else runs")
	require.True(t, res.Settled)
	b.requireSent(t)

	res, err = b.Store.OperatorAction(ctx, store.OperatorParams{StepID: plan[1].StepID, Action: store.OperatorResolve, Operator: "op",
		Namespace: Namespace, Enqueuer: b.enq})
	require.NoError(t, err)
	require.Equal(t, statemachine.TaskStepsInProcess, res.TaskState)
	b.requireSent(t, "total")
	require.True(t, b.run(t, total.StepID).Settled)
	require.Equal(t, statemachine.TaskComplete, b.task(t, g.task).State)
}

// spawn records a claimed decision's success with a plan.
func spawn(t *testing.T, b *bundle, c *store.ClaimedStep, steps ...store.NewStep) *store.OutcomeResult {
	t.Helper()
	p := b.outcomeParams(c, store.OutcomeSuccess)
	p.Spawn = &store.SpawnPlan{Steps: steps}
	res, err := b.Store.RecordOutcome(context.Background(), p)
	require.NoError(t, err)
	return res
}

// idOf returns the ID of a task's step by name.
func idOf(t *testing.T, b *bundle, g graph, name string) uuid.UUID {
	t.Helper()
	steps, err := b.Store.GetSteps(context.Background(), g.task)
	require.NoError(t, err)
	for _, st := range steps {
		if st.Name == name {
			return st.ID
		}
	}
	t.Fatalf("no step %s", name)
	return uuid.Nil
}

func keys[V any](m map[string]V) []string {
	out := []string{}
	for k := range m {
		out = append(out, k)
	}
	return out
}

func testSpawnAnExistingConvergenceStepOnlyGainsEdges(t *testing.T, b *bundle) {
	ctx := context.Background()
	d1, d2 := b.newStep("d1"), b.newStep("d2")
	d1.Type, d2.Type = "decision", "decision"
	g := b.createGraph(t, d1, d2)
	b.requireSent(t, "d1", "d2")
	c1, c2 := b.claim(t, g.id["d1"]), b.claim(t, g.id["d2"])
	conv := b.spawnStep("conv", "x")
	conv.Type = "deferred_convergence"
	spawn(t, b, c1, b.spawnStep("x", "d1"), conv)
	b.requireSent(t, "x")
	conv2 := b.spawnStep("conv", "y")
	conv2.Type = "deferred_convergence"
	res := spawn(t, b, c2, b.spawnStep("y", "d2"), conv2)
	require.Equal(t, 1, res.Released)
	b.requireSent(t, "y")

	names, err := b.Store.StepNames(ctx, g.task)
	require.NoError(t, err)
	slices.Sort(names)
	require.Equal(t, []string{"conv", "d1", "d2", "x", "y"}, names, "conv is created once")
	require.Equal(t, 5, b.task(t, g.task).StepsTotal)
	require.Equal(t, conv.StepID, idOf(t, b, g, "conv"), "the first plan's conv")

	require.Zero(t, b.run(t, idOf(t, b, g, "x")).Released, "conv also waits for y")
	require.Equal(t, 1, b.run(t, idOf(t, b, g, "y")).Released)
	b.requireSent(t, "conv")
	c := b.claim(t, conv.StepID)
	require.ElementsMatch(t, []string{"d1", "d2", "x", "y"}, keys(c.Results))
}

func testSpawnAParentNamedTwiceCountsOnce(t *testing.T, b *bundle) {
	d := b.newStep("d")
	d.Type = "decision"
	g := b.createGraph(t, d)
	x := b.spawnStep("x", "d", "d")
	res := spawn(t, b, b.claim(t, g.id["d"]), x, x)
	require.Equal(t, 1, res.Released)
	b.requireSent(t, "d", "x")
	require.True(t, b.run(t, x.StepID).Settled)
}

func testSpawnRolledBackWithTheOutcome(t *testing.T, b *bundle) {
	ctx := context.Background()
	d := b.newStep("d")
	d.Type = "decision"
	g := b.createGraph(t, d)
	b.requireSent(t, "d")
	c := b.claim(t, g.id["d"])
	before := b.snapshot(t, g.task)
	p := b.outcomeParams(c, store.OutcomeSuccess)
	p.Spawn = &store.SpawnPlan{Steps: []store.NewStep{b.spawnStep("x", "d")}}
	p.BeforeCommit = func(context.Context, pgx.Tx) error { return errAck }
	_, err := b.Store.RecordOutcome(ctx, p)
	require.ErrorIs(t, err, errAck)
	require.Equal(t, before, b.snapshot(t, g.task), "no step, no edge, no transition")
	b.requireSent(t)
	p.Spawn.Steps[0].StepID = b.newStep("x").StepID // a fresh ID, as a new plan would have
	p.BeforeCommit = nil
	res, err := b.Store.RecordOutcome(ctx, p)
	require.NoError(t, err)
	require.Equal(t, 1, res.Released)
	b.requireSent(t, "x")
}

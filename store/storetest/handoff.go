package storetest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

// The hand-over (Outcome.Handoff): a success claims, for its worker and in its own transaction,
// one of the steps it released whose handler the worker has.

func testHandoff(t *testing.T, h Harness) {
	parallelTest(t, h, "ASuccessHandsOverACallableStep", testHandoffClaims)
	parallelTest(t, h, "OnlyACallableStepOfASuccessIsHandedOver", testHandoffNeedsACallable)
	parallelTest(t, h, "AJoinReleasedInABatchIsHandedOverOnce", testHandoffJoin)
	parallelTest(t, h, "AReplayedHandoffIsAlreadyRecorded", testHandoffReplay)
	parallelTest(t, h, "ATaskBlockedInTheBatchHandsNothingOver", testHandoffBlocked)
	parallelTest(t, h, "ADecisionHandsOverASpawnedStep", testHandoffSpawn)
	parallelTest(t, h, "AHandoffNeedsALease", testHandoffNoLease)
	parallelTest(t, h, "AnOwnedQueueHoldsTheHandedOverMessage", testHandoffHeldMessage)
}

// handOff records outs, each asking for a hand-over, with a one-minute lease and the callables.
func (b *bundle) handOff(t *testing.T, callables []string, outs ...store.Outcome) *store.RecordOutcomesResult {
	t.Helper()
	for i := range outs {
		outs[i].Handoff = true
	}
	return b.recordWith(t, store.RecordOutcomesParams{Outcomes: outs, Lease: time.Minute, Callables: callables})
}

// requireHandedOver checks that next is step name of task g claimed for the suite's worker by the
// outcome of step from: in progress at its first attempt under a lease, its start transition
// naming from.
func requireHandedOver(t *testing.T, b *bundle, g graph, next *store.NextStep, name, from string) {
	t.Helper()
	require.NotNil(t, next, "%s is handed over", name)
	require.Equal(t, name, next.Step.Name)
	require.Equal(t, statemachine.StepInProgress, next.Step.State)
	require.Equal(t, worker, next.Step.LeaseOwner)
	require.Equal(t, 1, next.Step.Attempts)
	require.NotNil(t, next.Step.LeaseExpiresAt)
	require.WithinDuration(t, time.Now().Add(time.Minute), *next.Step.LeaseExpiresAt, 30*time.Second)
	require.Equal(t, g.task, next.Task.ID)
	require.JSONEq(t, `{"order": 7}`, string(next.Task.Context))
	st := b.step(t, g.task, g.id[name])
	require.Equal(t, [3]any{statemachine.StepInProgress, worker, 1}, [3]any{st.State, st.LeaseOwner, st.Attempts})
	last := lastTransition(t, b, g.task, g.id[name])
	require.Equal(t, []string{"enqueued", "in_progress", "start"}, []string{last.From, last.To, last.Event})
	var meta struct {
		WorkerID string `json:"worker_id"`
		Attempt  int    `json:"attempt"`
		After    string `json:"after"`
	}
	require.NoError(t, json.Unmarshal(last.Metadata, &meta))
	require.Equal(t, worker, meta.WorkerID)
	require.Equal(t, 1, meta.Attempt)
	require.Equal(t, g.id[from].String(), meta.After, "the start transition names the handing step")
	require.Equal(t, 1, enqueueCount(t, b, g, name), "the handed-over step was enqueued once")
}

func testHandoffClaims(t *testing.T, b *bundle) {
	g := b.createGraph(t, b.newStep("a"), b.newStep("b", 0), b.newStep("c", 0))
	b.requireSent(t, "a")
	res := b.handOff(t, []string{"h_x", "h_c"}, b.outcome(t, b.claim(t, g.id["a"]), store.OutcomeSuccess))
	rec := res.Records[0]
	require.Equal(t, store.Recorded, rec.Status)
	require.Equal(t, 2, rec.Released, "the handed-over step counts as released")
	requireHandedOver(t, b, g, rec.Next, "c", "a")
	require.Equal(t, map[string]json.RawMessage{"a": json.RawMessage(`{"by": "a"}`)}, rec.Next.Results)
	require.Zero(t, rec.Next.MessageID, "the queue is not the store's: no message is held")
	require.Equal(t, []string{"b"}, b.published(t, res), "the handed-over step is not published")
	b.requireSent(t)
	task := b.task(t, g.task)
	require.Equal(t, [2]int{2, 2}, [2]int{task.StepsUnfinished, task.StepsActive})
	requireGapFree(t, b, g.task)

	// The handed-over attempt is the worker's.
	res = b.record(t, b.outcome(t, &rec.Next.ClaimedStep, store.OutcomeSuccess))
	require.Equal(t, []store.OutcomeStatus{store.Recorded}, statuses(res))
	require.Equal(t, statemachine.StepComplete, b.step(t, g.task, g.id["c"]).State)
}

func testHandoffNeedsACallable(t *testing.T, b *bundle) {
	g := b.createGraph(t, b.newStep("a"), b.newStep("b", 0), b.newStep("x"), b.newStep("y", 2), b.newStep("z"), b.newStep("z2", 4))
	b.requireSent(t, "a", "x", "z")
	retry := b.outcome(t, b.claim(t, g.id["x"]), store.OutcomeRetry)
	retry.RetryDelay = time.Hour
	res := b.handOff(t, []string{"h_y", "h_z2"},
		b.outcome(t, b.claim(t, g.id["a"]), store.OutcomeSuccess), // b's handler is not callable
		retry, // a retry releases nothing
		b.outcome(t, b.claim(t, g.id["z"]), store.OutcomePermanent))
	require.Equal(t, []store.OutcomeStatus{store.Recorded, store.Recorded, store.Recorded}, statuses(res))
	for i, r := range res.Records {
		require.Nil(t, r.Next, "outcome %d hands nothing over", i)
	}
	require.Equal(t, []string{"b", "x+retry"}, b.published(t, res))

	g2 := b.createGraph(t, b.newStep("a"), b.newStep("b", 0))
	b.requireSent(t, "a")
	res = b.handOff(t, nil, b.outcome(t, b.claim(t, g2.id["a"]), store.OutcomeSuccess))
	require.Nil(t, res.Records[0].Next, "no callables, no hand-over")
	require.Equal(t, []string{"b"}, b.published(t, res))

	g3 := b.createGraph(t, b.newStep("a"), b.newStep("b", 0))
	b.requireSent(t, "a")
	o := b.outcome(t, b.claim(t, g3.id["a"]), store.OutcomeSuccess)
	res = b.recordWith(t, store.RecordOutcomesParams{Outcomes: []store.Outcome{o}, Lease: time.Minute, Callables: []string{"h_b"}})
	require.Nil(t, res.Records[0].Next, "an outcome that does not ask hands nothing over")
	require.Equal(t, []string{"b"}, b.published(t, res))
}

// testHandoffJoin: both parents of a join complete in one batch, both asking for a hand-over; the
// join is handed over once, by the parent that released it (the later one in the batch).
func testHandoffJoin(t *testing.T, b *bundle) {
	g := b.diamond(t)
	b.run(t, g.id["start"])
	b.requireSent(t, "start", "left", "right")
	res := b.handOff(t, []string{"h_join"},
		b.outcome(t, b.claim(t, g.id["left"]), store.OutcomeSuccess),
		b.outcome(t, b.claim(t, g.id["right"]), store.OutcomeSuccess))
	require.Equal(t, []store.OutcomeStatus{store.Recorded, store.Recorded}, statuses(res))
	require.Nil(t, res.Records[0].Next, "left released nothing: right was still unfinished before it")
	require.Equal(t, [2]int{0, 1}, [2]int{res.Records[0].Released, res.Records[1].Released})
	requireHandedOver(t, b, g, res.Records[1].Next, "join", "right")
	require.ElementsMatch(t, []string{"start", "left", "right"}, keys(res.Records[1].Next.Results))
	require.Empty(t, b.published(t, res))
	requireGapFree(t, b, g.task)
}

func testHandoffReplay(t *testing.T, b *bundle) {
	g := b.createGraph(t, b.newStep("a"), b.newStep("b", 0))
	b.requireSent(t, "a")
	o := b.outcome(t, b.claim(t, g.id["a"]), store.OutcomeSuccess)
	res := b.handOff(t, []string{"h_b"}, o)
	requireHandedOver(t, b, g, res.Records[0].Next, "b", "a")
	before := b.snapshot(t, g.task)
	res = b.handOff(t, []string{"h_b"}, o)
	require.Equal(t, []store.OutcomeStatus{store.AlreadyRecorded}, statuses(res))
	require.Nil(t, res.Records[0].Next, "a replay hands nothing over again")
	require.Empty(t, b.published(t, res))
	require.Equal(t, before, b.snapshot(t, g.task), "a replay changes nothing")
}

// testHandoffBlocked: in one batch a permanent failure blocks the task, then a success of the same
// task releases a step: it goes back to pending, and nothing is handed over.
func testHandoffBlocked(t *testing.T, b *bundle) {
	g := b.createGraph(t, b.newStep("x"), b.newStep("a"), b.newStep("b", 1))
	b.requireSent(t, "x", "a")
	res := b.handOff(t, []string{"h_b"},
		b.outcome(t, b.claim(t, g.id["x"]), store.OutcomePermanent),
		b.outcome(t, b.claim(t, g.id["a"]), store.OutcomeSuccess))
	require.Equal(t, []store.OutcomeStatus{store.Recorded, store.Recorded}, statuses(res))
	require.Nil(t, res.Records[1].Next)
	require.Zero(t, res.Records[1].Released, "a blocked task enqueues nothing")
	require.Equal(t, statemachine.TaskBlockedByFailures, res.Records[1].TaskState)
	require.True(t, res.Records[1].Settled)
	require.Empty(t, b.published(t, res))
	require.Equal(t, statemachine.StepPending, b.step(t, g.task, g.id["b"]).State)
	require.Zero(t, enqueueCount(t, b, g, "b"))
	requireGapFree(t, b, g.task)
}

// testHandoffSpawn: a decision's success hands over one of the branches it spawns.
func testHandoffSpawn(t *testing.T, b *bundle) {
	route := b.newStep("route")
	route.Type = "decision"
	g := b.createGraph(t, route)
	b.requireSent(t, "route")
	a1, a2 := b.spawnStep("a1", "route"), b.spawnStep("a2", "route")
	decide := b.outcome(t, b.claim(t, g.id["route"]), store.OutcomeSuccess)
	decide.Spawn = &store.SpawnPlan{Steps: []store.NewStep{a1, a2}}
	res := b.handOff(t, []string{"h_a2"}, decide)
	require.Equal(t, []store.OutcomeStatus{store.Recorded}, statuses(res))
	require.Equal(t, 2, res.Records[0].Released)
	g.id["a1"], g.id["a2"] = a1.StepID, a2.StepID
	requireHandedOver(t, b, g, res.Records[0].Next, "a2", "route")
	require.Equal(t, []string{"a1"}, b.published(t, res))
	requireGapFree(t, b, g.task)
}

func testHandoffNoLease(t *testing.T, b *bundle) {
	g := b.createGraph(t, b.newStep("a"), b.newStep("b", 0))
	b.requireSent(t, "a")
	o := b.outcome(t, b.claim(t, g.id["a"]), store.OutcomeSuccess)
	o.Handoff = true
	before := b.snapshot(t, g.task)
	_, err := b.batch(t).RecordOutcomes(context.Background(), store.RecordOutcomesParams{Outcomes: []store.Outcome{o}, Callables: []string{"h_b"}})
	require.ErrorContains(t, err, "lease")
	require.Equal(t, before, b.snapshot(t, g.task), "a refused batch records nothing")
}

// testHandoffHeldMessage: with the store's own queue, the handed-over step's message is sent in
// the commit, held for the lease (read once), and surfaces when the lease passes, as a held
// message does should its worker die; the other released step's message is sent visible, and the
// outcome's own message is deleted.
func testHandoffHeldMessage(t *testing.T, b *bundle) {
	if !b.caps.OwnsQueue {
		t.Skip("the store does not own its queue: nothing is held")
	}
	g := b.createGraph(t, b.newStep("a"), b.newStep("b", 0), b.newStep("c", 0))
	ids := b.readIDs(t, time.Minute)
	o := b.outcome(t, b.claim(t, g.id["a"]), store.OutcomeSuccess)
	o.Handoff, o.MessageID = true, ids["a"]
	const lease = 300 * time.Millisecond
	res := b.recordWith(t, store.RecordOutcomesParams{Outcomes: []store.Outcome{o}, Lease: lease, Callables: []string{"h_c"}, OwnedQueue: true})
	rec := res.Records[0]
	require.True(t, rec.Acked)
	require.NotNil(t, rec.Next)
	require.Equal(t, "c", rec.Next.Step.Name)
	require.NotZero(t, rec.Next.MessageID, "the handed-over step's message is held")
	require.Empty(t, res.Publish, "the store sent the messages itself")
	b.requireSent(t, "b")
	time.Sleep(lease + 150*time.Millisecond)
	msgs, err := b.Queue.Read(context.Background(), Namespace, 10, time.Minute)
	require.NoError(t, err)
	require.Len(t, msgs, 1, "the held message surfaces once the lease has passed")
	require.Equal(t, rec.Next.MessageID, msgs[0].ID)
	require.Equal(t, 2, msgs[0].ReadCount, "held, it counted as read once")
	var m message
	require.NoError(t, json.Unmarshal(msgs[0].Payload, &m))
	require.Equal(t, message{TaskID: g.task, StepID: g.id["c"], TaskName: "t", Version: "1", Step: "c", Handler: "h_c"}, m)
}

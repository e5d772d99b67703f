package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
	"github.com/tasker-systems/tasker/store/internal/params"
)

// The batched seam (store.BatchStore): many outcomes, of many tasks, in one call; many claims in
// one call.

func testRecordOutcomes(t *testing.T, h Harness) {
	parallelTest(t, h, "TwoParentsOfAJoinInOneBatchReleaseItOnce", testBatchJoinReleasedOnce)
	parallelTest(t, h, "AJoinWithARunningParentStaysPending", testBatchJoinWithARunningParent)
	parallelTest(t, h, "MixedKindsAndTasksEqualAOneByOneReplay", testBatchEqualsReplay)
	parallelTest(t, h, "JoinsAndBatchSlotsEqualAOneByOneReplay", testBatchJoinsEqualReplay)
	parallelTest(t, h, "AConflictNextToGoodOnesIsReportedAlone", testBatchConflictReportedAlone)
	parallelTest(t, h, "AReplayedBatchIsAlreadyRecorded", testBatchReplayAlreadyRecorded)
	parallelTest(t, h, "ARescuedAttemptIsAConflictNotAReplay", testBatchRescuedIsConflict)
	parallelTest(t, h, "AcksLandInTheCommit", testBatchAcks)
	parallelTest(t, h, "AnOwnedQueueGetsTheMessagesInTheCommit", testOwnedQueueSends)
	parallelTest(t, h, "AnUnstorableOutcomeRecordsNothing", testBatchUnstorable)
	parallelTest(t, h, "AnOutcomeWithoutAPlanIsRefused", testBatchNoPlan)
	parallelTest(t, h, "ADecisionSpawnsInABatch", testBatchSpawn)
	parallelTest(t, h, "BatchesSharingTasksSettleEachOnce", testBatchSharedTasks)
}

// batch returns the store's batched seam.
func (b *bundle) batch(t *testing.T) store.BatchStore {
	t.Helper()
	bs, ok := b.Store.(store.BatchStore)
	require.True(t, ok, "%T does not implement store.BatchStore", b.Store)
	return bs
}

// outcome returns the batched outcome of a claimed attempt, planned by the statemachine as the
// engine plans it, with outcomeParams' result or error.
func (b *bundle) outcome(t *testing.T, c *store.ClaimedStep, kind store.OutcomeKind) store.Outcome {
	t.Helper()
	return b.outcomeOf(t, b.outcomeParams(c, kind))
}

// outcomeOf is the batched form of p.
func (b *bundle) outcomeOf(t *testing.T, p store.OutcomeParams) store.Outcome {
	t.Helper()
	plan, err := statemachine.PlanOutcome(params.Attempt(p))
	require.NoError(t, err)
	return store.Outcome{TaskID: p.TaskID, StepID: p.StepID, WorkerID: p.WorkerID, Attempt: p.Attempt, Plan: plan,
		Result: p.Result, Error: p.Error, RetryDelay: p.RetryDelay, LeaseExpired: p.LeaseExpired, Spawn: p.Spawn, Namespace: p.Namespace}
}

// record records outs in one call, with the queue the store's own only where a test says so
// (recordWith), and checks that there is a record per outcome, in order.
func (b *bundle) record(t *testing.T, outs ...store.Outcome) *store.RecordOutcomesResult {
	t.Helper()
	return b.recordWith(t, store.RecordOutcomesParams{Outcomes: outs})
}

// recordWith records p in one call and checks that there is a record per outcome, in order.
func (b *bundle) recordWith(t *testing.T, p store.RecordOutcomesParams) *store.RecordOutcomesResult {
	t.Helper()
	res, err := b.batch(t).RecordOutcomes(context.Background(), p)
	require.NoError(t, err)
	require.Len(t, res.Records, len(p.Outcomes))
	for i, o := range p.Outcomes {
		require.Equal(t, o.StepID, res.Records[i].StepID, "record %d is in the outcomes' order", i)
	}
	return res
}

func statuses(res *store.RecordOutcomesResult) []store.OutcomeStatus {
	out := make([]store.OutcomeStatus, len(res.Records))
	for i, r := range res.Records {
		out[i] = r.Status
	}
	return out
}

// published returns the names of the steps in res.Publish, sorted, "+retry" on retry timers;
// each group must be in the suite's namespace.
func (b *bundle) published(t *testing.T, res *store.RecordOutcomesResult) []string {
	t.Helper()
	out := []string{}
	for _, p := range res.Publish {
		require.Equal(t, Namespace, p.Namespace)
		for _, ref := range p.Steps {
			name := b.name(ref.StepID)
			if ref.Retry {
				name += "+retry"
				require.Positive(t, p.Delay, "a retry's message waits for its backoff")
			}
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// requireGapFree checks every step's transitions of a task: sort keys 1, 2, … with each move
// starting where the previous one ended; and likewise for the task's own.
func requireGapFree(t *testing.T, b *bundle, taskID uuid.UUID) {
	t.Helper()
	trs, err := b.Store.Transitions(context.Background(), taskID)
	require.NoError(t, err)
	type at struct {
		key int
		to  string
	}
	last := map[uuid.UUID]at{}
	for _, tr := range trs {
		prev := last[tr.StepID]
		require.Equal(t, prev.key+1, tr.SortKey, "transition %s → %s of %s follows its predecessor", tr.From, tr.To, b.name(tr.StepID))
		require.Equal(t, prev.to, tr.From, "transition %s → %s of %s starts where the last ended", tr.From, tr.To, b.name(tr.StepID))
		last[tr.StepID] = at{tr.SortKey, tr.To}
	}
}

// enqueueCount counts the pending → enqueued transitions of a step.
func enqueueCount(t *testing.T, b *bundle, g graph, name string) int {
	t.Helper()
	n := 0
	for _, tr := range stepTransitions(t, b, g.task, g.id[name]) {
		if tr.To == string(statemachine.StepEnqueued) && tr.From == string(statemachine.StepPending) {
			n++
		}
	}
	return n
}

// testBatchJoinReleasedOnce completes both parents of a join in one batch, in both orders, each
// batch with a second diamond's parents too: each join is released exactly once.
func testBatchJoinReleasedOnce(t *testing.T, b *bundle) {
	for i := range 3 {
		g1, g2 := b.diamond(t), b.diamond(t)
		b.run(t, g1.id["start"])
		b.run(t, g2.id["start"])
		b.requireSent(t, "start", "start", "left", "right", "left", "right")
		outs := []store.Outcome{
			b.outcome(t, b.claim(t, g1.id["left"]), store.OutcomeSuccess),
			b.outcome(t, b.claim(t, g2.id["left"]), store.OutcomeSuccess),
			b.outcome(t, b.claim(t, g1.id["right"]), store.OutcomeSuccess),
			b.outcome(t, b.claim(t, g2.id["right"]), store.OutcomeSuccess),
		}
		if i%2 == 1 {
			slices.Reverse(outs)
		}
		res := b.record(t, outs...)
		require.Equal(t, []store.OutcomeStatus{store.Recorded, store.Recorded, store.Recorded, store.Recorded}, statuses(res))
		released := 0
		for _, r := range res.Records {
			released += r.Released
			require.Equal(t, statemachine.TaskStepsInProcess, r.TaskState)
			require.False(t, r.Settled)
		}
		require.Equal(t, 2, released, "each join is released by one of its parents")
		require.Equal(t, []string{"join", "join"}, b.published(t, res))
		b.requireSent(t) // the store sends nothing itself: the caller publishes
		for _, g := range []graph{g1, g2} {
			require.Equal(t, statemachine.StepEnqueued, b.step(t, g.task, g.id["join"]).State)
			require.Equal(t, 1, enqueueCount(t, b, g, "join"), "the join is enqueued once")
			task := b.task(t, g.task)
			require.Equal(t, [3]int{1, 1, 0}, [3]int{task.StepsUnfinished, task.StepsActive, task.StepsFailed})
			requireGapFree(t, b, g.task)
		}
	}
}

// testBatchJoinWithARunningParent: a batch holds one parent of a join whose other parent still
// runs, next to a diamond whose both parents complete: the first join stays pending, the second
// is released.
func testBatchJoinWithARunningParent(t *testing.T, b *bundle) {
	g1, g2 := b.diamond(t), b.diamond(t)
	b.run(t, g1.id["start"])
	b.run(t, g2.id["start"])
	b.requireSent(t, "start", "start", "left", "right", "left", "right")
	right1 := b.claim(t, g1.id["right"]) // still running through the batch
	res := b.record(t,
		b.outcome(t, b.claim(t, g1.id["left"]), store.OutcomeSuccess),
		b.outcome(t, b.claim(t, g2.id["left"]), store.OutcomeSuccess),
		b.outcome(t, b.claim(t, g2.id["right"]), store.OutcomeSuccess))
	require.Equal(t, []store.OutcomeStatus{store.Recorded, store.Recorded, store.Recorded}, statuses(res))
	require.Zero(t, res.Records[0].Released, "right still runs")
	require.Equal(t, []string{"join"}, b.published(t, res))
	require.Equal(t, statemachine.StepPending, b.step(t, g1.task, g1.id["join"]).State, "a join with a parent in progress stays pending")
	require.Zero(t, enqueueCount(t, b, g1, "join"))
	require.Equal(t, statemachine.StepEnqueued, b.step(t, g2.task, g2.id["join"]).State)
	task := b.task(t, g1.task)
	require.Equal(t, [2]int{2, 1}, [2]int{task.StepsUnfinished, task.StepsActive}, "right is the one active step")

	res = b.record(t, b.outcome(t, right1, store.OutcomeSuccess))
	require.Equal(t, 1, res.Records[0].Released)
	require.Equal(t, []string{"join"}, b.published(t, res))
	require.Equal(t, 1, enqueueCount(t, b, g1, "join"))
	requireGapFree(t, b, g1.task)
	requireGapFree(t, b, g2.task)
}

// mixedTasks creates the tasks of testBatchEqualsReplay, claims their roots and returns the
// outcomes to record, in order: a chain's first step succeeds, two roots of one task fail (a
// retry, then a permanent failure that blocks it), a one-step task completes, and a diamond's
// start succeeds.
func (b *bundle) mixedTasks(t *testing.T) ([]graph, []store.OutcomeParams) {
	t.Helper()
	chain := b.createGraph(t, b.newStep("a"), b.newStep("b", 0))
	fails := b.createGraph(t, b.newStep("x"), b.newStep("y"), b.newStep("z", 0, 1))
	single := b.createGraph(t, b.newStep("c"))
	dia := b.diamond(t)
	b.requireSent(t, "a", "x", "y", "c", "start")
	retry := b.outcomeParams(b.claim(t, fails.id["x"]), store.OutcomeRetry)
	retry.RetryDelay = time.Hour
	return []graph{chain, fails, single, dia}, []store.OutcomeParams{
		b.outcomeParams(b.claim(t, chain.id["a"]), store.OutcomeSuccess),
		retry,
		b.outcomeParams(b.claim(t, single.id["c"]), store.OutcomeSuccess),
		b.outcomeParams(b.claim(t, fails.id["y"]), store.OutcomePermanent),
		b.outcomeParams(b.claim(t, dia.id["start"]), store.OutcomeSuccess),
	}
}

// view is what a task came to, without its IDs and times, to compare two runs of one scenario.
type view struct {
	State                             statemachine.TaskState
	Total, Unfinished, Active, Failed int
	Steps                             map[string]string   // state, attempts, result, error
	Trail                             map[string][]string // by step ("" for the task): from, to, event, in order
}

func (b *bundle) view(t *testing.T, taskID uuid.UUID) view {
	t.Helper()
	task := b.task(t, taskID)
	v := view{State: task.State, Total: task.StepsTotal, Unfinished: task.StepsUnfinished, Active: task.StepsActive,
		Failed: task.StepsFailed, Steps: map[string]string{}}
	steps, err := b.Store.GetSteps(context.Background(), taskID)
	require.NoError(t, err)
	for _, st := range steps {
		v.Steps[st.Name] = fmt.Sprintf("%s, attempt %d, result %s, error %s", st.State, st.Attempts, st.Result, st.LastError)
	}
	trs, err := b.Store.Transitions(context.Background(), taskID)
	require.NoError(t, err)
	// Each step's and the task's own sequence: rows written in the same microsecond may
	// interleave either way across steps.
	v.Trail = map[string][]string{}
	for _, tr := range trs {
		v.Trail[tr.StepName] = append(v.Trail[tr.StepName], tr.From+" → "+tr.To+" ("+tr.Event+")")
	}
	return v
}

// testBatchEqualsReplay records outcomes of four tasks, of every kind, in one batch, and the same
// scenario one outcome at a time through RecordOutcome: the tasks, steps, audit trails, answers
// and messages are the same.
func testBatchEqualsReplay(t *testing.T, b *bundle) {
	ctx := context.Background()
	batchTasks, batchOuts := b.mixedTasks(t)
	outs := make([]store.Outcome, len(batchOuts))
	for i, p := range batchOuts {
		outs[i] = b.outcomeOf(t, p)
	}
	res := b.record(t, outs...)
	published := b.published(t, res)
	b.requireSent(t)

	replayTasks, replayOuts := b.mixedTasks(t)
	for i, p := range replayOuts {
		one, err := b.Store.RecordOutcome(ctx, p)
		require.NoError(t, err, "replay %d", i)
		rec := res.Records[i]
		require.Equal(t, store.Recorded, rec.Status, "outcome %d", i)
		require.Equal(t, [3]any{one.TaskState, one.Settled, one.Released}, [3]any{rec.TaskState, rec.Settled, rec.Released},
			"outcome %d answers as its replay does", i)
	}
	require.Equal(t, []string{"b", "left", "right", "x+retry"}, published)
	require.Equal(t, []string{"b", "left", "right"}, b.sent(t), "the replay sent the same (its retry timer is not visible for an hour)")
	for i := range batchTasks {
		require.Equal(t, b.view(t, replayTasks[i].task), b.view(t, batchTasks[i].task), "task %d", i)
		requireGapFree(t, b, batchTasks[i].task)
	}
	require.Equal(t, statemachine.TaskBlockedByFailures, b.task(t, batchTasks[1].task).State)
	require.Equal(t, statemachine.TaskComplete, b.task(t, batchTasks[2].task).State)
}

// joinTasks creates the tasks of testBatchJoinsEqualReplay and returns the outcomes to record, in
// order: a diamond's two middle steps succeed (its join is released once, by the later), and two
// running workers of a batch of four that runs two at a time finish, one succeeding and one
// failing in isolation, each giving its slot to a held sibling.
func (b *bundle) joinTasks(t *testing.T) ([]graph, []store.OutcomeParams) {
	t.Helper()
	dia := b.diamond(t)
	p := b.newStep("p")
	steps := []store.NewStep{p}
	for i, name := range []string{"w1", "w2", "w3", "w4"} {
		w := b.newStep(name, 0)
		w.Type, w.Held, w.BatchGroup, w.FailureStrategy = "batch_worker", i >= 2, p.StepID, "isolate"
		steps = append(steps, w)
	}
	steps = append(steps, b.newStep("total", 1, 2, 3, 4))
	bat := b.createGraph(t, steps...)
	b.run(t, dia.id["start"])
	b.run(t, bat.id["p"])
	b.requireSent(t, "start", "p", "left", "right", "w1", "w2")
	isolated := b.outcomeParams(b.claim(t, bat.id["w2"]), store.OutcomePermanent)
	isolated.Isolated = true
	return []graph{dia, bat}, []store.OutcomeParams{
		b.outcomeParams(b.claim(t, dia.id["left"]), store.OutcomeSuccess),
		b.outcomeParams(b.claim(t, bat.id["w1"]), store.OutcomeSuccess),
		b.outcomeParams(b.claim(t, dia.id["right"]), store.OutcomeSuccess),
		isolated,
	}
}

// testBatchJoinsEqualReplay is testBatchEqualsReplay for joins and batch slots: the outcomes of
// joinTasks in one batch, and one at a time through RecordOutcome, come to the same.
func testBatchJoinsEqualReplay(t *testing.T, b *bundle) {
	ctx := context.Background()
	batchTasks, batchOuts := b.joinTasks(t)
	outs := make([]store.Outcome, len(batchOuts))
	for i, p := range batchOuts {
		outs[i] = b.outcomeOf(t, p)
	}
	res := b.record(t, outs...)
	require.Equal(t, []store.OutcomeStatus{store.Recorded, store.Recorded, store.Recorded, store.Recorded}, statuses(res))
	require.Equal(t, []string{"join", "w3", "w4"}, b.published(t, res))
	require.Equal(t, [4]int{0, 1, 1, 1}, [4]int{res.Records[0].Released, res.Records[1].Released, res.Records[2].Released, res.Records[3].Released})

	replayTasks, replayOuts := b.joinTasks(t)
	for i, p := range replayOuts {
		one, err := b.Store.RecordOutcome(ctx, p)
		require.NoError(t, err, "replay %d", i)
		rec := res.Records[i]
		require.Equal(t, [3]any{one.TaskState, one.Settled, one.Released}, [3]any{rec.TaskState, rec.Settled, rec.Released},
			"outcome %d answers as its replay does", i)
	}
	require.Equal(t, []string{"join", "w3", "w4"}, b.sent(t))
	for i := range batchTasks {
		require.Equal(t, b.view(t, replayTasks[i].task), b.view(t, batchTasks[i].task), "task %d", i)
		requireGapFree(t, b, batchTasks[i].task)
	}
	require.Equal(t, 1, enqueueCount(t, b, batchTasks[0], "join"))
	task := b.task(t, batchTasks[1].task)
	require.Equal(t, [3]int{4, 2, 1}, [3]int{task.StepsUnfinished, task.StepsActive, task.StepsFailed}, "unfinished, active, failed")
}

// testBatchConflictReportedAlone: in one batch, a stale attempt, another worker's outcome and an
// unknown task sit between good outcomes; the good ones are recorded, the bad ones reported, and
// their steps left as they were.
func testBatchConflictReportedAlone(t *testing.T, b *bundle) {
	chain := b.createGraph(t, b.newStep("a"), b.newStep("b", 0))
	stale := b.createGraph(t, b.newStep("s"), b.newStep("s2", 0))
	other := b.createGraph(t, b.newStep("o"))
	good := b.createGraph(t, b.newStep("d"))
	b.requireSent(t, "a", "s", "o", "d")
	ca, cs, co, cd := b.claim(t, chain.id["a"]), b.claim(t, stale.id["s"]), b.claim(t, other.id["o"]), b.claim(t, good.id["d"])
	staleBefore, otherBefore := b.snapshot(t, stale.task), b.snapshot(t, other.task)

	ps := b.outcomeParams(cs, store.OutcomeSuccess)
	ps.Attempt = 2 // an attempt the worker does not hold
	po := b.outcomeParams(co, store.OutcomeSuccess)
	po.WorkerID = "w2"
	pu := b.outcomeParams(cd, store.OutcomeSuccess)
	pu.TaskID = uuid.New()
	res := b.record(t,
		b.outcome(t, ca, store.OutcomeSuccess),
		b.outcomeOf(t, ps),
		b.outcomeOf(t, pu),
		b.outcomeOf(t, po),
		b.outcome(t, cd, store.OutcomeSuccess))
	require.Equal(t, []store.OutcomeStatus{store.Recorded, store.Conflict, store.NotFound, store.Conflict, store.Recorded}, statuses(res))
	require.Equal(t, 1, res.Records[0].Released)
	require.True(t, res.Records[4].Settled)
	require.Equal(t, statemachine.TaskComplete, res.Records[4].TaskState)
	require.Equal(t, []string{"b"}, b.published(t, res), "nothing of the refused outcomes is published")
	require.Equal(t, staleBefore, b.snapshot(t, stale.task), "the stale attempt changed nothing")
	require.Equal(t, otherBefore, b.snapshot(t, other.task), "another worker's outcome changed nothing")
	require.Equal(t, statemachine.StepEnqueued, b.step(t, chain.task, chain.id["b"]).State)
	require.Equal(t, statemachine.TaskComplete, b.task(t, good.task).State)

	// The holders still record theirs.
	res = b.record(t, b.outcome(t, cs, store.OutcomeSuccess), b.outcome(t, co, store.OutcomeSuccess))
	require.Equal(t, []store.OutcomeStatus{store.Recorded, store.Recorded}, statuses(res))
	require.Equal(t, []string{"s2"}, b.published(t, res))
	for _, g := range []graph{chain, stale, other, good} {
		requireGapFree(t, b, g.task)
	}
}

// testBatchReplayAlreadyRecorded records a batch and then the same batch again, as a completer
// does when its commit's answer was lost: every outcome is AlreadyRecorded and nothing changes.
func testBatchReplayAlreadyRecorded(t *testing.T, b *bundle) {
	g := b.createGraph(t, b.newStep("a"), b.newStep("b", 0), b.newStep("x"), b.newStep("y"))
	b.requireSent(t, "a", "x", "y")
	retry := b.outcomeParams(b.claim(t, g.id["x"]), store.OutcomeRetry)
	retry.RetryDelay = time.Hour
	outs := []store.Outcome{
		b.outcome(t, b.claim(t, g.id["a"]), store.OutcomeSuccess),
		b.outcomeOf(t, retry),
		b.outcome(t, b.claim(t, g.id["y"]), store.OutcomePermanent),
	}
	res := b.record(t, outs...)
	require.Equal(t, []store.OutcomeStatus{store.Recorded, store.Recorded, store.Recorded}, statuses(res))
	require.Equal(t, []string{"b", "x+retry"}, b.published(t, res))
	before := b.snapshot(t, g.task)
	res = b.record(t, outs...)
	require.Equal(t, []store.OutcomeStatus{store.AlreadyRecorded, store.AlreadyRecorded, store.AlreadyRecorded}, statuses(res))
	require.Empty(t, b.published(t, res))
	require.Equal(t, before, b.snapshot(t, g.task), "a replay changes nothing")

	// Another outcome of the same attempt did not land: that is a conflict.
	op := b.outcomeParams(&store.ClaimedStep{Step: b.step(t, g.task, g.id["y"]), Task: b.task(t, g.task)}, store.OutcomeSuccess)
	op.WorkerID, op.Attempt = worker, 1
	res = b.record(t, b.outcomeOf(t, op))
	require.Equal(t, []store.OutcomeStatus{store.Conflict}, statuses(res), "y failed; its success did not land")
}

// testBatchRescuedIsConflict: the rescuer settles an expired attempt in a batch; the worker's late
// outcome of that attempt, even a retry like the rescuer's, is a conflict, not a replay.
func testBatchRescuedIsConflict(t *testing.T, b *bundle) {
	g := b.createGraph(t, b.newStep("a"), b.newStep("b"))
	b.requireSent(t, "a", "b")
	ca := b.claimAs(t, g.id["a"], worker, 100*time.Millisecond)
	cb := b.claim(t, g.id["b"])
	time.Sleep(200 * time.Millisecond)
	rescue := b.outcomeParams(ca, store.OutcomeRetry)
	rescue.Error, rescue.LeaseExpired, rescue.RetryDelay = json.RawMessage(`{"message": "lease expired", "kind": "lease_expired"}`), true, time.Hour
	live := b.outcomeParams(cb, store.OutcomeRetry)
	live.LeaseExpired = true // b's lease runs: the rescuer may not take it
	res := b.record(t, b.outcomeOf(t, rescue), b.outcomeOf(t, live))
	require.Equal(t, []store.OutcomeStatus{store.Recorded, store.Conflict}, statuses(res))
	require.Equal(t, []string{"a+retry"}, b.published(t, res))

	late := b.outcomeParams(ca, store.OutcomeRetry)
	late.RetryDelay = time.Hour
	res = b.record(t, b.outcome(t, ca, store.OutcomeSuccess), b.outcomeOf(t, late), b.outcomeOf(t, rescue))
	require.Equal(t, []store.OutcomeStatus{store.Conflict, store.Conflict, store.AlreadyRecorded}, statuses(res))
	require.Equal(t, statemachine.StepInProgress, b.step(t, g.task, g.id["b"]).State)
}

// readIDs reads the namespace's visible messages, hiding them for vt, and returns their IDs by
// step name.
func (b *bundle) readIDs(t *testing.T, vt time.Duration) map[string]int64 {
	t.Helper()
	msgs, err := b.Queue.Read(context.Background(), Namespace, 100, vt)
	require.NoError(t, err)
	ids := map[string]int64{}
	for _, m := range msgs {
		var p message
		require.NoError(t, json.Unmarshal(m.Payload, &p))
		ids[b.name(p.StepID)] = m.ID
	}
	return ids
}

// testBatchAcks records outcomes with their messages: a store that owns the queue deletes them in
// the commit, whatever each outcome's status, when told the queue is its own; any other leaves
// them to the caller, so they come back when their visibility ends.
func testBatchAcks(t *testing.T, b *bundle) {
	g := b.createGraph(t, b.newStep("a"), b.newStep("b"), b.newStep("c"))
	const vt = 300 * time.Millisecond
	ids := b.readIDs(t, vt)
	require.Len(t, ids, 3)
	ca, cb := b.claim(t, g.id["a"]), b.claim(t, g.id["b"])
	stale := b.outcome(t, cb, store.OutcomeSuccess)
	stale.Attempt = 2
	outs := []store.Outcome{b.outcome(t, ca, store.OutcomeSuccess), stale}
	outs[0].MessageID, outs[1].MessageID = ids["a"], ids["b"]
	res := b.recordWith(t, store.RecordOutcomesParams{Outcomes: outs, OwnedQueue: b.caps.OwnsQueue})
	require.Equal(t, []store.OutcomeStatus{store.Recorded, store.Conflict}, statuses(res))
	time.Sleep(vt + 100*time.Millisecond)
	if b.caps.OwnsQueue {
		require.True(t, res.Records[0].Acked && res.Records[1].Acked, "both messages are spent")
		b.requireSent(t, "c")
		return
	}
	require.False(t, res.Records[0].Acked || res.Records[1].Acked, "the store does not own the queue")
	b.requireSent(t, "a", "b", "c")
}

// recordOwned records outs with the queue the store's own: their messages are sent in the commit.
func (b *bundle) recordOwned(t *testing.T, outs ...store.Outcome) *store.RecordOutcomesResult {
	t.Helper()
	res := b.recordWith(t, store.RecordOutcomesParams{Outcomes: outs, OwnedQueue: true})
	require.Empty(t, res.Publish, "the store sends the messages of its own queue")
	return res
}

// testOwnedQueueSends: with the queue the store's own, a batch's released steps' messages are
// sent visible in its commit, with their handlers, and a retry's timer delayed by its backoff;
// Publish is empty and the outcomes' messages are deleted.
func testOwnedQueueSends(t *testing.T, b *bundle) {
	if !b.caps.OwnsQueue {
		t.Skip("the store does not own its queue: the caller publishes")
	}
	g := b.diamond(t)
	x := b.createGraph(t, b.newStep("x"))
	b.run(t, g.id["start"])
	ids := b.readIDs(t, time.Minute)
	require.Len(t, ids, 4, "start's message, left, right and x")
	cl, cr, cx := b.claim(t, g.id["left"]), b.claim(t, g.id["right"]), b.claim(t, x.id["x"])
	retry := b.outcome(t, cx, store.OutcomeRetry)
	retry.RetryDelay, retry.MessageID = 300*time.Millisecond, ids["x"]
	left, right := b.outcome(t, cl, store.OutcomeSuccess), b.outcome(t, cr, store.OutcomeSuccess)
	left.MessageID, right.MessageID = ids["left"], ids["right"]
	res := b.recordOwned(t, left, retry, right)
	require.Equal(t, []store.OutcomeStatus{store.Recorded, store.Recorded, store.Recorded}, statuses(res))
	for _, r := range res.Records {
		require.True(t, r.Acked)
	}
	msgs, err := b.Queue.Read(context.Background(), Namespace, 10, time.Minute)
	require.NoError(t, err)
	require.Len(t, msgs, 1, "the join, visible at once; the retry waits for its backoff")
	var m message
	require.NoError(t, json.Unmarshal(msgs[0].Payload, &m))
	require.Equal(t, message{TaskID: g.task, StepID: g.id["join"], TaskName: "t", Version: "1", Step: "join", Handler: "h_join"}, m)
	require.NoError(t, b.Queue.Ack(context.Background(), Namespace, msgs[0].ID))
	time.Sleep(400 * time.Millisecond)
	b.requireSent(t, "x+retry")
	require.NoError(t, b.Queue.Ack(context.Background(), Namespace, ids["start"]))
	b.requireSent(t)
}

// testBatchUnstorable: one outcome whose result the database refuses fails the whole call, which
// records nothing and acks nothing.
func testBatchUnstorable(t *testing.T, b *bundle) {
	ctx := context.Background()
	g := b.createGraph(t, b.newStep("a"), b.newStep("a2", 0), b.newStep("b"))
	const vt = 300 * time.Millisecond
	ids := b.readIDs(t, vt)
	ca, cb := b.claim(t, g.id["a"]), b.claim(t, g.id["b"])
	before := b.snapshot(t, g.task)
	bad := b.outcome(t, cb, store.OutcomeSuccess)
	bad.Result = json.RawMessage(`{"v": "\u0000"}`)
	outs := []store.Outcome{b.outcome(t, ca, store.OutcomeSuccess), bad}
	outs[0].MessageID, outs[1].MessageID = ids["a"], ids["b"]
	_, err := b.batch(t).RecordOutcomes(ctx, store.RecordOutcomesParams{Outcomes: outs})
	require.Error(t, err)
	require.Equal(t, before, b.snapshot(t, g.task), "nothing of the batch was recorded")
	time.Sleep(vt + 100*time.Millisecond)
	b.requireSent(t, "a", "b")
	res := b.record(t, outs[0])
	require.Equal(t, []store.OutcomeStatus{store.Recorded}, statuses(res), "the good outcome alone records")
}

func testBatchNoPlan(t *testing.T, b *bundle) {
	g := b.createGraph(t, b.newStep("a"))
	b.requireSent(t, "a")
	o := b.outcome(t, b.claim(t, g.id["a"]), store.OutcomeSuccess)
	o.Plan = statemachine.OutcomePlan{}
	before := b.snapshot(t, g.task)
	_, err := b.batch(t).RecordOutcomes(context.Background(), store.RecordOutcomesParams{Outcomes: []store.Outcome{o}})
	require.ErrorContains(t, err, "no plan")
	require.Equal(t, before, b.snapshot(t, g.task))
	res := b.record(t)
	require.Empty(t, res.Records, "an empty batch records nothing")
	require.Empty(t, res.Publish)
}

package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

// TestCreateTaskClaimsItsRoot: with ClaimRoot, the creation's own transaction claims the root for
// the worker (same transaction: the step's row version has the task's row's xmin), its message sent
// held, so that no claim from the queue sees it before the lease ends; the outcome acks it. A
// ClaimRoot naming a step that is not an enqueued root, a scheduled task, or a creation in the
// caller's transaction claims nothing and sends the root's message as usual.
func TestCreateTaskClaimsItsRoot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newRig(t)
	p := r.shapedParams(t, nil, []int{0})
	root, child := p.Steps[0].StepID, p.Steps[1].StepID
	p.ClaimRoot = &store.ClaimRootParams{StepID: root, WorkerID: "creator", Lease: time.Minute}
	var res *store.CreateTaskResult
	require.Equal(t, 1, r.count(func() {
		var err error
		res, err = r.s.CreateTask(ctx, nil, p)
		require.NoError(t, err)
	}), "the claim rides in the creation's one round trip")
	require.NotNil(t, res.Claimed)
	c := res.Claimed
	require.Equal(t, root, c.Step.ID)
	require.Equal(t, statemachine.StepInProgress, c.Step.State)
	require.Equal(t, "creator", c.Step.LeaseOwner)
	require.Equal(t, 1, c.Step.Attempts)
	require.Equal(t, p.TaskID, c.Task.ID)
	require.NotZero(t, c.MessageID)
	var sameTx bool
	require.NoError(t, r.s.pool.QueryRow(ctx, r.s.q(`SELECT s.xmin::text = t.xmin::text FROM {s}.steps s JOIN {s}.tasks t USING (task_id)
		 WHERE s.step_id = $1`), root).Scan(&sameTx))
	require.True(t, sameTx, "claimed in the creation's transaction")
	var events []string
	rows, err := r.s.pool.Query(ctx, r.s.q(`SELECT event FROM {s}.step_transitions WHERE step_id = $1 ORDER BY sort_key`), root)
	require.NoError(t, err)
	for rows.Next() {
		var ev string
		require.NoError(t, rows.Scan(&ev))
		events = append(events, ev)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []string{"create", "enqueue", "start"}, events)
	require.Empty(t, r.claimAll(t, 10, "h_s0", "h_s1"), "the held message is hidden for the lease")

	out := outcome(t, store.ClaimedMessage{ClaimedStep: c.ClaimedStep, MessageID: c.MessageID}, statemachine.OutcomeSuccess)
	rec, err := r.s.RecordOutcomes(ctx, store.RecordOutcomesParams{Outcomes: []store.Outcome{out}, OwnedQueue: true})
	require.NoError(t, err)
	require.Equal(t, store.Recorded, rec.Records[0].Status)
	var left int
	require.NoError(t, r.s.pool.QueryRow(ctx, r.s.q(`SELECT count(*) FROM {s}.queue_messages WHERE payload->>'step_id' = $1`), root.String()).Scan(&left))
	require.Zero(t, left, "the outcome acked the held message")
	next := r.claimAll(t, 10, "h_s0", "h_s1")
	require.Len(t, next, 1)
	require.Equal(t, child, next[0].Step.ID)

	t.Run("not an enqueued root", func(t *testing.T) {
		p := r.shapedParams(t, nil, []int{0})
		p.ClaimRoot = &store.ClaimRootParams{StepID: p.Steps[1].StepID, WorkerID: "creator", Lease: time.Minute}
		res, err := r.s.CreateTask(ctx, nil, p)
		require.NoError(t, err)
		require.Nil(t, res.Claimed)
		claimed := r.claimAll(t, 10, "h_s0", "h_s1")
		require.Len(t, claimed, 1, "the root's message was sent as usual")
		require.Equal(t, p.Steps[0].StepID, claimed[0].Step.ID)
	})
	t.Run("scheduled", func(t *testing.T) {
		p := r.shapedParams(t, nil, []int{0})
		p.RunAt = time.Now().Add(time.Hour)
		p.ClaimRoot = &store.ClaimRootParams{StepID: p.Steps[0].StepID, WorkerID: "creator", Lease: time.Minute}
		res, err := r.s.CreateTask(ctx, nil, p)
		require.NoError(t, err)
		require.Nil(t, res.Claimed)
		require.Equal(t, statemachine.StepWaitingForRetry, res.Steps[0].State)
	})
	t.Run("in the caller's transaction", func(t *testing.T) {
		p := r.shapedParams(t, nil, []int{0})
		p.ClaimRoot = &store.ClaimRootParams{StepID: p.Steps[0].StepID, WorkerID: "creator", Lease: time.Minute}
		tx, err := r.s.pool.Begin(ctx)
		require.NoError(t, err)
		res, err := r.s.CreateTask(ctx, tx, p)
		require.NoError(t, err)
		require.NoError(t, tx.Commit(ctx))
		require.Nil(t, res.Claimed)
		claimed := r.claimAll(t, 10, "h_s0", "h_s1")
		require.Len(t, claimed, 1)
		require.Equal(t, p.Steps[0].StepID, claimed[0].Step.ID)
	})
}

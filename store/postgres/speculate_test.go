package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

// batchEnqueuer sends step messages on the store's own queue within the outcome's pipeline, as
// the engine's enqueuer does on PostgreSQL.
type batchEnqueuer struct{ q *Queue }

func (e batchEnqueuer) docs(refs []store.StepRef) [][]byte {
	out := make([][]byte, len(refs))
	for i, r := range refs {
		out[i], _ = json.Marshal(r.Message())
	}
	return out
}

func (e batchEnqueuer) EnqueueTx(ctx context.Context, tx pgx.Tx, ns string, refs []store.StepRef, delay time.Duration) error {
	return e.q.SendTx(ctx, tx, ns, e.docs(refs), delay)
}

func (e batchEnqueuer) EnqueueBatch(b *pgx.Batch, ns string, refs []store.StepRef, delay time.Duration) (bool, error) {
	if b == nil || len(refs) == 0 {
		return true, nil
	}
	return true, e.q.QueueSend(b, ns, e.docs(refs), delay)
}

// shapedParams is a task of the given shape (parents by index) on the rig's namespace, its
// template in the registry, its roots on the store's own queue.
func (r *rig) shapedParams(tb testing.TB, shape ...[]int) store.CreateTaskParams {
	tb.Helper()
	require.NoError(tb, r.s.RegisterTemplate(context.Background(), store.RegisterTemplateParams{Namespace: rigNS, Name: "t",
		Version: "1", Definition: json.RawMessage(`{}`), Checksum: "c"}))
	p := store.CreateTaskParams{TaskID: uuid.Must(uuid.NewV7()), Namespace: rigNS, Name: "t", Version: "1",
		Context: json.RawMessage(`{}`), IdentityHash: uuid.NewString(), OwnedQueue: true}
	for k, parents := range shape {
		name := fmt.Sprintf("s%d", k)
		p.Steps = append(p.Steps, store.NewStep{StepID: uuid.Must(uuid.NewV7()), Name: name, TemplateStep: name, Handler: "h_" + name,
			Type: "standard", MaxAttempts: 3, Retryable: true, Backoff: "none", Timeout: time.Second, Parents: parents})
	}
	return p
}

// single is the single-step outcome of a claimed attempt, on the pipelined path.
func (r *rig) single(tb testing.TB, c store.ClaimedMessage, kind store.OutcomeKind) store.OutcomeParams {
	tb.Helper()
	p := store.OutcomeParams{TaskID: c.Task.ID, StepID: c.Step.ID, WorkerID: c.Step.LeaseOwner, Attempt: c.Step.Attempts,
		Kind: kind, Namespace: rigNS, Enqueuer: batchEnqueuer{r.s.Queue()}, RetryDelay: time.Hour}
	if kind == store.OutcomeSuccess {
		p.Result = json.RawMessage(`{"ok": true}`)
	} else {
		p.Error = json.RawMessage(`{"message": "boom"}`)
	}
	return p
}

// TestOutcomeInOneTrip: the outcomes of a task this store created, whose counters only this store
// changed, commit in one round trip (speculate.go), and leave what the two-trip path leaves: the
// step moved, its child released and sent, the counters, the task's path to complete. When the
// store's knowledge is stale (another store recorded a sibling's outcome, or cancelled the task),
// the server's checks roll the trip back and the outcome goes the two-trip way, with the same
// result it would have had.
func TestOutcomeInOneTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newRig(t)

	t.Run("chain", func(t *testing.T) {
		p := r.shapedParams(t, nil, []int{0})
		_, err := r.s.CreateTask(ctx, nil, p)
		require.NoError(t, err)
		for k := range 2 {
			claimed := r.claimAll(t, 10, "h_s0", "h_s1")
			require.Len(t, claimed, 1)
			require.Equal(t, p.Steps[k].StepID, claimed[0].Step.ID)
			var res *store.OutcomeResult
			require.Equal(t, 1, r.count(func() {
				res, err = r.s.RecordOutcome(ctx, r.single(t, claimed[0], store.OutcomeSuccess))
				require.NoError(t, err)
			}), "step %d: one round trip", k)
			want := statemachine.TaskStepsInProcess
			if k == 1 {
				want = statemachine.TaskComplete
			}
			require.Equal(t, want, res.TaskState)
			require.Equal(t, k == 1, res.Settled)
		}
		task, err := r.s.GetTask(ctx, p.TaskID)
		require.NoError(t, err)
		require.Equal(t, statemachine.TaskComplete, task.State)
		require.Zero(t, task.StepsUnfinished)
		require.Zero(t, task.StepsActive)
		trs, err := r.s.Transitions(ctx, p.TaskID)
		require.NoError(t, err)
		var events []string
		for _, tr := range trs {
			if tr.StepID == uuid.Nil {
				events = append(events, tr.Event)
			}
		}
		require.Equal(t, []string{"create", "start", "initialized", "steps_enqueued", "evaluate", "all_steps_complete"}, events)
	})

	t.Run("retry", func(t *testing.T) {
		p := r.shapedParams(t, nil)
		_, err := r.s.CreateTask(ctx, nil, p)
		require.NoError(t, err)
		claimed := r.claimAll(t, 10, "h_s0")
		require.Len(t, claimed, 1)
		require.Equal(t, 1, r.count(func() {
			res, err := r.s.RecordOutcome(ctx, r.single(t, claimed[0], store.OutcomeRetry))
			require.NoError(t, err)
			require.Equal(t, statemachine.TaskWaitingForRetry, res.TaskState)
		}))
		steps, err := r.s.GetSteps(ctx, p.TaskID)
		require.NoError(t, err)
		require.Equal(t, statemachine.StepWaitingForRetry, steps[0].State)
	})

	t.Run("a sibling recorded elsewhere", func(t *testing.T) {
		other := New(r.s.pool, WithSchema(r.s.schema)) // another process on the same database
		p := r.shapedParams(t, nil, []int{0}, []int{0})
		_, err := r.s.CreateTask(ctx, nil, p)
		require.NoError(t, err)
		root := r.claimAll(t, 10, "h_s0", "h_s1", "h_s2")
		require.Len(t, root, 1)
		_, err = r.s.RecordOutcome(ctx, r.single(t, root[0], store.OutcomeSuccess))
		require.NoError(t, err)
		kids := r.claimAll(t, 10, "h_s0", "h_s1", "h_s2")
		require.Len(t, kids, 2)
		_, err = other.RecordOutcome(ctx, r.single(t, kids[0], store.OutcomeSuccess))
		require.NoError(t, err)
		var res *store.OutcomeResult
		require.Greater(t, r.count(func() {
			res, err = r.s.RecordOutcome(ctx, r.single(t, kids[1], store.OutcomeSuccess))
			require.NoError(t, err)
		}), 1, "the stale trip failed its check and the outcome took the two-trip path")
		require.Equal(t, statemachine.TaskComplete, res.TaskState)
		task, err := r.s.GetTask(ctx, p.TaskID)
		require.NoError(t, err)
		require.Equal(t, statemachine.TaskComplete, task.State)
		require.Zero(t, task.StepsActive)
	})

	t.Run("cancelled elsewhere", func(t *testing.T) {
		other := New(r.s.pool, WithSchema(r.s.schema))
		p := r.shapedParams(t, nil, []int{0})
		_, err := r.s.CreateTask(ctx, nil, p)
		require.NoError(t, err)
		claimed := r.claimAll(t, 10, "h_s0", "h_s1")
		require.Len(t, claimed, 1)
		_, err = other.CancelTask(ctx, store.CancelTaskParams{TaskID: p.TaskID, Reason: "test"})
		require.NoError(t, err)
		_, err = r.s.RecordOutcome(ctx, r.single(t, claimed[0], store.OutcomeSuccess))
		require.True(t, errors.Is(err, store.ErrConflict), "got %v", err)
		task, err := r.s.GetTask(ctx, p.TaskID)
		require.NoError(t, err)
		require.Equal(t, statemachine.TaskCancelled, task.State)
		steps, err := r.s.GetSteps(ctx, p.TaskID)
		require.NoError(t, err)
		for _, st := range steps {
			require.Equal(t, statemachine.StepCancelled, st.State, st.Name)
		}
	})
}

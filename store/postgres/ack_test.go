package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/queue"
	"github.com/tasker-systems/tasker/store"
	"github.com/tasker-systems/tasker/store/postgres"
)

// sendEnqueuer sends step IDs on the store's queue in the store's transaction, pipelined when it can.
type sendEnqueuer struct{ q *postgres.Queue }

func (e sendEnqueuer) payloads(steps []store.StepRef) [][]byte {
	out := make([][]byte, len(steps))
	for i, s := range steps {
		out[i], _ = json.Marshal(map[string]string{"step_id": s.StepID.String()})
	}
	return out
}

func (e sendEnqueuer) EnqueueTx(ctx context.Context, tx pgx.Tx, ns string, steps []store.StepRef, delay time.Duration) error {
	return e.q.SendTx(ctx, tx, ns, e.payloads(steps), delay)
}

func (e sendEnqueuer) EnqueueBatch(b *pgx.Batch, ns string, steps []store.StepRef, delay time.Duration) (bool, error) {
	return true, e.q.QueueSend(b, ns, e.payloads(steps), delay)
}

// TestOutcomeAcksInItsTransaction: on the pipelined outcome path, AckBatch removes the step's
// message in the transaction that records the outcome (OutcomeResult.Acked); when it fails,
// nothing is recorded and the message stays.
func TestOutcomeAcksInItsTransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.New(t)
	st := postgres.New(db.Pool, postgres.WithSchema(db.Schema))
	q := postgres.NewQueue(db.Pool, postgres.WithQueueSchema(db.Schema))
	enq := sendEnqueuer{q}
	create := func() (uuid.UUID, uuid.UUID) {
		task, step := uuid.Must(uuid.NewV7()), uuid.Must(uuid.NewV7())
		_, err := st.CreateTask(ctx, nil, store.CreateTaskParams{
			TaskID: task, Namespace: "ns", Name: "t", Version: "1", Context: json.RawMessage(`{}`), IdentityHash: task.String(),
			Enqueuer: enq,
			Template: &store.RegisterTemplateParams{Namespace: "ns", Name: "t", Version: "1", Definition: json.RawMessage(`{}`), Checksum: "c"},
			Steps: []store.NewStep{{StepID: step, Name: "a", TemplateStep: "a", Handler: "h", Type: "standard",
				MaxAttempts: 1, Backoff: "none", Timeout: time.Second}},
		})
		require.NoError(t, err)
		return task, step
	}
	readOne := func() queue.Message {
		msgs, err := q.Read(ctx, "ns", 1, time.Minute)
		require.NoError(t, err)
		require.Len(t, msgs, 1)
		return msgs[0]
	}
	remaining := func() int {
		var n int
		require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM `+db.Schema+`.queue_messages`).Scan(&n))
		return n
	}
	outcome := func(task, step uuid.UUID, ack func(*pgx.Batch) error) (*store.OutcomeResult, error) {
		return st.RecordOutcome(ctx, store.OutcomeParams{TaskID: task, StepID: step, WorkerID: "w", Attempt: 1,
			Kind: store.OutcomeSuccess, Result: json.RawMessage(`1`), Namespace: "ns", Enqueuer: enq, AckBatch: ack})
	}

	task, step := create()
	m := readOne()
	_, err := st.ClaimStep(ctx, store.ClaimStepParams{StepID: step, WorkerID: "w", Lease: time.Minute})
	require.NoError(t, err)
	_, err = outcome(task, step, func(*pgx.Batch) error { return errors.New("no ack today") })
	require.ErrorContains(t, err, "no ack today")
	steps, err := st.GetSteps(ctx, task)
	require.NoError(t, err)
	require.Equal(t, "in_progress", string(steps[0].State), "nothing recorded")
	require.Equal(t, 1, remaining())

	res, err := outcome(task, step, func(b *pgx.Batch) error { return q.QueueAck(b, "ns", m.ID) })
	require.NoError(t, err)
	require.True(t, res.Acked)
	require.Equal(t, 0, remaining(), "acked in the outcome's transaction")

	// Without AckBatch the message stays for the caller to ack.
	task2, step2 := create()
	readOne()
	_, err = st.ClaimStep(ctx, store.ClaimStepParams{StepID: step2, WorkerID: "w", Lease: time.Minute})
	require.NoError(t, err)
	res, err = outcome(task2, step2, nil)
	require.NoError(t, err)
	require.False(t, res.Acked)
	require.Equal(t, 1, remaining())
}

// holdEnqueuer is sendEnqueuer that can also hold a claimed step's message (ClaimNext).
func (e sendEnqueuer) hold(b *pgx.Batch, ns string, ref store.StepRef, lease time.Duration, id *int64) (bool, error) {
	return true, e.q.QueueSendHeld(b, ns, e.payloads([]store.StepRef{ref})[0], lease, id)
}

// TestOutcomeClaimsTheNextStep: with ClaimNext, the outcome that releases steps claims one of them
// for the same worker in its transaction: in_progress under the worker's lease, with its ancestors'
// results and a message held by the worker (hidden, read once); the other released steps are
// enqueued with visible messages; the audit trail stays a legal path. Only a step the worker
// accepts (ClaimNextParams.Accept) is claimed.
func TestOutcomeClaimsTheNextStep(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.New(t)
	st := postgres.New(db.Pool, postgres.WithSchema(db.Schema))
	q := postgres.NewQueue(db.Pool, postgres.WithQueueSchema(db.Schema))
	enq := sendEnqueuer{q}

	// A worker that accepts none of the released steps claims nothing: both are enqueued.
	task, ids, msg := forkTask(t, st, q, enq)
	res, err := st.RecordOutcome(ctx, store.OutcomeParams{TaskID: task, StepID: ids["a"], WorkerID: "w", Attempt: 1,
		Kind: store.OutcomeSuccess, Result: json.RawMessage(`7`), Namespace: "ns", Enqueuer: enq,
		AckBatch: func(b *pgx.Batch) error { return q.QueueAck(b, "ns", msg.ID) },
		ClaimNext: &store.ClaimNextParams{Lease: time.Minute, Hold: enq.hold,
			Accept: func(string, store.StepRef) bool { return false }}})
	require.NoError(t, err)
	require.Nil(t, res.Next)
	visible, err := q.Read(ctx, "ns", 10, time.Minute)
	require.NoError(t, err)
	require.Len(t, visible, 2, "both released steps' messages are visible")
	require.NoError(t, q.Ack(ctx, "ns", visible[0].ID, visible[1].ID))

	// One that accepts only c claims c.
	task, ids, msg = forkTask(t, st, q, enq)
	res, err = st.RecordOutcome(ctx, store.OutcomeParams{TaskID: task, StepID: ids["a"], WorkerID: "w", Attempt: 1,
		Kind: store.OutcomeSuccess, Result: json.RawMessage(`7`), Namespace: "ns", Enqueuer: enq,
		AckBatch: func(b *pgx.Batch) error { return q.QueueAck(b, "ns", msg.ID) },
		ClaimNext: &store.ClaimNextParams{Lease: time.Minute, Hold: enq.hold,
			Accept: func(_ string, ref store.StepRef) bool { return ref.Name == "c" }}})
	require.NoError(t, err)
	require.NotNil(t, res.Next)
	require.Equal(t, ids["c"], res.Next.Step.ID)
	visible, err = q.Read(ctx, "ns", 10, time.Minute)
	require.NoError(t, err)
	require.Len(t, visible, 1)
	require.Contains(t, string(visible[0].Payload), ids["b"].String())
	require.NoError(t, q.Ack(ctx, "ns", visible[0].ID))

	// Any step: one is claimed, the other enqueued.
	task, ids, msg = forkTask(t, st, q, enq)
	res, err = st.RecordOutcome(ctx, store.OutcomeParams{TaskID: task, StepID: ids["a"], WorkerID: "w", Attempt: 1,
		Kind: store.OutcomeSuccess, Result: json.RawMessage(`7`), Namespace: "ns", Enqueuer: enq,
		AckBatch:  func(b *pgx.Batch) error { return q.QueueAck(b, "ns", msg.ID) },
		ClaimNext: &store.ClaimNextParams{Lease: time.Minute, Hold: enq.hold}})
	require.NoError(t, err)
	require.Equal(t, 2, res.Released)
	require.NotNil(t, res.Next)
	next := res.Next
	require.Contains(t, []uuid.UUID{ids["b"], ids["c"]}, next.Step.ID)
	require.Equal(t, "in_progress", string(next.Step.State))
	require.Equal(t, "w", next.Step.LeaseOwner)
	require.Equal(t, 1, next.Step.Attempts)
	require.Equal(t, task, next.Task.ID)
	require.JSONEq(t, `{"a": 7}`, mustJSON(t, next.Results))
	other := ids["b"]
	if next.Step.ID == ids["b"] {
		other = ids["c"]
	}

	visible, err = q.Read(ctx, "ns", 10, time.Minute)
	require.NoError(t, err)
	require.Len(t, visible, 1, "only the other released step's message is visible")
	require.Contains(t, string(visible[0].Payload), other.String())
	// The held message exists, hidden, read once: the worker extends and acks it as its own.
	require.NoError(t, q.Extend(ctx, "ns", next.MessageID, time.Minute))
	var readCount int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT read_ct FROM `+db.Schema+`.queue_messages WHERE msg_id = $1`, next.MessageID).Scan(&readCount))
	require.Equal(t, 1, readCount)
	_, err = st.ClaimStep(ctx, store.ClaimStepParams{StepID: next.Step.ID, WorkerID: "x", Lease: time.Minute})
	require.ErrorIs(t, err, store.ErrConflict, "another delivery of it is dropped")

	trs, err := st.Transitions(ctx, task)
	require.NoError(t, err)
	var path []string
	for _, tr := range trs {
		if tr.StepID == next.Step.ID {
			path = append(path, tr.To)
		}
	}
	require.Equal(t, []string{"pending", "enqueued", "in_progress"}, path)
}

// forkTask creates a task a -> (b, c), reads a's message and claims a for worker "w".
func forkTask(t *testing.T, st *postgres.Store, q *postgres.Queue, enq sendEnqueuer) (uuid.UUID, map[string]uuid.UUID, queue.Message) {
	t.Helper()
	ctx := context.Background()
	task := uuid.Must(uuid.NewV7())
	ids := map[string]uuid.UUID{}
	var steps []store.NewStep
	for i, name := range []string{"a", "b", "c"} {
		ids[name] = uuid.Must(uuid.NewV7())
		ns := store.NewStep{StepID: ids[name], Name: name, TemplateStep: name, Handler: "h", Type: "standard",
			MaxAttempts: 1, Backoff: "none", Timeout: time.Second}
		if i > 0 {
			ns.Parents = []int{0}
		}
		steps = append(steps, ns)
	}
	_, err := st.CreateTask(ctx, nil, store.CreateTaskParams{
		TaskID: task, Namespace: "ns", Name: "t", Version: "1", Context: json.RawMessage(`{}`), IdentityHash: task.String(),
		Enqueuer: enq, Steps: steps,
		Template: &store.RegisterTemplateParams{Namespace: "ns", Name: "t", Version: "1", Definition: json.RawMessage(`{}`), Checksum: "c"},
	})
	require.NoError(t, err)
	msgs, err := q.Read(ctx, "ns", 10, time.Minute)
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	_, err = st.ClaimStep(ctx, store.ClaimStepParams{StepID: ids["a"], WorkerID: "w", Lease: time.Minute})
	require.NoError(t, err)
	return task, ids, msgs[0]
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

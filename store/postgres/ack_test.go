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
	"github.com/tasker-systems/tasker/queue/pgqueue"
	"github.com/tasker-systems/tasker/store"
	"github.com/tasker-systems/tasker/store/postgres"
)

// sendEnqueuer sends step IDs on a pgqueue in the store's transaction, pipelined when it can.
type sendEnqueuer struct{ q *pgqueue.Queue }

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
	q := pgqueue.New(db.Pool, pgqueue.WithSchema(db.Schema))
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

package memory

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestJSONBMatchesPostgres: the documents come back as PostgreSQL 15 prints them (each expected
// value is psql's output for `SELECT '<input>'::jsonb`).
func TestJSONBMatchesPostgres(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, want string }{
		{`{"b":1,"a":2,"aa":3,"B":4,"ab":[1,2,{"z":null,"y":true}]}`, `{"B": 4, "a": 2, "b": 1, "aa": 3, "ab": [1, 2, {"y": true, "z": null}]}`},
		{`[1.0, 1.50, 1e2, 1.5e1, 1.50e1, 1e-2, 0.001e1, 123e-5, -0, -0.0, 12.5e-1, 1E+2, 0.0, 100, -1.25e3, 5e0, 0.5, 1e20, 2.500e-2]`,
			`[1.0, 1.50, 100, 15, 15.0, 0.01, 0.01, 0.00123, 0, 0.0, 1.25, 100, 0.0, 100, -1250, 5, 0.5, 100000000000000000000, 0.02500]`},
		{`"é\n\t\b\f\r\u001f\u007f\u2028 \\ \" / \/ <>&"`, "\"é\\n\\t\\b\\f\\r\\u001f\u007f\u2028 \\\\ \\\" / / <>&\""},
		{`{"n":1,"n":2}`, `{"n": 2}`},
		{` { "a" : [ ] , "b" : { } } `, `{"a": [], "b": {}}`},
		{`12345678901234567890.12345678901234567890`, `12345678901234567890.12345678901234567890`},
		{`"\ud83d\ude00"`, `"😀"`},
		{`"x"`, `"x"`},
		{`null`, `null`},
	}
	for _, tc := range cases {
		got, err := jsonb([]byte(tc.in))
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, string(got), tc.in)
	}
	got, err := jsonb(nil)
	require.NoError(t, err)
	require.Nil(t, got, "no document is SQL NULL")
}

func TestJSONBRefusesWhatPostgresRefuses(t *testing.T) {
	t.Parallel()
	for _, in := range []string{`{"a":`, `{} {}`, `"nul \u0000"`, `{"k\u0000": 1}`, `1e999999`, `nope`} {
		_, err := jsonb([]byte(in))
		require.Error(t, err, in)
	}
}

// failEnqueuer refuses every send, as a queue that cannot take a message would.
type failEnqueuer struct{}

func (failEnqueuer) EnqueueTx(context.Context, pgx.Tx, string, []store.StepRef, time.Duration) error {
	return errors.New("queue unavailable")
}

// okEnqueuer records its calls.
type okEnqueuer struct{ refs *[]store.StepRef }

func (e okEnqueuer) EnqueueTx(_ context.Context, _ pgx.Tx, _ string, refs []store.StepRef, _ time.Duration) error {
	*e.refs = append(*e.refs, refs...)
	return nil
}

func newStep(name string, parents ...int) store.NewStep {
	return store.NewStep{StepID: uuid.Must(uuid.NewV7()), Name: name, TemplateStep: name, Handler: name, Type: "standard",
		MaxAttempts: 3, Retryable: true, Backoff: "none", Timeout: time.Second, Parents: parents}
}

func createParams(q store.Enqueuer, steps ...store.NewStep) store.CreateTaskParams {
	return store.CreateTaskParams{TaskID: uuid.Must(uuid.NewV7()), Namespace: "ns", Name: "t", Version: "1",
		Context: json.RawMessage(`{}`), IdentityHash: "h", Steps: steps, Enqueuer: q,
		Template: &store.RegisterTemplateParams{Namespace: "ns", Name: "t", Version: "1", Definition: json.RawMessage(`{}`), Checksum: "c"}}
}

func TestAFailedOperationChangesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := New()

	// A creation whose root cannot be enqueued leaves no task, no identity, no template row.
	_, err := s.CreateTask(ctx, nil, createParams(failEnqueuer{}, newStep("a"), newStep("b", 0)))
	require.ErrorContains(t, err, "queue unavailable")
	require.Empty(t, s.tasks)
	require.Empty(t, s.steps)
	require.Empty(t, s.identities)
	require.Empty(t, s.templates)
	require.NoError(t, checkInvariants(s))

	var sent []store.StepRef
	res, err := s.CreateTask(ctx, nil, createParams(okEnqueuer{&sent}, newStep("a"), newStep("b", 0)))
	require.NoError(t, err)
	require.False(t, res.Duplicate, "the identity was free again")
	require.Len(t, sent, 1)
	taskID, aID := res.Task.ID, sent[0].StepID
	claimed, err := s.ClaimStep(ctx, store.ClaimStepParams{StepID: aID, WorkerID: "w", Lease: time.Minute})
	require.NoError(t, err)
	before, err := s.Transitions(ctx, taskID)
	require.NoError(t, err)

	outcome := store.OutcomeParams{TaskID: taskID, StepID: aID, WorkerID: "w", Attempt: claimed.Step.Attempts,
		Kind: store.OutcomeSuccess, Result: json.RawMessage(`1`), Namespace: "ns", Enqueuer: failEnqueuer{}}
	_, err = s.RecordOutcome(ctx, outcome)
	require.ErrorContains(t, err, "queue unavailable", "the released child could not be enqueued")
	outcome.Enqueuer = okEnqueuer{&sent}
	outcome.BeforeCommit = func(context.Context, pgx.Tx) error { return errors.New("ack failed") }
	_, err = s.RecordOutcome(ctx, outcome)
	require.ErrorContains(t, err, "ack failed")

	after, err := s.Transitions(ctx, taskID)
	require.NoError(t, err)
	require.Equal(t, before, after)
	steps, err := s.GetSteps(ctx, taskID)
	require.NoError(t, err)
	require.Equal(t, statemachine.StepInProgress, steps[0].State)
	require.Nil(t, steps[0].Result)
	require.Equal(t, statemachine.StepPending, steps[1].State)
	task, err := s.GetTask(ctx, taskID)
	require.NoError(t, err)
	require.Equal(t, 2, task.StepsUnfinished)
	require.Equal(t, 1, task.StepsActive)
	require.NoError(t, checkInvariants(s))

	outcome.BeforeCommit = nil
	res2, err := s.RecordOutcome(ctx, outcome)
	require.NoError(t, err, "the attempt is still held: it can be recorded")
	require.Equal(t, 1, res2.Released)
	require.NoError(t, checkInvariants(s))
}

func TestCreateTaskRefusesACallersTransaction(t *testing.T) {
	t.Parallel()
	type fakeTx struct{ pgx.Tx }
	s := New()
	_, err := s.CreateTask(context.Background(), fakeTx{}, createParams(nil, newStep("a")))
	require.ErrorIs(t, err, ErrNoTransactions)
	require.Empty(t, s.tasks)
}

func TestAnEndedContextWritesNothing(t *testing.T) {
	t.Parallel()
	s := New()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.CreateTask(ctx, nil, createParams(nil, newStep("a")))
	require.ErrorIs(t, err, context.Canceled)
	_, err = s.GetTask(ctx, uuid.New())
	require.ErrorIs(t, err, context.Canceled)
	require.Empty(t, s.tasks)
}

func TestTimesHavePostgresPrecision(t *testing.T) {
	t.Parallel()
	s := New()
	res, err := s.CreateTask(context.Background(), nil, createParams(nil, newStep("a")))
	require.NoError(t, err)
	require.Equal(t, res.Task.CreatedAt, res.Task.CreatedAt.Truncate(time.Microsecond))
	require.Equal(t, []string{}, res.Task.Tags, "no tags reads as an empty list, as from text[]")
	trs, err := s.Transitions(context.Background(), res.Task.ID)
	require.NoError(t, err)
	for i := 1; i < len(trs); i++ {
		require.False(t, trs[i].CreatedAt.Before(trs[i-1].CreatedAt))
	}
}

func TestReadsShareNothingWithTheStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := New()
	p := createParams(nil, newStep("a"))
	p.Tags = []string{"x"}
	res, err := s.CreateTask(ctx, nil, p)
	require.NoError(t, err)
	res.Task.Context[0] = '['
	res.Task.Tags[0] = "changed"
	got, err := s.GetTask(ctx, res.Task.ID)
	require.NoError(t, err)
	require.Equal(t, `{}`, string(got.Context))
	require.Equal(t, []string{"x"}, got.Tags)
}

// TestSpawnCountsAParentNamedTwiceOnce: a plan that names a parent twice (a batch outcome whose
// cursors repeat a batch ID plans the same worker twice) adds one edge, counted once, and the
// child runs. store/postgres counts such a parent twice in parents_unfinished, so that its child
// is never released; this store does not copy that.
func TestSpawnCountsAParentNamedTwiceOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := New()
	var sent []store.StepRef
	decide := newStep("decide")
	decide.Type = "decision"
	res, err := s.CreateTask(ctx, nil, createParams(okEnqueuer{&sent}, decide))
	require.NoError(t, err)
	claimed, err := s.ClaimStep(ctx, store.ClaimStepParams{StepID: decide.StepID, WorkerID: "w", Lease: time.Minute})
	require.NoError(t, err)
	x := newStep("x")
	x.Parents, x.ParentNames = nil, []string{"decide", "decide"}
	out, err := s.RecordOutcome(ctx, store.OutcomeParams{TaskID: res.Task.ID, StepID: decide.StepID, WorkerID: "w",
		Attempt: claimed.Step.Attempts, Kind: store.OutcomeSuccess, Result: json.RawMessage(`{}`), Namespace: "ns",
		Enqueuer: okEnqueuer{&sent}, Spawn: &store.SpawnPlan{Steps: []store.NewStep{x, x}}})
	require.NoError(t, err)
	require.Equal(t, 1, out.Released)
	require.Equal(t, statemachine.TaskStepsInProcess, out.TaskState)
	require.Equal(t, "x", sent[len(sent)-1].Name)
	require.NoError(t, checkInvariants(s))
}

// TestCancelWithAnIsolatedFailure: a task holding an isolated failure can be cancelled; the
// isolated counter is cleared with the failed one (it once was not, and the cancel was refused).
func TestCancelWithAnIsolatedFailure(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := New()
	var sent []store.StepRef
	w1, w2 := newStep("w1"), newStep("w2")
	group := uuid.Must(uuid.NewV7())
	for _, w := range []*store.NewStep{&w1, &w2} {
		w.Type, w.BatchGroup, w.FailureStrategy = "batch_worker", group, "isolate"
	}
	res, err := s.CreateTask(ctx, nil, createParams(okEnqueuer{&sent}, w1, w2))
	require.NoError(t, err)
	claimed, err := s.ClaimStep(ctx, store.ClaimStepParams{StepID: w1.StepID, WorkerID: "w", Lease: time.Minute})
	require.NoError(t, err)
	_, err = s.RecordOutcome(ctx, store.OutcomeParams{TaskID: res.Task.ID, StepID: w1.StepID, WorkerID: "w",
		Attempt: claimed.Step.Attempts, Kind: store.OutcomePermanent, Error: json.RawMessage(`{}`), Isolated: true})
	require.NoError(t, err)
	_, err = s.CancelTask(ctx, store.CancelTaskParams{TaskID: res.Task.ID})
	require.NoError(t, err)
	task, err := s.GetTask(ctx, res.Task.ID)
	require.NoError(t, err)
	require.Equal(t, statemachine.TaskCancelled, task.State)
	require.NoError(t, checkInvariants(s))
}

func TestExpiredStepsOldestFirstWithinLimit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := New()
	a, b, c := newStep("a"), newStep("b"), newStep("c")
	_, err := s.CreateTask(ctx, nil, createParams(nil, a, b, c))
	require.NoError(t, err)
	for i, st := range []store.NewStep{c, a, b} {
		_, err := s.ClaimStep(ctx, store.ClaimStepParams{StepID: st.StepID, WorkerID: "w", Lease: time.Duration(i+1) * time.Millisecond})
		require.NoError(t, err)
	}
	time.Sleep(10 * time.Millisecond)
	ex, err := s.ExpiredSteps(ctx, store.ExpiredStepsParams{Limit: 2})
	require.NoError(t, err)
	require.Len(t, ex, 2)
	require.Equal(t, []string{"c", "a"}, []string{ex[0].Name, ex[1].Name})
	require.Equal(t, "ns", ex[0].Namespace)
}

func TestDefaultQueueIsTheStoresOwn(t *testing.T) {
	t.Parallel()
	s := New()
	require.Same(t, s.DefaultQueue(), s.DefaultQueue(), "every engine on the store shares its queue")
	require.NotSame(t, s.DefaultQueue(), New().DefaultQueue())
}

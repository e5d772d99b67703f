package storetest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

func testCreateTask(t *testing.T, h Harness) {
	parallelTest(t, h, "RecordsTaskStepsAndTransitions", testCreateRecordsTaskStepsAndTransitions)
	parallelTest(t, h, "EnqueuesEveryRootAndOnlyRoots", testCreateEnqueuesEveryRootAndOnlyRoots)
	parallelTest(t, h, "KeepsTheTasksAttributes", testCreateKeepsTheTasksAttributes)
	parallelTest(t, h, "DuplicateIdentityReturnsTheExistingTask", testCreateDuplicateIdentityReturnsTheExistingTask)
	parallelTest(t, h, "ConcurrentDuplicatesCreateOneTask", testCreateConcurrentDuplicatesCreateOneTask)
	parallelTest(t, h, "RefusesATaskWithoutRoot", testCreateRefusesATaskWithoutRoot)
	parallelTest(t, h, "FailedEnqueueWritesNothing", testCreateFailedEnqueueWritesNothing)

	testCreateTaskTx(t, h)
}

// testCreateTaskTx covers CreateTask with a caller's transaction.
func testCreateTaskTx(t *testing.T, h Harness) {
	withTx := func(name string, fn func(*testing.T, *bundle)) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if !h.Capabilities.Transactions {
				t.Skip("the backend has no transactions (Capabilities.Transactions)")
			}
			fn(t, setup(t, h))
		})
	}
	withTx("CallerTransactionCommits", testCreateCallerTransactionCommits)
	withTx("CallerTransactionRollsBack", testCreateCallerTransactionRollsBack)
	withTx("FailureLeavesCallerTransactionUsable", testCreateFailureLeavesCallerTransactionUsable)
	t.Run("CallerTransactionRefused", func(t *testing.T) {
		t.Parallel()
		if h.Capabilities.Transactions {
			t.Skip("the backend joins a caller's transaction (Capabilities.Transactions)")
		}
		b := setup(t, h)
		p := b.createParams(b.newStep("a"))
		_, err := b.Store.CreateTask(context.Background(), unusableTx{}, p)
		require.ErrorIs(t, err, h.ErrNoTransactions)
		requireNoTasks(t, b)
		b.requireSent(t)
	})
}

// unusableTx is a caller's transaction that a backend without transactions must refuse without
// touching (any call panics).
type unusableTx struct{ pgx.Tx }

func requireNoTasks(t *testing.T, b *bundle) {
	t.Helper()
	tasks, err := b.Store.ListTasks(context.Background(), store.ListTasksParams{})
	require.NoError(t, err)
	require.Empty(t, tasks)
}

func testCreateRecordsTaskStepsAndTransitions(t *testing.T, b *bundle) {
	ctx := context.Background()
	p := b.createParams(b.newStep("start"), b.newStep("left", 0), b.newStep("right", 0), b.newStep("join", 1, 2))
	res, err := b.Store.CreateTask(ctx, nil, p)
	require.NoError(t, err)
	require.False(t, res.Duplicate)
	task := res.Task
	require.Equal(t, p.TaskID, task.ID)
	require.Equal(t, statemachine.TaskStepsInProcess, task.State)
	require.Equal(t, []string{Namespace, "t", "1", p.IdentityHash}, []string{task.Namespace, task.Name, task.Version, task.IdentityHash})
	require.JSONEq(t, `{"order": 7}`, string(task.Context))
	require.Equal(t, [4]int{4, 4, 1, 0}, [4]int{task.StepsTotal, task.StepsUnfinished, task.StepsActive, task.StepsFailed},
		"total, unfinished, active, failed")
	require.Nil(t, task.CompletedAt)
	require.Equal(t, task, b.task(t, task.ID), "GetTask reads what CreateTask returned")

	steps, err := b.Store.GetSteps(ctx, task.ID)
	require.NoError(t, err)
	require.Len(t, steps, 4)
	require.Equal(t, steps, res.Steps, "CreateTask returns the steps it wrote, as GetSteps reads them")
	for i, st := range steps {
		want := p.Steps[i]
		require.Equal(t, want.StepID, st.ID, "steps in creation order")
		require.Equal(t, task.ID, st.TaskID)
		require.Equal(t, []string{want.Name, want.TemplateStep, want.Handler, want.Type, want.Backoff},
			[]string{st.Name, st.TemplateStep, st.Handler, st.Type, st.Backoff})
		require.Equal(t, want.MaxAttempts, st.MaxAttempts)
		require.Equal(t, want.Timeout, st.Timeout)
		require.Zero(t, st.Attempts)
		require.Empty(t, st.LeaseOwner)
		require.Nil(t, st.StartedAt)
	}
	require.Equal(t, map[string]statemachine.StepState{"start": "enqueued", "left": "pending", "right": "pending", "join": "pending"},
		b.states(t, task.ID))

	trs, err := b.Store.Transitions(ctx, task.ID)
	require.NoError(t, err)
	paths := map[string][]string{}
	for _, tr := range trs {
		k := "task"
		if tr.StepID != uuid.Nil {
			k = tr.StepName
		}
		paths[k] = append(paths[k], tr.From+">"+tr.To+":"+tr.Event)
	}
	require.Equal(t, map[string][]string{
		"task":  {">pending:create", "pending>initializing:start", "initializing>enqueuing_steps:initialized", "enqueuing_steps>steps_in_process:steps_enqueued"},
		"start": {">pending:create", "pending>enqueued:enqueue"},
		"left":  {">pending:create"},
		"right": {">pending:create"},
		"join":  {">pending:create"},
	}, paths)
	b.requireSent(t, "start")
}

func testCreateEnqueuesEveryRootAndOnlyRoots(t *testing.T, b *bundle) {
	g := b.createGraph(t, b.newStep("a"), b.newStep("b"), b.newStep("c", 0, 1))
	b.requireSent(t, "a", "b")
	require.Equal(t, 2, b.task(t, g.task).StepsActive)
	_, err := b.Store.ClaimStep(context.Background(), store.ClaimStepParams{StepID: g.id["c"], WorkerID: worker, Lease: time.Minute})
	require.ErrorIs(t, err, store.ErrConflict, "a step with parents is not enqueued")
}

func testCreateKeepsTheTasksAttributes(t *testing.T, b *bundle) {
	st := b.newStep("a")
	group := uuid.Must(uuid.NewV7())
	st.Inputs, st.Type, st.BatchGroup, st.FailureStrategy = json.RawMessage(`{"cursor": 3}`), "batch_worker", group, "fail_fast"

	st.Backoff, st.BackoffBase, st.MaxBackoff, st.MaxAttempts, st.Retryable = "exponential", 1500*time.Millisecond, 30*time.Second, 5, false
	p := b.createParams(st)
	p.Priority, p.CorrelationID, p.IdempotencyKey, p.Tags = 4, "corr-1", "idem-1", []string{"x", "y"}
	p.Initiator, p.SourceSystem, p.Reason = "ana@example.com", "billing", "monthly run ✓"
	res, err := b.Store.CreateTask(context.Background(), nil, p)
	require.NoError(t, err)
	got := b.task(t, res.Task.ID)
	require.Equal(t, got, res.Task, "CreateTask returns what GetTask reads")
	require.Equal(t, 4, got.Priority)
	require.Equal(t, "corr-1", got.CorrelationID)
	require.Equal(t, "idem-1", got.IdempotencyKey)
	require.Equal(t, []string{"x", "y"}, got.Tags)
	require.Equal(t, []string{"ana@example.com", "billing", "monthly run ✓"}, []string{got.Initiator, got.SourceSystem, got.Reason})
	listed, err := b.Store.ListTasks(context.Background(), store.ListTasksParams{})
	require.NoError(t, err)
	require.Len(t, listed, 1)
	require.Equal(t, got, listed[0], "ListTasks reads every attribute")
	s := b.step(t, got.ID, st.StepID)
	require.JSONEq(t, `{"cursor": 3}`, string(s.Inputs))
	require.Equal(t, []any{"exponential", 1500 * time.Millisecond, 30 * time.Second, 5, false},
		[]any{s.Backoff, s.BackoffBase, s.MaxBackoff, s.MaxAttempts, s.Retryable})
	require.Equal(t, []any{"batch_worker", &group, "fail_fast"}, []any{s.Type, s.BatchGroup, s.FailureStrategy})

	bare, err := b.Store.CreateTask(context.Background(), nil, b.createParams(b.newStep("a")))
	require.NoError(t, err)
	require.Empty(t, bare.Task.Tags)
	require.Empty(t, bare.Task.CorrelationID)
	require.Empty(t, bare.Task.IdempotencyKey)
	require.Empty(t, bare.Task.Initiator+bare.Task.SourceSystem+bare.Task.Reason)
}

func testCreateDuplicateIdentityReturnsTheExistingTask(t *testing.T, b *bundle) {
	ctx := context.Background()
	first := b.createParams(b.newStep("a"))
	res, err := b.Store.CreateTask(ctx, nil, first)
	require.NoError(t, err)
	b.requireSent(t, "a")

	again := b.createParams(b.newStep("other"))
	again.IdentityHash = first.IdentityHash
	dup, err := b.Store.CreateTask(ctx, nil, again)
	require.NoError(t, err)
	require.True(t, dup.Duplicate)
	require.Equal(t, res.Task.ID, dup.Task.ID)
	require.Equal(t, "t", dup.Task.Name)
	require.Equal(t, res.Steps, dup.Steps, "the existing task's steps")
	// A duplicate's steps are read as found, not as created.
	b.run(t, first.Steps[0].StepID)
	dup, err = b.Store.CreateTask(ctx, nil, again)
	require.NoError(t, err)
	require.True(t, dup.Duplicate)
	require.Len(t, dup.Steps, 1)
	require.Equal(t, statemachine.StepComplete, dup.Steps[0].State)
	b.requireSent(t)
	b.requireSent(t) // nothing new
	_, err = b.Store.GetTask(ctx, again.TaskID)
	require.ErrorIs(t, err, store.ErrNotFound)
	names, err := b.Store.StepNames(ctx, res.Task.ID)
	require.NoError(t, err)
	require.Equal(t, []string{"a"}, names)

	// The identity belongs to the template: another template may use the same hash.
	other := b.createParams(b.newStep("b"))
	other.IdentityHash, other.Name = first.IdentityHash, "t2"
	other.Template.Name = "t2"
	res2, err := b.Store.CreateTask(ctx, nil, other)
	require.NoError(t, err)
	require.False(t, res2.Duplicate)
	require.Equal(t, other.TaskID, res2.Task.ID)
	b.requireSent(t, "b")
}

func testCreateConcurrentDuplicatesCreateOneTask(t *testing.T, b *bundle) {
	const n = 8
	hash := uuid.NewString()
	params := make([]store.CreateTaskParams, n)
	for i := range params {
		params[i] = b.createParams(b.newStep("a"), b.newStep("b", 0))
		params[i].IdentityHash = hash
	}
	results := make([]*store.CreateTaskResult, n)
	errs := make([]error, n)
	parallel(n, func(i int) {
		results[i], errs[i] = b.Store.CreateTask(context.Background(), nil, params[i])
	})
	var winner uuid.UUID
	created := 0
	for i := range n {
		require.NoError(t, errs[i])
		if !results[i].Duplicate {
			created++
			winner = params[i].TaskID
			require.Equal(t, winner, results[i].Task.ID)
		}
	}
	require.Equal(t, 1, created, "exactly one creation wins")
	for i := range n {
		require.Equal(t, winner, results[i].Task.ID, "every duplicate returns the winner")
	}
	require.Equal(t, []string{"a"}, b.sent(t), "only the winner's root is enqueued")
	tasks, err := b.Store.ListTasks(context.Background(), store.ListTasksParams{})
	require.NoError(t, err)
	require.Len(t, tasks, 1)
}

func testCreateRefusesATaskWithoutRoot(t *testing.T, b *bundle) {
	a := b.newStep("a")
	a.Parents = []int{1}
	_, err := b.Store.CreateTask(context.Background(), nil, b.createParams(a, b.newStep("b", 0)))
	require.Error(t, err)
	requireNoTasks(t, b)
	b.requireSent(t)
}

func testCreateFailedEnqueueWritesNothing(t *testing.T, b *bundle) {
	ctx := context.Background()
	p := b.createParams(b.newStep("a"), b.newStep("b", 0))
	p.Enqueuer = failingEnqueuer{}
	_, err := b.Store.CreateTask(ctx, nil, p)
	require.ErrorIs(t, err, errQueueDown)
	requireNoTasks(t, b)
	_, err = b.Store.GetTask(ctx, p.TaskID)
	require.ErrorIs(t, err, store.ErrNotFound)

	p.Enqueuer = b.enq
	res, err := b.Store.CreateTask(ctx, nil, p)
	require.NoError(t, err)
	require.False(t, res.Duplicate, "the identity is free again")
	b.requireSent(t, "a")
}

func testCreateCallerTransactionCommits(t *testing.T, b *bundle) {
	ctx := context.Background()
	tx, err := b.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	p := b.createParams(b.newStep("a"), b.newStep("b", 0))
	res, err := b.Store.CreateTask(ctx, tx, p)
	require.NoError(t, err)
	require.Len(t, res.Steps, 2, "the steps written in the caller's transaction")
	require.Equal(t, []statemachine.StepState{statemachine.StepEnqueued, statemachine.StepPending},
		[]statemachine.StepState{res.Steps[0].State, res.Steps[1].State})
	_, err = b.Store.GetTask(ctx, p.TaskID)
	require.ErrorIs(t, err, store.ErrNotFound, "not visible before the caller commits")
	b.requireSent(t)
	require.NoError(t, tx.Commit(ctx))
	require.Equal(t, statemachine.TaskStepsInProcess, b.task(t, p.TaskID).State)
	b.requireSent(t, "a")
}

func testCreateCallerTransactionRollsBack(t *testing.T, b *bundle) {
	ctx := context.Background()
	tx, err := b.Begin(ctx)
	require.NoError(t, err)
	p := b.createParams(b.newStep("a"))
	_, err = b.Store.CreateTask(ctx, tx, p)
	require.NoError(t, err)
	require.NoError(t, tx.Rollback(ctx))
	_, err = b.Store.GetTask(ctx, p.TaskID)
	require.ErrorIs(t, err, store.ErrNotFound)
	requireNoTasks(t, b)
	b.requireSent(t)
	p.TaskID = uuid.Must(uuid.NewV7())
	res, err := b.Store.CreateTask(ctx, nil, p)
	require.NoError(t, err)
	require.False(t, res.Duplicate, "the rolled-back identity is free")
}

func testCreateFailureLeavesCallerTransactionUsable(t *testing.T, b *bundle) {
	ctx := context.Background()
	tx, err := b.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	bad := b.createParams(b.newStep("a"))
	bad.Enqueuer = failingEnqueuer{}
	_, err = b.Store.CreateTask(ctx, tx, bad)
	require.ErrorIs(t, err, errQueueDown)
	good := b.createParams(b.newStep("b"))
	_, err = b.Store.CreateTask(ctx, tx, good)
	require.NoError(t, err, "the failed creation did not abort the caller's transaction")
	require.NoError(t, tx.Commit(ctx))
	_, err = b.Store.GetTask(ctx, bad.TaskID)
	require.ErrorIs(t, err, store.ErrNotFound)
	b.task(t, good.TaskID)
	b.requireSent(t, "b")
}

// Package storetest is the conformance suite of tasker's persistence seam: every behaviour the
// engine relies on from a store.Store, as subtests that each implementation runs against itself.
//
// A backend's test hands Run a Harness that opens a fresh, isolated store for each subtest, with
// the queue its enqueues go to:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, storetest.Harness{
//			New: func(t *testing.T) storetest.Backend {
//				db := testdb.New(t)
//				s := postgres.New(db.Pool, postgres.WithSchema(db.Schema))
//				return storetest.Backend{
//					Store: s,
//					Queue: s.Queue(),
//					Begin: func(ctx context.Context) (pgx.Tx, error) { return db.Pool.Begin(ctx) },
//				}
//			},
//			Capabilities: storetest.Capabilities{Transactions: true},
//		})
//	}
//
// The suite's own store.Enqueuer sends each StepRef as a JSON message on Backend.Queue, in the
// store's transaction (Queue.SendTx), the way the engine does; tests read the queue to check
// exactly which steps got a message. Its batch flavour is a store.BatchEnqueuer, so that a store
// that pipelines its sends (store/postgres with its own queue) is tested on that path too.
//
// The batched seam (store.BatchStore: ClaimMany, RecordOutcomes) runs on every store too. Its
// outcomes send nothing themselves: the suite checks the Publish lists they return, and the acks of
// a store that owns its queue (Capabilities.OwnsQueue).
//
// Subtests run in parallel, each on its own store, and keep their leases, TTLs and backoffs
// between 100 and 500 milliseconds, so that the whole suite runs in seconds. What a backend cannot
// do (Capabilities) is skipped with the reason.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/queue"
	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

// Harness connects Run to one backend.
type Harness struct {
	// New returns a new, empty store for one subtest, isolated from every other subtest's (its
	// own schema, its own memory), and registers whatever it must close with t.Cleanup. Subtests
	// call it in parallel.
	New func(t *testing.T) Backend

	// Capabilities says what the backend can do beyond the seam's common contract.
	Capabilities Capabilities

	// ErrNoTransactions is, for a backend without Capabilities.Transactions, the error (matched
	// with errors.Is) that CreateTask returns when given a caller's pgx.Tx. Required then.
	ErrNoTransactions error
}

// Backend is one subtest's store and what comes with it.
type Backend struct {
	// Store is the store under test, empty.
	Store store.Store
	// Queue receives the suite's enqueues: the messages of the steps the store enqueues, sent with
	// SendTx inside the store's transaction. Nobody else reads it.
	Queue queue.Queue
	// Begin starts a transaction that CreateTask can join; nil when the backend has none.
	Begin func(ctx context.Context) (pgx.Tx, error)
}

// Capabilities are the optional behaviours of a backend. The tests of a missing one are skipped.
type Capabilities struct {
	// Transactions means the store's writes can join a caller's transaction: CreateTask with a
	// pgx.Tx from Backend.Begin commits or rolls back with it, and OutcomeParams.BeforeCommit gets
	// the store's own pgx.Tx, so that what it writes there commits only with the outcome.
	Transactions bool
	// OwnsQueue means Backend.Queue's messages are the store's own rows: the store is a
	// store.QueueOwner that owns Backend.Queue and a store.QueueClaimer, and RecordOutcomes with
	// RecordOutcomesParams.OwnedQueue sends the messages it enqueues, holds a handed-over step's
	// and deletes each Outcome.MessageID in its commit (OutcomeRecord.Acked). Without it, the
	// caller publishes and acks, and the ClaimFromQueue tests are skipped.
	OwnsQueue bool
}

// Namespace is the namespace of every task the suite creates, and so the name of the queue its
// messages go to.
const Namespace = "ns"

// Run runs the conformance suite against h's backend, one parallel subtest per behaviour.
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.New == nil {
		t.Fatal("storetest: Harness.New is nil")
	}
	if !h.Capabilities.Transactions && h.ErrNoTransactions == nil {
		t.Fatal("storetest: a backend without Transactions must name the error CreateTask returns for a caller's transaction (Harness.ErrNoTransactions)")
	}
	groups := []struct {
		name string
		run  func(*testing.T, Harness)
	}{
		{"RegisterTemplate", testRegisterTemplate},
		{"CreateTask", testCreateTask},
		{"ClaimStep", testClaimStep},
		{"RecordOutcome", testRecordOutcome},
		{"RecordOutcomes", testRecordOutcomes},
		{"ClaimMany", testClaimMany},
		{"ClaimFromQueue", testClaimFromQueue},
		{"Handoff", testHandoff},
		{"HeartbeatMany", testHeartbeatMany},
		{"ReleaseSteps", testReleaseSteps},
		{"PromoteRetries", testPromoteRetries},
		{"Retry", testRetry},
		{"Permanent", testPermanent},
		{"Atomicity", testAtomicity},
		{"ReleaseStep", testReleaseStep},
		{"Heartbeat", testHeartbeat},
		{"CancelTask", testCancelTask},
		{"Leases", testLeases},
		{"StaleSteps", testStaleSteps},
		{"Leadership", testLeadership},
		{"Transitions", testTransitions},
		{"Reads", testReads},
		{"SaveCheckpoint", testSaveCheckpoint},
		{"Spawn", testSpawn},
		{"EndedContext", testEndedContext},
		{"DeadLetters", testDeadLetters},
		{"Inspector", testInspector},
		{"History", testHistory},
		{"Flow", testFlow}, // flow.go: scheduled starts, signals
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			g.run(t, h)
		})
	}
}

// bundle is one subtest's store, queue and helpers.
type bundle struct {
	Backend
	caps Capabilities
	enq  store.Enqueuer // the suite's Enqueuer (batch flavour unless a test chooses)

	mu    sync.Mutex
	names map[uuid.UUID]string // step names, for readable queue checks
}

// setup opens a fresh backend for one subtest.
func setup(t *testing.T, h Harness) *bundle {
	t.Helper()
	be := h.New(t)
	require.NotNil(t, be.Store, "Harness.New returned no store")
	require.NotNil(t, be.Queue, "Harness.New returned no queue")
	if h.Capabilities.Transactions {
		require.NotNil(t, be.Begin, "a backend with Transactions needs Backend.Begin")
	}
	if h.Capabilities.OwnsQueue {
		owner, ok := be.Store.(store.QueueOwner)
		require.True(t, ok && owner.OwnsQueue(be.Queue), "a backend with OwnsQueue owns Backend.Queue (store.QueueOwner)")
		_, ok = be.Store.(store.QueueClaimer)
		require.True(t, ok, "a backend with OwnsQueue is a store.QueueClaimer")
	}
	return &bundle{Backend: be, caps: h.Capabilities, enq: batchEnqueuer{enqueuer{be.Queue}}, names: map[uuid.UUID]string{}}
}

// enqueuerFlavours are the two ways a store may send: EnqueueTx, and a batch it pipelines.
var enqueuerFlavours = []struct {
	name string
	new  func(q queue.Queue) store.Enqueuer
}{
	{"EnqueueTx", func(q queue.Queue) store.Enqueuer { return enqueuer{q} }},
	{"EnqueueBatch", func(q queue.Queue) store.Enqueuer { return batchEnqueuer{enqueuer{q}} }},
}

// forEachEnqueuer runs fn as two parallel subtests, each on its own store, one per enqueuer
// flavour.
func forEachEnqueuer(t *testing.T, h Harness, fn func(t *testing.T, b *bundle)) {
	t.Helper()
	for _, f := range enqueuerFlavours {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, h)
			b.enq = f.new(b.Queue)
			fn(t, b)
		})
	}
}

// message is the payload the suite's enqueuers send, as the engine does (and a store that owns
// its queue).
type message = store.StepMessage

func payloads(refs []store.StepRef) ([][]byte, error) {
	out := make([][]byte, len(refs))
	for i, r := range refs {
		b, err := json.Marshal(r.Message())
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

// enqueuer sends each StepRef as a message on the queue named by the namespace, inside the
// store's transaction.
type enqueuer struct{ q queue.Queue }

func (e enqueuer) EnqueueTx(ctx context.Context, tx pgx.Tx, ns string, refs []store.StepRef, delay time.Duration) error {
	ps, err := payloads(refs)
	if err != nil {
		return err
	}
	return e.q.SendTx(ctx, tx, ns, ps, delay)
}

// batchEnqueuer joins the store's pipelined batch when the queue can (queue.BatchSender), as the
// engine's enqueuer does.
type batchEnqueuer struct{ enqueuer }

func (e batchEnqueuer) EnqueueBatch(b *pgx.Batch, ns string, refs []store.StepRef, delay time.Duration) (bool, error) {
	bs, ok := e.q.(queue.BatchSender)
	if !ok {
		return false, nil
	}
	ps, err := payloads(refs)
	if err != nil {
		return true, err
	}
	return true, bs.QueueSend(b, ns, ps, delay)
}

// errQueueDown is what failing enqueuers return.
var errQueueDown = errors.New("storetest: queue unavailable")

// failingEnqueuer refuses every send, as a queue that cannot take a message would.
type failingEnqueuer struct{}

func (failingEnqueuer) EnqueueTx(context.Context, pgx.Tx, string, []store.StepRef, time.Duration) error {
	return errQueueDown
}

// failingBatchEnqueuer refuses every send on the pipelined path.
type failingBatchEnqueuer struct{ failingEnqueuer }

func (failingBatchEnqueuer) EnqueueBatch(_ *pgx.Batch, _ string, refs []store.StepRef, _ time.Duration) (bool, error) {
	if refs == nil {
		return true, nil // the store's probe: yes, this enqueuer batches
	}
	return true, errQueueDown
}

// sent reads and acks every visible message on the namespace's queue and returns their steps'
// names, sorted, with "+retry" on retry timers.
func (b *bundle) sent(t *testing.T) []string {
	t.Helper()
	ctx := context.Background()
	out := []string{}
	for {
		msgs, err := b.Queue.Read(ctx, Namespace, 100, time.Hour)
		require.NoError(t, err)
		if len(msgs) == 0 {
			break
		}
		ids := make([]int64, len(msgs))
		for i, m := range msgs {
			var p message
			require.NoError(t, json.Unmarshal(m.Payload, &p), "payload %s", m.Payload)
			name := b.name(p.StepID)
			if p.Retry {
				name += "+retry"
			}
			out = append(out, name)
			ids[i] = m.ID
		}
		require.NoError(t, b.Queue.Ack(ctx, Namespace, ids...))
	}
	slices.Sort(out)
	return out
}

// requireSent checks that exactly the named steps got a message since the last check.
func (b *bundle) requireSent(t *testing.T, want ...string) {
	t.Helper()
	want = append([]string{}, want...)
	slices.Sort(want)
	require.Equal(t, want, b.sent(t), "steps sent to the queue")
}

func (b *bundle) name(id uuid.UUID) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if n, ok := b.names[id]; ok {
		return n
	}
	return "?" + id.String()
}

// newStep returns a standard step named name whose parents are the given indices.
func (b *bundle) newStep(name string, parents ...int) store.NewStep {
	id := uuid.Must(uuid.NewV7())
	b.mu.Lock()
	b.names[id] = name
	b.mu.Unlock()
	return store.NewStep{StepID: id, Name: name, TemplateStep: name, Handler: "h_" + name, Type: "standard",
		MaxAttempts: 3, Retryable: true, Backoff: "none", Timeout: time.Second, Parents: parents}
}

// spawnStep returns a step for a SpawnPlan, whose parents are named.
func (b *bundle) spawnStep(name string, parents ...string) store.NewStep {
	st := b.newStep(name)
	st.ParentNames = parents
	return st
}

// createParams returns the parameters of a new task of template ns/t@1 with a fresh identity.
func (b *bundle) createParams(steps ...store.NewStep) store.CreateTaskParams {
	return store.CreateTaskParams{TaskID: uuid.Must(uuid.NewV7()), Namespace: Namespace, Name: "t", Version: "1",
		Context: json.RawMessage(`{"order": 7}`), IdentityHash: uuid.NewString(), Steps: steps, Enqueuer: b.enq,
		Template: &store.RegisterTemplateParams{Namespace: Namespace, Name: "t", Version: "1", Definition: json.RawMessage(`{}`), Checksum: "c1"}}
}

// create creates a task and returns its ID.
func (b *bundle) create(t *testing.T, steps ...store.NewStep) uuid.UUID {
	t.Helper()
	res, err := b.Store.CreateTask(context.Background(), nil, b.createParams(steps...))
	require.NoError(t, err)
	require.False(t, res.Duplicate)
	return res.Task.ID
}

// graph is a created task and its steps' IDs by name.
type graph struct {
	task uuid.UUID
	id   map[string]uuid.UUID
}

// createGraph creates a task of steps and indexes them by name.
func (b *bundle) createGraph(t *testing.T, steps ...store.NewStep) graph {
	t.Helper()
	g := graph{task: b.create(t, steps...), id: map[string]uuid.UUID{}}
	for _, st := range steps {
		g.id[st.Name] = st.StepID
	}
	return g
}

// diamond creates start → (left, right) → join.
func (b *bundle) diamond(t *testing.T) graph {
	t.Helper()
	return b.createGraph(t, b.newStep("start"), b.newStep("left", 0), b.newStep("right", 0), b.newStep("join", 1, 2))
}

const worker = "w1"

// claimAs claims a step for worker with a lease.
func (b *bundle) claimAs(t *testing.T, id uuid.UUID, workerID string, lease time.Duration) *store.ClaimedStep {
	t.Helper()
	c, err := b.Store.ClaimStep(context.Background(), store.ClaimStepParams{StepID: id, WorkerID: workerID, Lease: lease})
	require.NoError(t, err, "claim %s", b.name(id))
	return c
}

// claim claims a step for the suite's worker with a one-minute lease.
func (b *bundle) claim(t *testing.T, id uuid.UUID) *store.ClaimedStep {
	t.Helper()
	return b.claimAs(t, id, worker, time.Minute)
}

// outcomeParams returns the outcome of a claimed attempt: a success's result is {"by": name}, a
// failure's error {"message": "boom"}.
func (b *bundle) outcomeParams(c *store.ClaimedStep, kind store.OutcomeKind) store.OutcomeParams {
	p := store.OutcomeParams{TaskID: c.Task.ID, StepID: c.Step.ID, WorkerID: c.Step.LeaseOwner, Attempt: c.Step.Attempts,
		Kind: kind, Namespace: Namespace, Enqueuer: b.enq}
	if kind == store.OutcomeSuccess {
		p.Result = json.RawMessage(fmt.Sprintf(`{"by": %q}`, c.Step.Name))
	} else {
		p.Error = json.RawMessage(`{"message": "boom"}`)
	}
	return p
}

// succeed records a claimed attempt's success.
func (b *bundle) succeed(t *testing.T, c *store.ClaimedStep) *store.OutcomeResult {
	t.Helper()
	res, err := b.Store.RecordOutcome(context.Background(), b.outcomeParams(c, store.OutcomeSuccess))
	require.NoError(t, err, "success of %s", c.Step.Name)
	return res
}

// run claims a step and records its success.
func (b *bundle) run(t *testing.T, id uuid.UUID) *store.OutcomeResult {
	t.Helper()
	return b.succeed(t, b.claim(t, id))
}

// task reads a task.
func (b *bundle) task(t *testing.T, id uuid.UUID) store.Task {
	t.Helper()
	task, err := b.Store.GetTask(context.Background(), id)
	require.NoError(t, err)
	return *task
}

// step reads one step.
func (b *bundle) step(t *testing.T, taskID, stepID uuid.UUID) store.Step {
	t.Helper()
	steps, err := b.Store.GetSteps(context.Background(), taskID)
	require.NoError(t, err)
	for _, st := range steps {
		if st.ID == stepID {
			return st
		}
	}
	t.Fatalf("task %s has no step %s", taskID, b.name(stepID))
	return store.Step{}
}

// states returns the state of each step of a task by name.
func (b *bundle) states(t *testing.T, taskID uuid.UUID) map[string]statemachine.StepState {
	t.Helper()
	steps, err := b.Store.GetSteps(context.Background(), taskID)
	require.NoError(t, err)
	out := map[string]statemachine.StepState{}
	for _, st := range steps {
		out[st.Name] = st.State
	}
	return out
}

// snapshot is everything a task is in the store, for checks that an operation changed nothing.
type snapshot struct {
	Task        store.Task
	Steps       []store.Step
	Transitions []store.Transition
}

func (b *bundle) snapshot(t *testing.T, taskID uuid.UUID) snapshot {
	t.Helper()
	ctx := context.Background()
	steps, err := b.Store.GetSteps(ctx, taskID)
	require.NoError(t, err)
	trs, err := b.Store.Transitions(ctx, taskID)
	require.NoError(t, err)
	return snapshot{Task: b.task(t, taskID), Steps: steps, Transitions: trs}
}

// parallel runs fn(i) for i in [0, n) on n goroutines released at once, and waits for them.
func parallel(n int, fn func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			fn(i)
		})
	}
	close(start)
	wg.Wait()
}

// parallelTest runs fn as a parallel subtest on a fresh store.
func parallelTest(t *testing.T, h Harness, name string, fn func(t *testing.T, b *bundle)) {
	t.Helper()
	t.Run(name, func(t *testing.T) {
		t.Parallel()
		fn(t, setup(t, h))
	})
}

package engine

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/dag"
	"github.com/tasker-systems/tasker/queue"
	"github.com/tasker-systems/tasker/queue/memqueue"
	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
	"github.com/tasker-systems/tasker/store/memory"
)

// publishingQueue is the memory queue behind a Publisher's interface (as RabbitMQ has): the
// engine publishes after its commits, so the completer runs on store/memory.
type publishingQueue struct{ *memqueue.Queue }

var _ queue.Publisher = publishingQueue{}

func (q publishingQueue) Publish(ctx context.Context, ns string, payloads [][]byte, delay time.Duration) error {
	return q.SendTx(ctx, nil, ns, payloads, delay)
}

// oneStepTemplate is a template of one step "a" run by handler "h".
func oneStepTemplate(t *testing.T) *Template {
	t.Helper()
	g, err := dag.Build([]dag.Node{{Name: "a"}})
	require.NoError(t, err)
	tmpl := &Template{Namespace: "ns", Name: "one", Version: "1.0.0", Graph: g, Definition: json.RawMessage(`{"name":"one"}`), Checksum: "c1",
		Steps: []Step{{Name: "a", Callable: "h", Type: StepStandard, Timeout: time.Minute,
			Retry: Retry{MaxAttempts: 1, Retryable: true, Backoff: "exponential", Base: 10 * time.Millisecond, Max: time.Second}}}}
	tmpl.ClassifyDynamic()
	return tmpl
}

type handlerFunc func(ctx context.Context, a *Attempt) Return

func (f handlerFunc) Handle(ctx context.Context, a *Attempt) Return { return f(ctx, a) }

// TestCompleterBatchesConcurrentOutcomes runs 300 one-step tasks on 16 slots whose handlers take
// a moment: every task completes, each outcome is committed once, and the completer commits them
// in fewer transactions than outcomes (outcomes that arrive during a commit make the next batch).
// A lone task afterwards is recorded at once on the single-step path: nothing waits to fill a
// batch.
func TestCompleterBatchesConcurrentOutcomes(t *testing.T) {
	t.Parallel()
	st := memory.New()
	q := publishingQueue{memqueue.New(memqueue.WithPollInterval(20 * time.Millisecond))}
	e := New(Config{Store: st, Queue: q, WorkerID: "w1", Concurrency: 16, Lease: 10 * time.Second,
		ShutdownTimeout: 5 * time.Second, MaxPayloadBytes: 1 << 20, LeaderTTL: time.Second, RescueInterval: time.Second,
		RepublishAfter: time.Minute, MaxDecisionSteps: 10})
	_, err := e.AddTemplate(oneStepTemplate(t))
	require.NoError(t, err)
	var mu sync.Mutex
	ran := map[uuid.UUID]int{}
	e.Handle("h", handlerFunc(func(ctx context.Context, a *Attempt) Return {
		time.Sleep(2 * time.Millisecond)
		mu.Lock()
		ran[a.TaskID]++
		mu.Unlock()
		return Return{Result: map[string]any{"ok": true}}
	}))

	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	defer func() {
		stop()
		require.NoError(t, <-done)
	}()

	create := func() uuid.UUID {
		tmpl, err := e.Template("ns", "one", "")
		require.NoError(t, err)
		id := uuid.Must(uuid.NewV7())
		s, err := tmpl.Steps[0].NewStep("a")
		require.NoError(t, err)
		enq := e.NewEnqueuer()
		_, err = st.CreateTask(context.Background(), nil, store.CreateTaskParams{TaskID: id, Namespace: "ns", Name: "one",
			Version: "1.0.0", Context: json.RawMessage(`{}`), IdentityHash: id.String(), Enqueuer: enq,
			Steps: []store.NewStep{s}, Template: tmpl.RegistryRow()})
		require.NoError(t, err)
		tmpl.MarkPersisted()
		enq.Flush(context.Background())
		return id
	}
	waitComplete := func(id uuid.UUID) {
		t.Helper()
		require.Eventually(t, func() bool {
			task, err := st.GetTask(context.Background(), id)
			require.NoError(t, err)
			return task.State == statemachine.TaskComplete
		}, 30*time.Second, 5*time.Millisecond, "task %s", id)
	}

	const n = 300
	ids := make([]uuid.UUID, n)
	for i := range ids {
		ids[i] = create()
	}
	for _, id := range ids {
		waitComplete(id)
	}
	e.mu.RLock()
	c := e.active.completer
	e.mu.RUnlock()
	require.NotNil(t, c, "the completer runs with a queue that publishes after commits")
	// The counters are added to once RecordOutcomes returns, a moment after the tasks are seen
	// complete in the store.
	require.Eventually(t, func() bool { return c.outcomes.Load()+c.solos.Load() >= n }, 10*time.Second, time.Millisecond)
	require.EqualValues(t, n, c.outcomes.Load()+c.solos.Load(), "each outcome committed once, batched or alone")
	require.Less(t, c.batches.Load(), c.outcomes.Load(), "concurrent outcomes share transactions")
	mu.Lock()
	for _, id := range ids {
		require.Equal(t, 1, ran[id], "task %s ran once", id)
	}
	mu.Unlock()
	t.Logf("%d outcomes in %d transactions, %d alone", c.outcomes.Load(), c.batches.Load(), c.solos.Load())

	batches, solos := c.batches.Load(), c.solos.Load()
	waitComplete(create())
	require.Equal(t, solos+1, c.solos.Load(), "a lone outcome, with nothing else committing, is recorded at once on its own")
	require.Equal(t, batches, c.batches.Load())
}

// refusingBatches is store/memory whose batched outcomes are refused by "the database" (a
// constraint's error) whenever they hold the outcome of step bad.
type refusingBatches struct {
	*memory.Store
	bad atomic.Value // uuid.UUID
}

func (s *refusingBatches) RecordOutcomes(ctx context.Context, p store.RecordOutcomesParams) (*store.RecordOutcomesResult, error) {
	for _, o := range p.Outcomes {
		if bad, _ := s.bad.Load().(uuid.UUID); o.StepID == bad {
			return nil, &pgconn.PgError{Code: "23514", Message: "new row violates check constraint"}
		}
	}
	return s.Store.RecordOutcomes(ctx, p)
}

// TestCompleterIsolatesARefusedOutcome: a batch that the database refuses for one outcome in it is
// halved until that outcome stands alone, so the others commit rather than wait with it.
func TestCompleterIsolatesARefusedOutcome(t *testing.T) {
	t.Parallel()
	st := &refusingBatches{Store: memory.New()}
	st.bad.Store(uuid.Nil)
	q := publishingQueue{memqueue.New(memqueue.WithPollInterval(20 * time.Millisecond))}
	e := New(Config{Store: st, Queue: q, WorkerID: "w1", Concurrency: 8, Lease: time.Second,
		ShutdownTimeout: time.Second, MaxPayloadBytes: 1 << 20, LeaderTTL: time.Second, RescueInterval: time.Second,
		RepublishAfter: time.Minute, MaxDecisionSteps: 10})
	_, err := e.AddTemplate(oneStepTemplate(t))
	require.NoError(t, err)
	c := &completer{w: newWorkers(e), bs: st, in: make(chan *pendingOutcome, 64), committers: make(chan struct{}, 2),
		stop: make(chan struct{}), loopDone: make(chan struct{}), finished: make(chan struct{})}
	c.w.dbctx = context.Background()
	var batch []*pendingOutcome
	var badStep uuid.UUID
	for i := range 8 {
		taskID, stepID := createOneStep(t, e, 1)
		_, err := st.ClaimStep(context.Background(), store.ClaimStepParams{StepID: stepID, WorkerID: "w1", Lease: time.Second})
		require.NoError(t, err)
		if i == 5 {
			badStep = stepID
		}
		p := store.OutcomeParams{Kind: store.OutcomeSuccess, TaskID: taskID, StepID: stepID, WorkerID: "w1", Attempt: 1,
			Namespace: "ns", Result: json.RawMessage(`{"ok":true}`)}
		out, err := c.outcomeOf(p, queue.Message{})
		require.NoError(t, err)
		st := stepOf(t, e, taskID, stepID)
		batch = append(batch, &pendingOutcome{out: out, ns: "ns", st: &st, hold: &leaseClock{renewed: time.Now()},
			gone: func() error { return nil }, done: make(chan completion, 1)})
	}
	st.bad.Store(badStep)
	c.commit(batch) // returns once every outcome is answered: the refused one after a lease of refusals
	for _, p := range batch {
		r := <-p.done
		if p.out.StepID == badStep {
			require.Error(t, r.err, "the refused outcome is given up")
			continue
		}
		require.NoError(t, r.err)
		require.Equal(t, store.Recorded, r.rec.Status, "step %s", p.out.StepID)
	}
}

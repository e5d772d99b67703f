package engine

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/queue"
	"github.com/tasker-systems/tasker/queue/memqueue"
	"github.com/tasker-systems/tasker/store"
	"github.com/tasker-systems/tasker/store/memory"
)

// The maintenance services' tests run each service once, by hand, against store/memory: the
// election and the timers are the Elector's and Every's (internal/maintenance), tested there.

// testEngine is an engine on a fresh memory store whose workers are made but not run; q nil
// means the store's own queue.
func testEngine(t *testing.T, q queue.Queue, tune func(*Config)) (*Engine, *workers, *memory.Store) {
	t.Helper()
	st := memory.New()
	if q == nil {
		q = st.DefaultQueue()
	}
	cfg := Config{Store: st, Queue: q, WorkerID: "test-worker", Concurrency: 4, Lease: time.Minute,
		ShutdownTimeout: time.Second, MaxPayloadBytes: 1 << 20, LeaderTTL: time.Second, RescueInterval: time.Second,
		RepublishAfter: time.Second, MaxDecisionSteps: 10}
	if tune != nil {
		tune(&cfg)
	}
	e := New(cfg)
	w := newWorkers(e)
	w.dbctx = context.Background()
	return e, w, st
}

// createOneStep creates a task of one root step "a" (handler "h") with maxAttempts attempts and
// returns the task's and the step's IDs; the step is enqueued.
func createOneStep(t *testing.T, e *Engine, maxAttempts int) (taskID, stepID uuid.UUID) {
	t.Helper()
	taskID, stepID = uuid.Must(uuid.NewV7()), uuid.Must(uuid.NewV7())
	enq := e.NewEnqueuer()
	_, err := e.store.CreateTask(context.Background(), nil, store.CreateTaskParams{
		TaskID: taskID, Namespace: "ns", Name: "one", Version: "1.0.0", Context: json.RawMessage(`{}`),
		IdentityHash: taskID.String(), Enqueuer: enq,
		Template: &store.RegisterTemplateParams{Namespace: "ns", Name: "one", Version: "1.0.0",
			Definition: json.RawMessage(`{"name":"one"}`), Checksum: "test"},
		Steps: []store.NewStep{{StepID: stepID, Name: "a", TemplateStep: "a", Handler: "h", Type: "standard",
			MaxAttempts: maxAttempts, Retryable: true, Backoff: "exponential", BackoffBase: 10 * time.Millisecond,
			MaxBackoff: time.Second, Timeout: time.Minute}},
	})
	require.NoError(t, err)
	return taskID, stepID
}

func stepOf(t *testing.T, e *Engine, taskID, stepID uuid.UUID) store.Step {
	t.Helper()
	steps, err := e.store.GetSteps(context.Background(), taskID)
	require.NoError(t, err)
	for _, s := range steps {
		if s.ID == stepID {
			return s
		}
	}
	t.Fatalf("step %s not found", stepID)
	return store.Step{}
}

// recordingQueue is the memory queue with a Publisher's interface, as a broker outside the
// database has (queue/rabbitmq): what the engine publishes is kept to be looked at, and ready is
// what ReadyCount reports.
type recordingQueue struct {
	*memqueue.Queue
	mu        sync.Mutex
	published map[string][]json.RawMessage
	ready     int
}

var (
	_ queue.Publisher    = (*recordingQueue)(nil)
	_ queue.ReadyCounter = (*recordingQueue)(nil)
)

func newRecordingQueue() *recordingQueue {
	return &recordingQueue{Queue: memqueue.New(), published: map[string][]json.RawMessage{}}
}

func (q *recordingQueue) Publish(_ context.Context, ns string, payloads [][]byte, _ time.Duration) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, p := range payloads {
		q.published[ns] = append(q.published[ns], json.RawMessage(p))
	}
	return nil
}

func (q *recordingQueue) ReadyCount(context.Context, string) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.ready, nil
}

// take returns and forgets the step IDs published on ns.
func (q *recordingQueue) take(t *testing.T, ns string) []uuid.UUID {
	t.Helper()
	q.mu.Lock()
	defer q.mu.Unlock()
	var ids []uuid.UUID
	for _, p := range q.published[ns] {
		var m stepMessage
		require.NoError(t, json.Unmarshal(p, &m))
		ids = append(ids, m.StepID)
	}
	delete(q.published, ns)
	return ids
}

func (q *recordingQueue) setReady(n int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.ready = n
}

func TestServiceStatusesRecordPasses(t *testing.T) {
	e := New(Config{})
	start := time.Now()
	e.svc.record("rescuer", start, time.Millisecond, nil)
	e.svc.record("sweeper", start, time.Millisecond, errors.New("queue down"))
	e.svc.record("rescuer", start.Add(time.Second), 2*time.Millisecond, errors.New("db down"))
	e.svc.record("rescuer", start.Add(2*time.Second), 3*time.Millisecond, nil)
	got := e.ServiceStatuses()
	if len(got) != 2 || got[0].Name != "rescuer" || got[1].Name != "sweeper" {
		t.Fatalf("statuses = %+v, want rescuer then sweeper", got)
	}
	r := got[0]
	if r.Runs != 3 || r.Failing || r.LastError != "db down" || !r.LastErrorAt.Equal(start.Add(time.Second)) ||
		!r.LastRun.Equal(start.Add(2*time.Second)) || r.LastDuration != 3*time.Millisecond {
		t.Fatalf("rescuer = %+v: want 3 runs, not failing, last error db down a second in", r)
	}
	if s := got[1]; !s.Failing || s.LastError != "queue down" || s.Runs != 1 || !s.Active {
		t.Fatalf("sweeper = %+v: want active, failing with queue down", s)
	}
	e.svc.deactivate()
	for _, s := range e.ServiceStatuses() {
		if s.Active {
			t.Fatalf("%s is active after the leadership ended", s.Name)
		}
	}
}

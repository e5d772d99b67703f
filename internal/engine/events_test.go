package engine

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/store"
)

// TestEventsCancelRunningHandlers: a cancellation announced by the store (store/memory announces
// its CancelTask) cancels, with ErrTaskCancelled, the handlers this engine runs for the task, and
// wakes its waiters; the handlers of other tasks go on.
func TestEventsCancelRunningHandlers(t *testing.T) {
	t.Parallel()
	e, w, st := testEngine(t, nil, nil)
	taskID, stepID := createOneStep(t, e, 1)
	otherTask, otherStep := createOneStep(t, e, 1)

	hctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	e.runs.Add(taskID, stepID, 1, cancel)
	octx, ocancel := context.WithCancelCause(context.Background())
	defer ocancel(nil)
	e.runs.Add(otherTask, otherStep, 1, ocancel)
	waiter := e.waiters.Subscribe(taskID)
	defer e.waiters.Unsubscribe(taskID, waiter)

	ctx, stop := context.WithCancel(context.Background())
	listening := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); w.listenEvents(ctx, st, listening) }()
	defer func() { stop(); <-done }()
	<-listening

	_, err := st.CancelTask(context.Background(), store.CancelTaskParams{TaskID: taskID, Reason: "test"})
	require.NoError(t, err)
	select {
	case <-hctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the cancellation did not reach the running handler")
	}
	require.True(t, errors.Is(context.Cause(hctx), ErrTaskCancelled))
	select {
	case <-waiter:
	case <-time.After(5 * time.Second):
		t.Fatal("the task's waiter was not woken")
	}
	require.NoError(t, octx.Err(), "another task's handler goes on")
}

// fakeEvents announces what a test tells it, as a store.EventListener would after its commits.
type fakeEvents struct{ events chan store.Event }

func (f fakeEvents) ListenEvents(ctx context.Context, handle func(store.Event)) error {
	handle(store.Event{Kind: store.EventListening})
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-f.events:
			handle(ev)
		}
	}
}

// TestEventsPublishCreatedTasksWhileLeading: with a queue outside the database, a task created
// in a caller's transaction has its first steps published once its commit is announced, by the
// engine that leads maintenance only.
func TestEventsPublishCreatedTasksWhileLeading(t *testing.T) {
	t.Parallel()
	q := newRecordingQueue()
	e, w, _ := testEngine(t, q, nil)
	taskID, stepID := createOneStep(t, e, 1) // not flushed: as if created in the caller's transaction
	ev := fakeEvents{events: make(chan store.Event)}

	ctx, stop := context.WithCancel(context.Background())
	listening := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); w.listenEvents(ctx, ev, listening) }()
	defer func() { stop(); <-done }()
	<-listening

	ev.events <- store.Event{Kind: store.EventTaskCreated, TaskID: taskID}
	ev.events <- store.Event{Kind: store.EventListening} // handled after the first: a barrier
	time.Sleep(50 * time.Millisecond)
	require.Empty(t, q.take(t, "ns"), "an engine that does not lead leaves the publish to the leader")

	w.leading.Store(true)
	ev.events <- store.Event{Kind: store.EventTaskCreated, TaskID: taskID}
	require.Eventually(t, func() bool {
		ids := q.take(t, "ns")
		if len(ids) == 0 {
			return false
		}
		require.Equal(t, []uuid.UUID{stepID}, ids)
		return true
	}, 5*time.Second, 10*time.Millisecond)
}

package postgres_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/store"
	"github.com/tasker-systems/tasker/store/postgres"
)

// TestListenEvents: a task created with AnnounceCommit is announced when its transaction commits,
// never when it rolls back, nor without AnnounceCommit; a cancellation is announced; ListenEvents
// returns nil when its context ends (goleak checks that nothing it started is left).
func TestListenEvents(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	st := postgres.New(db.Pool, postgres.WithSchema(db.Schema))
	ctx, cancel := context.WithCancel(context.Background())
	announced := make(chan uuid.UUID, 10)
	cancelled := make(chan uuid.UUID, 10)
	done := make(chan error, 1)
	go func() {
		done <- st.ListenEvents(ctx, func(ev store.Event) {
			switch ev.Kind {
			case store.EventTaskCreated:
				announced <- ev.TaskID
			case store.EventTaskCancelled:
				cancelled <- ev.TaskID
			}
		})
	}()

	create := func(announce, commit bool) uuid.UUID {
		t.Helper()
		tx, err := db.Pool.Begin(context.Background())
		require.NoError(t, err)
		id := uuid.Must(uuid.NewV7())
		_, err = st.CreateTask(context.Background(), tx, store.CreateTaskParams{
			TaskID: id, Namespace: "ns", Name: "t", Version: "1", Context: json.RawMessage(`{}`),
			IdentityHash: id.String(), AnnounceCommit: announce,
			Template: &store.RegisterTemplateParams{Namespace: "ns", Name: "t", Version: "1", Definition: json.RawMessage(`{}`), Checksum: "c"},
			Steps: []store.NewStep{{StepID: uuid.Must(uuid.NewV7()), Name: "a", TemplateStep: "a", Handler: "h",
				Type: "standard", MaxAttempts: 1, Backoff: "none", Timeout: time.Second}},
		})
		require.NoError(t, err)
		if commit {
			require.NoError(t, tx.Commit(context.Background()))
		} else {
			require.NoError(t, tx.Rollback(context.Background()))
		}
		return id
	}
	// The listener needs a moment to connect: announce until one arrives.
	var first uuid.UUID
	for deadline := time.Now().Add(10 * time.Second); first == uuid.Nil && time.Now().Before(deadline); {
		create(true, true)
		select {
		case first = <-announced:
		case <-time.After(100 * time.Millisecond):
		}
	}
	for len(announced) > 0 { // late ones from the warm-up
		<-announced
	}
	require.NotEqual(t, uuid.Nil, first)

	create(true, false) // rolled back
	create(false, true) // not asked for
	want := create(true, true)
	select {
	case got := <-announced:
		require.Equal(t, want, got, "only the committed, announced task")
	case <-time.After(5 * time.Second):
		t.Fatal("the committed task was not announced")
	}
	select {
	case got := <-announced:
		t.Fatalf("unexpected announcement of %s", got)
	case <-time.After(200 * time.Millisecond):
	}

	_, err := st.CancelTask(context.Background(), store.CancelTaskParams{TaskID: want, Reason: "test"})
	require.NoError(t, err)
	select {
	case got := <-cancelled:
		require.Equal(t, want, got)
	case <-time.After(5 * time.Second):
		t.Fatal("the cancellation was not announced")
	}
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("ListenEvents did not return after its context ended")
	}
}

// TestListenEventsReconnects: when the listener's connection is killed, ListenEvents connects again
// (reporting EventListening once more) and announcements flow again.
func TestListenEventsReconnects(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	st := postgres.New(db.Pool, postgres.WithSchema(db.Schema))
	ctx, cancel := context.WithCancel(context.Background())
	listening := make(chan struct{}, 10)
	cancelled := make(chan uuid.UUID, 10)
	done := make(chan error, 1)
	go func() {
		done <- st.ListenEvents(ctx, func(ev store.Event) {
			switch ev.Kind {
			case store.EventListening:
				listening <- struct{}{}
			case store.EventTaskCancelled:
				cancelled <- ev.TaskID
			}
		})
	}()
	waitListening := func() {
		t.Helper()
		select {
		case <-listening:
		case <-time.After(10 * time.Second):
			t.Fatal("the listener did not report EventListening")
		}
	}
	waitListening()

	var killed int
	require.NoError(t, db.Pool.QueryRow(context.Background(), `
		SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		 WHERE application_name = $1 AND query ILIKE '%' || $2 || '%'`, postgres.EventsApplicationName, db.Schema).Scan(&killed))
	require.Equal(t, 1, killed, "the listener's backend")
	waitListening() // connected again

	id := uuid.Must(uuid.NewV7())
	_, err := st.CreateTask(context.Background(), nil, store.CreateTaskParams{
		TaskID: id, Namespace: "ns", Name: "t", Version: "1", Context: json.RawMessage(`{}`), IdentityHash: id.String(),
		Template: &store.RegisterTemplateParams{Namespace: "ns", Name: "t", Version: "1", Definition: json.RawMessage(`{}`), Checksum: "c"},
		Steps: []store.NewStep{{StepID: uuid.Must(uuid.NewV7()), Name: "a", TemplateStep: "a", Handler: "h",
			Type: "standard", MaxAttempts: 1, Backoff: "none", Timeout: time.Second}},
	})
	require.NoError(t, err)
	_, err = st.CancelTask(context.Background(), store.CancelTaskParams{TaskID: id, Reason: "test"})
	require.NoError(t, err)
	select {
	case got := <-cancelled:
		require.Equal(t, id, got)
	case <-time.After(10 * time.Second):
		t.Fatal("no announcement after the reconnection")
	}
	cancel()
	require.NoError(t, <-done)
}

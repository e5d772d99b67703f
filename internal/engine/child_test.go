package engine

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

// TestChildParentWakesDrain: a wake-up in flight for a child is not started twice; drain ends a
// wake-up waiting for its parent at once (stop), cancels one that ignores stop once its grace has
// passed, and returns only when both have ended; wake-ups started after a drain run as before.
func TestChildParentWakesDrain(t *testing.T) {
	t.Parallel()
	var p parentWakes
	child, other := uuid.New(), uuid.New()
	var ended atomic.Int32
	started := make(chan struct{}, 2)
	waiting := func(ctx context.Context, stop <-chan struct{}) {
		defer ended.Add(1)
		started <- struct{}{}
		select {
		case <-stop:
		case <-time.After(time.Minute):
		}
	}
	require.True(t, p.start(context.Background(), child, waiting))
	require.False(t, p.start(context.Background(), child, waiting), "one wake-up per child at a time")
	// A store call in flight ignores stop; its context ends after the grace.
	require.True(t, p.start(context.Background(), other, func(ctx context.Context, _ <-chan struct{}) {
		defer ended.Add(1)
		started <- struct{}{}
		select {
		case <-ctx.Done():
		case <-time.After(time.Minute):
		}
	}))
	<-started
	<-started
	begin := time.Now()
	p.drain(50 * time.Millisecond)
	require.Equal(t, int32(2), ended.Load(), "drain returns once every wake-up has ended")
	require.Less(t, time.Since(begin), 5*time.Second)

	// The caller's cancellation does not reach a wake-up: it runs after the caller returned.
	caller, cancel := context.WithCancel(context.Background())
	cancel()
	ran := make(chan error, 1)
	require.True(t, p.start(caller, child, func(ctx context.Context, _ <-chan struct{}) { ran <- ctx.Err() }))
	require.NoError(t, <-ran)
	p.drain(time.Second)
	p.mu.Lock()
	require.Empty(t, p.running)
	p.mu.Unlock()
}

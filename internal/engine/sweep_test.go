package engine

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

// TestSweepRepublishesLostMessages creates a task whose first message is never published (the
// process died between the commit and the publish): once the step has waited RepublishAfter, a
// sweep publishes its message; the next sweep, within RepublishAfter, does not publish it again.
func TestSweepRepublishesLostMessages(t *testing.T) {
	t.Parallel()
	q := newRecordingQueue()
	e, w, _ := testEngine(t, q, func(c *Config) { c.RepublishAfter = 100 * time.Millisecond })
	_, stepID := createOneStep(t, e, 1) // no Flush: the message is lost
	require.Empty(t, q.take(t, "ns"))

	w.sweep(context.Background())
	require.Empty(t, q.take(t, "ns"), "a step enqueued a moment ago is not stale")

	time.Sleep(150 * time.Millisecond)
	w.sweep(context.Background())
	require.Equal(t, []uuid.UUID{stepID}, q.take(t, "ns"))
	w.sweep(context.Background())
	require.Empty(t, q.take(t, "ns"), "swept again only after another RepublishAfter")
}

// TestSweepHoldsBackBehindABacklog: while the queue reports messages ready, the sweeper holds a
// stale step's re-publish back (its message is most likely in the backlog), for maxHoldBack
// RepublishAfter periods at most; then it publishes anyway. Once the backlog drains it publishes
// at the next sweep.
func TestSweepHoldsBackBehindABacklog(t *testing.T) {
	t.Parallel()
	const after = 100 * time.Millisecond
	q := newRecordingQueue()
	e, w, _ := testEngine(t, q, func(c *Config) { c.RepublishAfter = after })
	_, stepID := createOneStep(t, e, 1)
	q.setReady(5)

	start := time.Now()
	var published []uuid.UUID
	for len(published) == 0 && time.Since(start) < 3*maxHoldBack*after {
		time.Sleep(after + 10*time.Millisecond)
		w.sweep(context.Background())
		published = q.take(t, "ns")
	}
	require.Equal(t, []uuid.UUID{stepID}, published, "a backlog for good still lets a lost message out")
	require.GreaterOrEqual(t, time.Since(start), maxHoldBack*after, "held back for maxHoldBack periods first")

	// The backlog drains: the next stale sweep publishes at once.
	q.setReady(0)
	time.Sleep(after + 10*time.Millisecond)
	w.sweep(context.Background())
	require.Equal(t, []uuid.UUID{stepID}, q.take(t, "ns"))
}

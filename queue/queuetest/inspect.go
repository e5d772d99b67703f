package queuetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/queue"
)

// testInspector checks queue.Inspector's Depths, when the backend implements it: ready messages
// are counted per queue, read and delayed ones are not, and the ages follow the sends (when the
// backend knows them).
func testInspector(t *testing.T, h Harness) {
	t.Run("Depths", func(t *testing.T) {
		t.Parallel()
		b := setup(t, h)
		in, ok := b.Queue.(queue.Inspector)
		if !ok {
			t.Skipf("%T does not implement queue.Inspector", b.Queue)
		}
		names := []string{QueueMain, QueueOther, QueueUnused}
		depths, err := in.Depths(b.ctx, names)
		require.NoError(t, err)
		require.Len(t, depths, 3)
		for i, d := range depths {
			require.Equal(t, names[i], d.Queue, "one Depth per name, in order")
			require.Zero(t, d.Ready, "queue %q never sent to", d.Queue)
			require.Zero(t, d.OldestAge)
			require.Zero(t, d.MaxWait)
		}
		empty, err := in.Depths(b.ctx, nil)
		require.NoError(t, err)
		require.Empty(t, empty)

		sent := time.Now()
		b.send(t, QueueMain, 0, numbered(3)...)
		b.send(t, QueueOther, 800*time.Millisecond, `"delayed"`)
		b.depthsUntil(t, in, names, "3 ready on main, the delayed one not yet", func(ds []queue.Depth) bool {
			return ds[0].Ready == 3 && ds[1].Ready == 0 && ds[2].Ready == 0
		})

		// A message read is being worked on: not ready.
		msgs := b.read(t, QueueMain, 1, hidden)
		ds := b.depthsUntil(t, in, names, "2 ready on main once one is read", func(ds []queue.Depth) bool {
			return ds[0].Ready == 2
		})
		if ds[0].AgeKnown {
			elapsed := time.Since(sent)
			require.Positive(t, ds[0].OldestAge)
			require.LessOrEqual(t, ds[0].OldestAge, elapsed+time.Second, "the oldest ready message is as old as the send")
			require.Positive(t, ds[0].MaxWait)
			require.LessOrEqual(t, ds[0].MaxWait, ds[0].OldestAge+clockSlack, "ready no longer than sent")
		} else {
			require.Zero(t, ds[0].OldestAge, "no age without AgeKnown")
			require.Zero(t, ds[0].MaxWait, "no wait without AgeKnown")
		}
		b.ack(t, QueueMain, msgs...)
		b.depthsUntil(t, in, names, "still 2 ready on main after the ack", func(ds []queue.Depth) bool {
			return ds[0].Ready == 2
		})

		// The delayed message becomes ready after its delay; it has waited ready for less than
		// its age by about the delay.
		ds = b.depthsUntil(t, in, names, "the delayed message ready", func(ds []queue.Depth) bool {
			return ds[1].Ready == 1
		})
		requireNotBefore(t, sent, 800*time.Millisecond, "the delayed message counted")
		if ds[1].AgeKnown {
			require.GreaterOrEqual(t, ds[1].OldestAge-ds[1].MaxWait, 700*time.Millisecond,
				"age %v, waited ready %v: the delay is not waiting", ds[1].OldestAge, ds[1].MaxWait)
		}
		require.Zero(t, ds[2].Ready, "queue %q never sent to", QueueUnused)
	})
}

// depthsUntil polls Depths until ok holds, for backends whose counts lag a moment; it fails the
// test after waitTimeout.
func (b *bundle) depthsUntil(t testing.TB, in queue.Inspector, names []string, what string, ok func([]queue.Depth) bool) []queue.Depth {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		ds, err := in.Depths(b.ctx, names)
		require.NoError(t, err)
		require.Len(t, ds, len(names))
		if ok(ds) {
			return ds
		}
		if time.Now().After(deadline) {
			require.FailNow(t, "depths", "%s: not within %v; last %s", what, waitTimeout, fmt.Sprint(ds))
		}
		time.Sleep(pollEvery)
	}
}

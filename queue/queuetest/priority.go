package queuetest

import (
	"testing"
	"time"
)

// testDatedBack checks what the engine's priorities rely on: a message sent with a negative delay
// is visible at once and read before the messages made visible in the last -delay, and one made
// visible earlier than that still comes first (a waiting message keeps its place: aging).
func testDatedBack(t *testing.T, h Harness) {
	t.Run("ReadBeforeNewerMessages", func(t *testing.T) {
		t.Parallel()
		if !h.Capabilities.DatedBack {
			t.Skip("the backend does not date messages back (Capabilities.DatedBack)")
		}
		b := setup(t, h)
		b.send(t, QueueMain, 0, `"old"`)
		time.Sleep(time.Second)
		b.send(t, QueueMain, 0, `"a"`, `"b"`)
		b.send(t, QueueMain, -600*time.Millisecond, `"credited"`)
		got := b.read(t, QueueMain, 4, hidden)
		requirePayloads(t, []string{`"old"`, `"credited"`, `"a"`, `"b"`}, got)
		b.ack(t, QueueMain, got...)
	})
}

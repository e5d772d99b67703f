package queuetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/queue"
)

func testSend(t *testing.T, h Harness) {
	t.Run("RoundTrip", func(t *testing.T) {
		t.Parallel()
		b := setup(t, h)
		docs := []string{`{"n": 1}`, `{"b": [1, 2], "a": "x"}`, `"text, ünïcode"`, `42`, `{"nested": {"k": [true, null, 1.5]}}`}
		before := time.Now()
		b.send(t, QueueMain, 0, docs...)
		after := time.Now()

		msgs := b.read(t, QueueMain, len(docs), hidden)
		requirePayloadSet(t, docs, msgs)
		seen := map[int64]bool{}
		for _, m := range msgs {
			require.Equal(t, QueueMain, m.Queue)
			require.Equal(t, 1, m.ReadCount, "first delivery")
			require.False(t, m.EnqueuedAt.Before(before.Add(-time.Second)), "EnqueuedAt %v is before the send (%v)", m.EnqueuedAt, before)
			require.False(t, m.EnqueuedAt.After(after.Add(time.Second)), "EnqueuedAt %v is after the send (%v)", m.EnqueuedAt, after)
			require.False(t, seen[m.ID], "message id %d handed out twice", m.ID)
			seen[m.ID] = true
		}
		b.none(t, QueueMain) // read: hidden for their visibility timeout
		b.ack(t, QueueMain, msgs...)
	})

	t.Run("PayloadIsCopied", func(t *testing.T) {
		t.Parallel()
		b := setup(t, h)
		p := []byte(`{"n": 1}`)
		require.NoError(t, b.sendBytes(QueueMain, 0, [][]byte{p}))
		p[6] = '2' // the caller may reuse its buffer once the send returned
		msgs := b.read(t, QueueMain, 1, hidden)
		require.JSONEq(t, `{"n": 1}`, string(msgs[0].Payload))
	})

	t.Run("InvalidJSONIsRejectedBeforeAnythingIsWritten", func(t *testing.T) {
		t.Parallel()
		b := setup(t, h)
		require.Error(t, b.trySend(QueueMain, 0, `{"valid": true}`, `{"broken":`))
		require.Error(t, b.trySend(QueueMain, 0, ``))
		require.Error(t, b.trySend(QueueMain, 0, `{} trailing`))
		b.none(t, QueueMain) // not even the valid payload before the broken one
	})

	t.Run("NoPayloadsIsANoOp", func(t *testing.T) {
		t.Parallel()
		b := setup(t, h)
		require.NoError(t, b.trySend(QueueMain, 0))
		require.NoError(t, b.sendBytes(QueueMain, 0, [][]byte{}))
		b.none(t, QueueMain)
	})

	t.Run("EmptyQueueNameIsRejected", func(t *testing.T) {
		t.Parallel()
		b := setup(t, h)
		require.Error(t, b.trySend("", 0, `1`))
	})
}

func testRead(t *testing.T, h Harness) {
	t.Run("EmptyQueueGivesAnEmptySlice", func(t *testing.T) {
		t.Parallel()
		b := setup(t, h)
		msgs, err := b.Queue.Read(b.ctx, QueueUnused, 10, hidden)
		require.NoError(t, err)
		require.NotNil(t, msgs, "an empty slice, not nil")
		require.Empty(t, msgs)

		b.send(t, QueueMain, 0, `1`)
		b.ack(t, QueueMain, b.read(t, QueueMain, 1, hidden)...)
		msgs, err = b.Queue.Read(b.ctx, QueueMain, 10, hidden)
		require.NoError(t, err)
		require.NotNil(t, msgs, "an empty slice, not nil")
		require.Empty(t, msgs)
	})

	t.Run("RejectsBadArguments", func(t *testing.T) {
		t.Parallel()
		b := setup(t, h)
		b.send(t, QueueMain, 0, `1`)
		for _, n := range []int{0, -1} {
			_, err := b.Queue.Read(b.ctx, QueueMain, n, time.Minute)
			require.Error(t, err, "n = %d", n)
		}
		for _, vt := range []time.Duration{0, -time.Second} {
			_, err := b.Queue.Read(b.ctx, QueueMain, 1, vt)
			require.Error(t, err, "vt = %v", vt)
		}
		msgs := b.read(t, QueueMain, 1, hidden) // the refused reads claimed nothing
		require.Equal(t, 1, msgs[0].ReadCount)
	})

	t.Run("QueuesAreIsolated", func(t *testing.T) {
		t.Parallel()
		b := setup(t, h)
		b.send(t, QueueMain, 0, `"main 1"`, `"main 2"`)
		b.send(t, QueueOther, 0, `"other"`)

		main := b.read(t, QueueMain, 2, hidden)
		requirePayloadSet(t, []string{`"main 1"`, `"main 2"`}, main)
		for _, m := range main {
			require.Equal(t, QueueMain, m.Queue)
		}
		other := b.read(t, QueueOther, 1, hidden)
		requirePayloads(t, []string{`"other"`}, other)
		require.Equal(t, QueueOther, other[0].Queue)
		b.none(t, QueueUnused)

		// Ids belong to their queue: another queue's calls do not touch the message.
		id := main[0].ID
		require.NoError(t, b.Queue.Ack(b.ctx, QueueOther, id), "an id unknown to the queue is ignored")
		require.ErrorIs(t, b.Queue.Extend(b.ctx, QueueOther, id, time.Minute), queue.ErrNotFound)
		require.ErrorIs(t, b.Queue.RetryLater(b.ctx, QueueOther, id, 0), queue.ErrNotFound)
		require.NoError(t, b.Queue.Extend(b.ctx, QueueMain, id, time.Minute), "still there, on its own queue")
		b.ack(t, QueueMain, main...)
		b.ack(t, QueueOther, other...)
	})

	t.Run("OldestFirst", func(t *testing.T) {
		t.Parallel()
		if !h.Capabilities.Ordered {
			t.Skip("the backend does not promise oldest-first reads (Capabilities.Ordered)")
		}
		b := setup(t, h)
		docs := numbered(101)
		b.send(t, QueueMain, 0, docs[:100]...)
		b.send(t, QueueMain, 0, docs[100])
		var got []queue.Message
		for len(got) < len(docs) {
			// In small reads, acked as they come, as a worker does (and as a broker's prefetch
			// limit requires).
			msgs := b.read(t, QueueMain, min(7, len(docs)-len(got)), hidden)
			b.ack(t, QueueMain, msgs...)
			got = append(got, msgs...)
		}
		requirePayloads(t, docs, got)
		b.none(t, QueueMain)
	})

	t.Run("ConcurrentReadersNeverShareAMessage", func(t *testing.T) {
		t.Parallel()
		b := setup(t, h)
		testConcurrentReaders(t, b)
	})
}

// testConcurrentReaders has several goroutines read and ack many messages under a long visibility
// timeout: every message must be delivered exactly once.
func testConcurrentReaders(t *testing.T, b *bundle) {
	const total, readers = 1000, 8
	b.send(t, QueueMain, 0, numbered(total)...)

	var (
		mu        sync.Mutex
		seen      = make(map[int]int, total) // deliveries of {"i": i}
		readAgain []int
		distinct  atomic.Int64
		wg        sync.WaitGroup
		errs      = make(chan error, readers)
	)
	deadline := time.Now().Add(waitTimeout)
	for range readers {
		wg.Go(func() {
			// Each reader holds what it read until its next Read has returned, so that other
			// readers' Reads run while messages are claimed and not yet acked.
			var held []queue.Message
			for distinct.Load() < total && time.Now().Before(deadline) {
				msgs, err := b.Queue.Read(b.ctx, QueueMain, 7, hidden)
				if err != nil {
					errs <- err
					return
				}
				if err := b.Queue.Ack(b.ctx, QueueMain, ids(held)...); err != nil {
					errs <- err
					return
				}
				held = msgs
				if len(msgs) == 0 {
					time.Sleep(time.Millisecond)
					continue
				}
				mu.Lock()
				for _, m := range msgs {
					var doc struct{ I int }
					if err := json.Unmarshal(m.Payload, &doc); err != nil {
						mu.Unlock()
						errs <- fmt.Errorf("payload %s: %w", m.Payload, err)
						return
					}
					if seen[doc.I]++; seen[doc.I] == 1 {
						distinct.Add(1)
					}
					if m.ReadCount != 1 {
						readAgain = append(readAgain, doc.I)
					}
				}
				mu.Unlock()
			}
			if err := b.Queue.Ack(b.ctx, QueueMain, ids(held)...); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	require.NoError(t, errors.Join(all...))
	var missing, twice []int
	for i := range total {
		switch n := seen[i]; {
		case n == 0:
			missing = append(missing, i)
		case n > 1:
			twice = append(twice, i)
		}
	}
	require.Empty(t, missing, "messages never delivered, by number")
	require.Empty(t, twice, "messages delivered more than once, by number")
	require.Empty(t, readAgain, "messages with a read count above 1 under a visibility timeout that never passed")
	b.none(t, QueueMain)
}

package queuetest

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// Benchmark measures h's backend sending a batch of messages, as the suite sends, reading them
// back and acking them, for batches of 1 and 100 messages. It reports ns/msg beside ns/op.
func Benchmark(b *testing.B, h Harness) {
	for _, batch := range []int{1, 100} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			bb := setup(b, h)
			bb.ctx = context.Background() // no deadline: -benchtime decides
			payloads := make([][]byte, batch)
			for i := range payloads {
				payloads[i] = []byte(`{"task_id": "0190b3a4-7c1e-7000-8000-000000000000", "step": "validate_order"}`)
			}
			iterations := 0
			for b.Loop() {
				iterations++
				if err := bb.sendBytes(QueueMain, 0, payloads); err != nil {
					b.Fatal(err)
				}
				if err := bb.drain(batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(iterations*batch), "ns/msg")
		})
	}
}

// drain reads and acks n messages, acking each read before the next, as a worker does; without
// ImmediateRead it keeps reading until they have come, for at most waitTimeout.
func (b *bundle) drain(n int) error {
	deadline := time.Now().Add(waitTimeout)
	for got := 0; got < n; {
		msgs, err := b.Queue.Read(b.ctx, QueueMain, n-got, time.Minute)
		if err != nil {
			return err
		}
		if len(msgs) == 0 {
			if b.caps.ImmediateRead || time.Now().After(deadline) {
				return fmt.Errorf("read %d messages, want %d", got, n)
			}
			time.Sleep(50 * time.Microsecond)
			continue
		}
		if err := b.Queue.Ack(b.ctx, QueueMain, ids(msgs)...); err != nil {
			return err
		}
		got += len(msgs)
	}
	return nil
}

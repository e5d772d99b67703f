package queuetest_test

import (
	"context"
	"testing"
	"time"

	"github.com/tasker-systems/tasker/queue/memqueue"
	"github.com/tasker-systems/tasker/queue/queuetest"
)

// A new queue backend runs the suite from a test of its own package. The function below is what
// that test file holds (an example cannot get a *testing.T, so here it is only defined); the
// memory queue stands in for the backend under test.
func ExampleRun() {
	// func TestConformance(t *testing.T) {
	TestConformance := func(t *testing.T) {
		t.Parallel()
		queuetest.Run(t, queuetest.Harness{
			// New opens a fresh, empty queue for one subtest, isolated from the others (its own
			// schema, memory or broker prefix), with cfg.PollInterval as its Listen's fallback
			// poll. Subtests call it in parallel; close what it opens with t.Cleanup, and fail
			// t (never skip it) when the backend cannot be reached.
			New: func(t testing.TB, cfg queuetest.Config) queuetest.Backend {
				q := memqueue.New(memqueue.WithPollInterval(cfg.PollInterval))
				return queuetest.Backend{
					Queue: q,
					// Begin: pool.Begin, for a queue whose SendTx and AckTx join a pgx.Tx
					// (Capabilities.Transactions).
				}
			},
			// Claim only what the backend does: the tests of the rest are skipped, with the
			// reason. A backend that buffers deliveries (RabbitMQ) lacks ImmediateRead, and the
			// suite polls Read for it.
			Capabilities: queuetest.Capabilities{ImmediateRead: true, ExactReadCounts: true, Ordered: true},
		})
	}
	_ = TestConformance // go test runs it in the backend's package
}

// The same harness measures the backend: a batch sent, read back and acked, as a worker does.
func ExampleBenchmark() {
	harness := queuetest.Harness{
		New: func(t testing.TB, cfg queuetest.Config) queuetest.Backend {
			return queuetest.Backend{Queue: memqueue.New(memqueue.WithPollInterval(cfg.PollInterval))}
		},
		Capabilities: queuetest.Capabilities{ImmediateRead: true, ExactReadCounts: true, Ordered: true},
	}
	// func BenchmarkSendReadAck(b *testing.B) {
	BenchmarkSendReadAck := func(b *testing.B) {
		queuetest.Benchmark(b, harness) // reports ns/msg for batches of 1 and 100
	}
	_ = BenchmarkSendReadAck // go test -bench . runs it in the backend's package
}

// Listen helps a backend test its own wake-ups: it runs Listen in the background, records what
// it wakes, and fails the test when Listen wakes a queue it was not asked for or does not stop.
func ExampleListen() {
	// func TestListenWakesOnSend(t *testing.T) {
	TestListenWakesOnSend := func(t *testing.T) {
		ctx := context.Background()
		q := memqueue.New(memqueue.WithPollInterval(time.Hour)) // only a send can wake it
		l := queuetest.Listen(t, q, "a")
		l.Quiet(100 * time.Millisecond) // forget the wake-ups that announce the listener

		if err := q.SendTx(ctx, nil, "a", [][]byte{[]byte(`{}`)}, 0); err != nil {
			t.Fatal(err)
		}
		l.Expect("a", time.Second)
		l.Stop() // or leave it to the end of the test
	}
	_ = TestListenWakesOnSend
}

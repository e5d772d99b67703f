// Package queuetest is the conformance suite of tasker's delivery seam: every behaviour the engine
// relies on from a queue.Queue, as subtests that each implementation runs against itself.
//
// A backend's test hands Run a Harness that opens a fresh, isolated queue for each subtest:
//
//	func TestConformance(t *testing.T) {
//		queuetest.Run(t, queuetest.Harness{
//			New: func(t testing.TB, cfg queuetest.Config) queuetest.Backend {
//				db := testdb.New(t)
//				return queuetest.Backend{
//					Queue: pgqueue.New(db.Pool, pgqueue.WithSchema(db.Schema), pgqueue.WithPollInterval(cfg.PollInterval)),
//					Begin: db.Pool.Begin,
//				}
//			},
//			Capabilities: queuetest.Capabilities{Transactions: true, ImmediateRead: true, ExactReadCounts: true, Ordered: true},
//		})
//	}
//
// The suite sends the way the engine does: inside a committed transaction for a transactional
// queue, with Publish for a queue.Publisher (which cannot join a transaction), and with SendTx and
// a nil transaction otherwise (queue/memqueue); Backend.Send overrides that. The optional
// interfaces, queue.Publisher, queue.BatchSender, queue.BatchAcker, queue.BatchHolder and
// queue.Inspector, are found by type assertion and tested when present.
//
// Subtests run in parallel, each on its own queue, and keep their visibility timeouts and delays
// between 100 and 800 milliseconds, so that the whole suite runs in seconds. What a backend cannot
// do (Capabilities) is skipped with the reason; a backend whose Read sees messages only after a
// moment (ImmediateRead false) is polled until what the test expects arrives.
//
// Listen is a helper for a backend's own Listen tests; Benchmark measures a send, read and ack.
package queuetest

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/queue"
)

// Harness connects Run to one backend.
type Harness struct {
	// New returns a new, empty queue for one subtest, isolated from every other subtest's (its
	// own schema, its own memory, its own broker prefix), built as cfg says, and registers
	// whatever it must close with t.Cleanup. Subtests call it in parallel. It should fail t, never
	// skip it, when the backend cannot be reached. Benchmark passes a *testing.B.
	New func(t testing.TB, cfg Config) Backend

	// Capabilities says what the backend can do beyond the seam's common contract.
	Capabilities Capabilities
}

// Config is how the suite wants a subtest's queue built.
type Config struct {
	// PollInterval is the fallback poll the queue's Listen must use. It is an hour except where
	// the suite checks the poll itself, so that a poll cannot pass for a wake-up that a send
	// should have caused.
	PollInterval time.Duration
	// Queues names every queue the subtest uses (QueueMain, QueueOther, QueueUnused), for a
	// backend that keeps state per queue outside the process and deletes it when the test ends.
	Queues []string
}

// Backend is one subtest's queue and how to use it.
type Backend struct {
	// Queue is the queue under test, empty.
	Queue queue.Queue
	// Send, when set, sends payloads so that they are visible (after delay) once it returns
	// nil. When nil the suite sends the way the engine does: with Publish if Queue is a
	// queue.Publisher, else with SendTx inside a transaction from Begin that it commits, else
	// with SendTx and a nil transaction.
	Send func(ctx context.Context, queueName string, payloads [][]byte, delay time.Duration) error
	// Begin starts a transaction that SendTx, AckTx and a queue.BatchSender's batch can join;
	// required with Capabilities.Transactions, nil otherwise.
	Begin func(ctx context.Context) (pgx.Tx, error)
}

// Capabilities are the optional behaviours of a backend. The tests of a missing one are skipped,
// with the reason.
type Capabilities struct {
	// Transactions means SendTx and AckTx act inside the pgx.Tx from Backend.Begin: sent messages
	// exist, and acked ones are gone, only if it commits. Without it, AckTx with a nil pgx.Tx acts
	// at once, and a queue.Publisher's SendTx returns queue.ErrNotTransactional.
	Transactions bool
	// ImmediateRead means Read returns a message as soon as it is visible: right after the send
	// that made it, the RetryLater that gave it back, or the moment its timeout passed. A backend
	// that hands out deliveries a consumer has buffered (queue/rabbitmq) lacks it; the suite then
	// polls Read, and watches for a moment before it concludes that nothing is readable.
	ImmediateRead bool
	// ExactReadCounts means Message.ReadCount counts every read. Without it counts above 2 may be
	// reported as 2 (RabbitMQ's classic queues only flag a redelivery).
	ExactReadCounts bool
	// Ordered means Read returns messages oldest first (the order of the payloads of one send,
	// and sends in the order they returned).
	Ordered bool
	// DatedBack means a send with a negative delay dates its messages back: they are visible at
	// once and read before the messages made visible since (the engine's priority credit).
	DatedBack bool
}

// The queue names the suite uses; Config.Queues lists them all.
const (
	QueueMain   = "q"
	QueueOther  = "other"
	QueueUnused = "unused"
)

// Timing of the suite: every wait is bounded by waitTimeout.
const (
	// waitTimeout bounds how long the suite waits for a message or a wake-up that should come.
	waitTimeout = 5 * time.Second
	// pollEvery is how often Read is called while waiting.
	pollEvery = 10 * time.Millisecond
	// settleWindow is how long "nothing readable" is watched for on a backend without
	// ImmediateRead.
	settleWindow = 200 * time.Millisecond
	// dueMargin is how long before a message is due noneBefore stops looking for it.
	dueMargin = 100 * time.Millisecond
	// hidden is a visibility timeout that never passes during a test.
	hidden = time.Hour
	// clockSlack forgives the difference between the test's clock and the backend's when checking
	// that a message did not come early.
	clockSlack = 10 * time.Millisecond
)

// Run runs the conformance suite against h's backend, one parallel subtest per behaviour.
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.New == nil {
		t.Fatal("queuetest: Harness.New is nil")
	}
	groups := []struct {
		name string
		run  func(*testing.T, Harness)
	}{
		{"Send", testSend},
		{"Read", testRead},
		{"Ack", testAck},
		{"VisibilityTimeout", testVisibilityTimeout},
		{"Extend", testExtend},
		{"RetryLater", testRetryLater},
		{"Delay", testDelay},
		{"DatedBack", testDatedBack}, // priority.go
		{"Transactions", testTransactions},
		{"BatchSender", testBatchSender},
		{"BatchAcker", testBatchAcker},
		{"BatchHolder", testBatchHolder},
		{"Listen", testListen},
		{"Inspector", testInspector},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			g.run(t, h)
		})
	}
}

// bundle is one subtest's queue and helpers.
type bundle struct {
	Backend
	caps Capabilities
	ctx  context.Context
}

// setup opens a fresh backend for one subtest, with Listen's poll at an hour.
func setup(t testing.TB, h Harness) *bundle {
	t.Helper()
	return setupWith(t, h, time.Hour)
}

// setupWith opens a fresh backend whose Listen polls every pollInterval.
func setupWith(t testing.TB, h Harness, pollInterval time.Duration) *bundle {
	t.Helper()
	be := h.New(t, Config{PollInterval: pollInterval, Queues: []string{QueueMain, QueueOther, QueueUnused}})
	require.NotNil(t, be.Queue, "Harness.New returned no queue")
	if h.Capabilities.Transactions {
		require.NotNil(t, be.Begin, "a backend with Transactions needs Backend.Begin")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return &bundle{Backend: be, caps: h.Capabilities, ctx: ctx}
}

// trySend sends payloads as Backend.Send says.
func (b *bundle) trySend(name string, delay time.Duration, payloads ...string) error {
	return b.sendBytes(name, delay, toBytes(payloads))
}

// sendBytes is trySend with the payloads as the backend takes them.
func (b *bundle) sendBytes(name string, delay time.Duration, raw [][]byte) error {
	if b.Send != nil {
		return b.Send(b.ctx, name, raw, delay)
	}
	if p, ok := b.Queue.(queue.Publisher); ok {
		return p.Publish(b.ctx, name, raw, delay)
	}
	if b.caps.Transactions {
		tx, err := b.Begin(b.ctx)
		if err != nil {
			return err
		}
		if err := b.Queue.SendTx(b.ctx, tx, name, raw, delay); err != nil {
			_ = tx.Rollback(b.ctx)
			return err
		}
		return tx.Commit(b.ctx)
	}
	return b.Queue.SendTx(b.ctx, nil, name, raw, delay)
}

// send sends payloads and fails the test on error.
func (b *bundle) send(t testing.TB, name string, delay time.Duration, payloads ...string) {
	t.Helper()
	require.NoError(t, b.trySend(name, delay, payloads...), "send to queue %q", name)
}

// sendTx sends payloads to QueueMain with SendTx inside tx.
func (b *bundle) sendTx(tx pgx.Tx, payloads ...string) error {
	return b.Queue.SendTx(b.ctx, tx, QueueMain, toBytes(payloads), 0)
}

// begin starts a transaction that is rolled back when the test ends if still open.
func (b *bundle) begin(t testing.TB) pgx.Tx {
	t.Helper()
	tx, err := b.Begin(b.ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	return tx
}

// read returns the n messages that are visible now, each hidden for vt: with ImmediateRead one
// Read must return them all; without it Read is polled until they have come.
func (b *bundle) read(t testing.TB, name string, n int, vt time.Duration) []queue.Message {
	t.Helper()
	if !b.caps.ImmediateRead {
		return b.await(t, name, n, vt)
	}
	msgs, err := b.Queue.Read(b.ctx, name, n, vt)
	require.NoError(t, err)
	require.Len(t, msgs, n, "messages readable at once from queue %q: %s", name, payloadsOf(msgs))
	return msgs
}

// await polls Read until it has n messages, for messages that become visible in time; it fails
// the test after waitTimeout.
func (b *bundle) await(t testing.TB, name string, n int, vt time.Duration) []queue.Message {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	var got []queue.Message
	for {
		msgs, err := b.Queue.Read(b.ctx, name, n-len(got), vt)
		require.NoError(t, err)
		got = append(got, msgs...)
		if len(got) == n {
			return got
		}
		if time.Now().After(deadline) {
			require.FailNowf(t, "messages did not come", "read %d messages from queue %q within %v, want %d: %s",
				len(got), name, waitTimeout, n, payloadsOf(got))
		}
		time.Sleep(pollEvery)
	}
}

// none checks that nothing is readable from the queue: one Read with ImmediateRead, Reads for
// settleWindow without.
func (b *bundle) none(t testing.TB, name string) {
	t.Helper()
	window := time.Duration(0)
	if !b.caps.ImmediateRead {
		window = settleWindow
	}
	b.noneUntil(t, name, time.Now().Add(window))
}

// noneFor checks that nothing is readable from the queue during d.
func (b *bundle) noneFor(t testing.TB, name string, d time.Duration) {
	t.Helper()
	b.noneUntil(t, name, time.Now().Add(d))
}

// noneBefore checks that nothing is readable from the queue until shortly before due, when a
// message is due to become visible. On a machine so slow that this moment has passed already it
// reads nothing, and leaves the check to requireNotBefore once the message has come.
func (b *bundle) noneBefore(t testing.TB, name string, due time.Time) {
	t.Helper()
	if deadline := due.Add(-dueMargin); time.Now().Before(deadline) {
		b.noneUntil(t, name, deadline)
	}
}

// noneUntil checks that nothing is readable from the queue until deadline, reading at least once.
func (b *bundle) noneUntil(t testing.TB, name string, deadline time.Time) {
	t.Helper()
	for {
		msgs, err := b.Queue.Read(b.ctx, name, 10, hidden)
		require.NoError(t, err)
		require.Empty(t, msgs, "nothing should be readable from queue %q: %s", name, payloadsOf(msgs))
		if !time.Now().Before(deadline) {
			return
		}
		time.Sleep(pollEvery)
	}
}

// ack acks msgs on the queue and fails the test on error.
func (b *bundle) ack(t testing.TB, name string, msgs ...queue.Message) {
	t.Helper()
	require.NoError(t, b.Queue.Ack(b.ctx, name, ids(msgs)...))
}

func ids(msgs []queue.Message) []int64 {
	out := make([]int64, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

func toBytes(payloads []string) [][]byte {
	if payloads == nil {
		return nil
	}
	out := make([][]byte, len(payloads))
	for i, p := range payloads {
		out[i] = []byte(p)
	}
	return out
}

func payloadsOf(msgs []queue.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = string(m.Payload)
	}
	return out
}

// canonical re-encodes a JSON document with sorted keys and no insignificant white space, so that
// payloads a backend normalised compare equal.
func canonical(t testing.TB, doc []byte) string {
	t.Helper()
	var v any
	require.NoError(t, json.Unmarshal(doc, &v), "payload %s is not JSON", doc)
	out, err := json.Marshal(v)
	require.NoError(t, err)
	return string(out)
}

// requirePayloads checks that msgs carry the want documents, compared as JSON, in that order.
func requirePayloads(t testing.TB, want []string, msgs []queue.Message) {
	t.Helper()
	require.Equal(t, canonicalAll(t, want), canonicalAll(t, payloadsOf(msgs)), "payloads, in order")
}

// requirePayloadSet checks that msgs carry the want documents, compared as JSON, in any order.
func requirePayloadSet(t testing.TB, want []string, msgs []queue.Message) {
	t.Helper()
	w, g := canonicalAll(t, want), canonicalAll(t, payloadsOf(msgs))
	slices.Sort(w)
	slices.Sort(g)
	require.Equal(t, w, g, "payloads, in any order")
}

func canonicalAll(t testing.TB, docs []string) []string {
	t.Helper()
	out := make([]string, len(docs))
	for i, d := range docs {
		out[i] = canonical(t, []byte(d))
	}
	return out
}

// requireNotBefore checks that at least d passed since start, give or take clockSlack.
func requireNotBefore(t testing.TB, start time.Time, d time.Duration, what string) {
	t.Helper()
	elapsed := time.Since(start)
	require.GreaterOrEqual(t, elapsed, d-clockSlack, "%s after %v, not before %v", what, elapsed, d)
}

// numbered returns n payloads {"i": 0} ... {"i": n-1}.
func numbered(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(`{"i": %d}`, i)
	}
	return out
}

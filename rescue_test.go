package tasker_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/queue"
	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

// claimAsDeadWorker claims a step for a worker that then vanishes: its lease runs out unrenewed.
func claimAsDeadWorker(t testing.TB, b *bundle, task *tasker.Task, step string) {
	t.Helper()
	got, err := b.engine.GetTask(context.Background(), task.ID)
	require.NoError(t, err)
	s, ok := got.Step(step)
	require.True(t, ok)
	_, err = b.st.ClaimStep(context.Background(), store.ClaimStepParams{StepID: s.ID, WorkerID: "dead-worker", Lease: 50 * time.Millisecond})
	require.NoError(t, err)
}

func TestRescuerRetriesAStepWhoseWorkerDied(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		b := setup(t, func(c *tasker.Config) { c.Lease = time.Second; c.RescueInterval = 100 * time.Millisecond })
		b.register(t, linearYAML)
		b.engine.HandleFunc("add_one", addOne)
		task := b.create(t, "test", "linear", nil)
		claimAsDeadWorker(t, b, task, "a")
		b.start(t)

		got := b.wait(t, task.ID)
		require.Equal(t, tasker.TaskComplete, got.State)
		a, _ := got.Step("a")
		require.Equal(t, 2, a.Attempts, "the dead worker's attempt counts")
		require.Equal(t, "lease_expired", a.LastError.Kind)
		require.Contains(t, a.LastError.Message, "dead-worker")
		trs := requireLegalTransitions(t, b.engine, task.ID)
		var failure *tasker.StepFailure
		for _, tr := range trs {
			if tr.StepName == "a" && tr.Event == "fail_retryable" {
				failure = tr.Failure()
				require.Contains(t, string(tr.Metadata), `"worker_id": "dead-worker"`)
			}
		}
		require.NotNil(t, failure, "the crash is in the step's error history")
		require.Equal(t, 1, failure.Attempt)
	})
}

func TestRescuerFailsAStepWithNoAttemptLeft(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		b := setup(t, func(c *tasker.Config) { c.Lease = time.Second; c.RescueInterval = 100 * time.Millisecond })
		b.register(t, flakyTemplate(1, "5"))
		b.engine.HandleFunc("flaky", addOne)
		b.engine.HandleFunc("add_one", addOne)
		task := b.create(t, "test", "flaky", nil)
		claimAsDeadWorker(t, b, task, "first")
		b.start(t)

		got := b.wait(t, task.ID)
		require.Equal(t, tasker.TaskBlockedByFailures, got.State)
		first, _ := got.Step("first")
		require.Equal(t, tasker.StepError, first.State)
		require.Equal(t, 1, first.Attempts)
		require.Equal(t, "lease_expired", first.LastError.Kind)
		requireLegalTransitions(t, b.engine, task.ID)
	})
}

// TestLongHandlerKeepsItsLease runs a handler for several lease lengths: its heartbeat renews the
// lease, so the rescuer never mistakes it for a dead one.
func TestLongHandlerKeepsItsLease(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		b := setup(t, func(c *tasker.Config) { c.Lease = 600 * time.Millisecond; c.RescueInterval = 100 * time.Millisecond })
		b.register(t, flakyTemplate(3, "10"))
		b.engine.HandleFunc("flaky", func(ctx context.Context, s *tasker.Step) (any, error) {
			select {
			case <-time.After(2 * time.Second):
				return 41, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		})
		b.engine.HandleFunc("add_one", addOne)
		b.start(t)
		got := b.wait(t, b.create(t, "test", "flaky", nil).ID)
		require.Equal(t, tasker.TaskComplete, got.State)
		first, _ := got.Step("first")
		require.Equal(t, 1, first.Attempts, "no rescue of a live handler")
		require.Nil(t, first.LastError)
	})
}

// stallingHeartbeats is the engine's store with its first heartbeat held until release is closed,
// as a worker stalled (a long pause, a network partition) would be: its lease runs out meanwhile.
type stallingHeartbeats struct {
	store.Store
	stalled, release chan struct{}
	once             sync.Once
}

func (s *stallingHeartbeats) Heartbeat(ctx context.Context, p store.HeartbeatParams) (statemachine.StepState, error) {
	first := false
	s.once.Do(func() { first = true })
	if first {
		close(s.stalled)
		<-s.release
	}
	return s.Store.Heartbeat(ctx, p)
}

// TestStalledWorkerLosesItsLease: a worker whose heartbeat stalls past its lease has its step
// rescued and run again; when the heartbeat comes back it finds the step gone and cancels the
// stale handler with ErrLeaseLost, whose outcome is never recorded.
func TestStalledWorkerLosesItsLease(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		base := setup(t)
		q, _ := backendQueue(t, base)
		st := &stallingHeartbeats{Store: base.st, stalled: make(chan struct{}), release: make(chan struct{})}
		b := base.sibling(t, func(c *tasker.Config) {
			c.Store, c.Queue = st, q
			c.Lease, c.RescueInterval = 600*time.Millisecond, 100*time.Millisecond
		})
		b.register(t, flakyTemplate(3, "30"))
		cause := make(chan error, 1)
		b.engine.HandleFunc("flaky", func(ctx context.Context, s *tasker.Step) (any, error) {
			if s.Attempt == 1 {
				<-ctx.Done()
				cause <- context.Cause(ctx)
				return "too late", nil // dropped: the step is no longer this attempt's
			}
			return 41, nil
		})
		b.engine.HandleFunc("add_one", addOne)
		b.start(t)
		task := b.create(t, "test", "flaky", nil)
		<-st.stalled
		got := b.wait(t, task.ID) // attempt 2 completes while attempt 1 still runs
		require.Equal(t, tasker.TaskComplete, got.State)
		close(st.release)
		select {
		case err := <-cause:
			require.ErrorIs(t, err, tasker.ErrLeaseLost)
		case <-time.After(10 * time.Second):
			t.Fatal("the stale handler was never cancelled")
		}
		got, err := b.engine.GetTask(context.Background(), task.ID)
		require.NoError(t, err)
		first, _ := got.Step("first")
		require.Equal(t, tasker.StepComplete, first.State)
		require.Equal(t, 2, first.Attempts)
		require.Equal(t, int64(41), jsonInt(t, first.Result), "the stale attempt's result was dropped")
		require.NotNil(t, first.LastError)
		require.Equal(t, "lease_expired", first.LastError.Kind)
		requireLegalTransitions(t, b.engine, task.ID)
	})
}

// lostCommitReply commits the first outcome that hands its worker a next step (ClaimNext), then
// reports an error, as a connection lost while reading COMMIT's reply would.
type lostCommitReply struct {
	store.Store
	once sync.Once
	lost atomic.Bool
}

func (s *lostCommitReply) RecordOutcome(ctx context.Context, p store.OutcomeParams) (*store.OutcomeResult, error) {
	res, err := s.Store.RecordOutcome(ctx, p)
	if err == nil && res.Next != nil {
		s.once.Do(func() { s.lost.Store(true); err = errors.New("unexpected EOF reading the reply to COMMIT") })
		if err != nil {
			return nil, err
		}
	}
	return res, err
}

// startHandedChain runs, on a sibling of base with store st and queue q (a 600 ms lease, rescues
// every 100 ms), a chain first -> second whose first hands second over; it returns the engine and
// second's handler runs.
func startHandedChain(t *testing.T, base *bundle, st store.Store, q queue.Queue) (*bundle, *atomic.Int32) {
	t.Helper()
	b := base.sibling(t, func(c *tasker.Config) {
		c.Store, c.Queue = st, q
		c.Lease, c.RescueInterval = 600*time.Millisecond, 100*time.Millisecond
	})
	b.register(t, `
name: chain
namespace_name: test
version: 1.0.0
steps:
  - name: first
    handler: {callable: first}
  - name: second
    handler: {callable: second}
    retry: {retryable: false, max_attempts: 1}
    dependencies: [first]
`)
	secondRuns := &atomic.Int32{}
	b.engine.HandleFunc("first", func(context.Context, *tasker.Step) (any, error) { return 1, nil })
	b.engine.HandleFunc("second", func(context.Context, *tasker.Step) (any, error) {
		secondRuns.Add(1)
		return 2, nil
	})
	b.start(t)
	return b, secondRuns
}

// TestUncertainCommitGivesTheHandedStepBack: an outcome commits, handing its worker the next step,
// but the worker never learns that it committed (its retry then finds the step moved on). The worker
// gives the handed step back without spending its attempt, and it runs once its message surfaces,
// even with a single attempt allowed (found in review: it was left to the lease rescuer, which
// failed it for good without ever running it).
func TestUncertainCommitGivesTheHandedStepBack(t *testing.T) {
	t.Parallel()
	base := setupOn(t, backendPostgres)
	q, _ := backendQueue(t, base)
	st := &lostCommitReply{Store: base.st}
	b, secondRuns := startHandedChain(t, base, st, q)
	got := b.wait(t, b.create(t, "test", "chain", nil).ID)
	require.True(t, st.lost.Load(), "the lost reply was simulated")
	second, _ := got.Step("second")
	require.Equal(t, tasker.TaskComplete, got.State, "second: %s after %d attempts, %d runs", second.State, second.Attempts, secondRuns.Load())
	require.Equal(t, int32(1), secondRuns.Load())
	require.Equal(t, 1, second.Attempts)
	trs := requireLegalTransitions(t, b.engine, got.ID)
	var released bool
	for _, tr := range trs {
		released = released || (tr.StepName == "second" && tr.Event == "release")
	}
	require.True(t, released, "the handed step was given back")
}

// lostCommitReplyAndHeldMessage is lostCommitReply on a loaded machine: the outcome's call outlives
// the lease it started with, so by the time its worker gives the handed step back, the step's held
// message has surfaced and another engine has read it, found the step in progress at its claim
// and dropped it, as a duplicate delivery is (the Ack here is that engine's).
type lostCommitReplyAndHeldMessage struct {
	store.Store
	q      queue.Queue
	once   sync.Once
	lost   atomic.Bool
	ackErr error
}

func (s *lostCommitReplyAndHeldMessage) RecordOutcome(ctx context.Context, p store.OutcomeParams) (*store.OutcomeResult, error) {
	res, err := s.Store.RecordOutcome(ctx, p)
	if err == nil && res.Next != nil {
		s.once.Do(func() {
			s.lost.Store(true)
			s.ackErr = s.q.Ack(ctx, p.Namespace, res.Next.MessageID)
			err = errors.New("timeout: context deadline exceeded reading the reply to COMMIT")
		})
		if err != nil {
			return nil, err
		}
	}
	return res, err
}

// TestHandedStepGivenBackRunsWhenItsHeldMessageIsGone: as TestUncertainCommitGivesTheHandedStepBack,
// but the handed step's held message was dropped meanwhile by a sibling engine that found the step
// in progress. The step given back must still run: the release enqueues it with a message of its
// own (found in TestSeveralEnginesShareOneDatabase on a loaded machine: the step stayed enqueued
// with no message, and on pgqueue, which has no sweeper, for good).
func TestHandedStepGivenBackRunsWhenItsHeldMessageIsGone(t *testing.T) {
	t.Parallel()
	base := setupOn(t, backendPostgres)
	q, _ := backendQueue(t, base)
	st := &lostCommitReplyAndHeldMessage{Store: base.st, q: q}
	b, secondRuns := startHandedChain(t, base, st, q)
	got := b.waitWithin(t, b.create(t, "test", "chain", nil).ID, 15*time.Second)
	require.True(t, st.lost.Load(), "the lost reply was simulated")
	require.NoError(t, st.ackErr, "the held message was dropped")
	second, _ := got.Step("second")
	require.Equal(t, tasker.TaskComplete, got.State, "second: %s after %d attempts, %d runs", second.State, second.Attempts, secondRuns.Load())
	require.Equal(t, int32(1), secondRuns.Load())
	require.Equal(t, 1, second.Attempts)
	requireLegalTransitions(t, b.engine, got.ID)
}

// TestStaleAttemptIsCancelledWhenTheSameEngineRunsTheNext: attempt 1's heartbeat stalls past its
// lease, the step is rescued, and attempt 2 is claimed by the same engine (the same worker ID).
// When attempt 1's heartbeat comes back it must not pass for attempt 2's: attempt 1 is cancelled
// with ErrLeaseLost while attempt 2 runs on (found in review: both ran at once).
func TestStaleAttemptIsCancelledWhenTheSameEngineRunsTheNext(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		base := setup(t)
		q, _ := backendQueue(t, base)
		st := &stallingHeartbeats{Store: base.st, stalled: make(chan struct{}), release: make(chan struct{})}
		b := base.sibling(t, func(c *tasker.Config) {
			c.Store, c.Queue = st, q
			c.Lease, c.RescueInterval = 600*time.Millisecond, 100*time.Millisecond
		})
		b.register(t, flakyTemplate(3, "30"))
		cause := make(chan error, 1)
		secondStarted, releaseSecond := make(chan struct{}), make(chan struct{})
		b.engine.HandleFunc("flaky", func(ctx context.Context, s *tasker.Step) (any, error) {
			if s.Attempt == 1 {
				<-ctx.Done()
				cause <- context.Cause(ctx)
				return nil, context.Cause(ctx)
			}
			close(secondStarted)
			select {
			case <-releaseSecond:
				return 41, nil
			case <-ctx.Done():
				return nil, context.Cause(ctx)
			}
		})
		b.engine.HandleFunc("add_one", addOne)
		b.start(t)
		task := b.create(t, "test", "flaky", nil)
		<-st.stalled
		<-secondStarted
		close(st.release) // attempt 1's heartbeat comes back while attempt 2 runs
		select {
		case err := <-cause:
			require.ErrorIs(t, err, tasker.ErrLeaseLost)
		case <-time.After(5 * time.Second):
			t.Fatal("attempt 1 still runs beside attempt 2 after its heartbeat came back")
		}
		close(releaseSecond)
		got := b.wait(t, task.ID)
		require.Equal(t, tasker.TaskComplete, got.State)
		first, _ := got.Step("first")
		require.Equal(t, 2, first.Attempts)
		require.Equal(t, int64(41), jsonInt(t, first.Result))
	})
}

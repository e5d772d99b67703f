package queuetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/tasker-systems/tasker/queue"
)

// StopTimeout is how long Listener.Stop waits for Listen to return after its context ended.
const StopTimeout = 3 * time.Second

// Listener is one queue.Queue.Listen call run for a test. It records the wake-ups without ever
// blocking Listen, and fails the test if Listen wakes a queue it was not asked to listen to, or
// does not return nil promptly once stopped. Create it with Listen.
type Listener struct {
	t      testing.TB
	queues map[string]bool
	wakes  chan string
	cancel context.CancelFunc
	done   chan error
	stop   sync.Once

	mu    sync.Mutex
	stray map[string]int // queues woken that Listen was not asked to listen to
}

// Listen runs q.Listen on the named queues in a goroutine of its own until Stop is called or the
// test ends.
func Listen(t testing.TB, q queue.Queue, queues ...string) *Listener {
	t.Helper()
	l := &Listener{t: t, queues: map[string]bool{}, wakes: make(chan string, 4096), done: make(chan error, 1),
		stray: map[string]int{}}
	for _, name := range queues {
		l.queues[name] = true
	}
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	go func() { l.done <- q.Listen(ctx, queues, l.wake) }()
	t.Cleanup(l.Stop)
	return l
}

func (l *Listener) wake(name string) {
	if !l.queues[name] {
		l.mu.Lock()
		l.stray[name]++
		l.mu.Unlock()
	}
	select {
	case l.wakes <- name:
	default: // the test is not keeping up; a wake-up is only a hint
	}
}

// C delivers the names of the queues woken, in order. Expect, ExpectNone, Drain and Quiet take
// from it too.
func (l *Listener) C() <-chan string { return l.wakes }

// Expect waits for a wake-up of the named queue, skipping others, and fails the test if none
// comes within the given time. Like ExpectNone, it must be called from the test's goroutine.
func (l *Listener) Expect(queueName string, within time.Duration) {
	l.t.Helper()
	deadline := time.After(within)
	for {
		select {
		case got := <-l.wakes:
			if got == queueName {
				return
			}
		case <-deadline:
			l.t.Fatalf("no wake-up for queue %q within %v", queueName, within)
		}
	}
}

// ExpectNone fails the test if the named queue is woken during the given time.
func (l *Listener) ExpectNone(queueName string, during time.Duration) {
	l.t.Helper()
	deadline := time.After(during)
	for {
		select {
		case got := <-l.wakes:
			if got == queueName {
				l.t.Fatalf("unexpected wake-up for queue %q", queueName)
			}
		case <-deadline:
			return
		}
	}
}

// Drain forgets the wake-ups received so far.
func (l *Listener) Drain() {
	for {
		select {
		case <-l.wakes:
		default:
			return
		}
	}
}

// Quiet forgets wake-ups until none has come for the given time, for at most five seconds: the
// wake-ups with which a backend announces that it is listening may come in several steps.
func (l *Listener) Quiet(silence time.Duration) {
	giveUp := time.After(5 * time.Second)
	for {
		select {
		case <-l.wakes:
		case <-time.After(silence):
			return
		case <-giveUp:
			return
		}
	}
}

// Stop ends Listen's context and waits for it to return, failing the test if it returns an error,
// or nothing within StopTimeout. Calls after the first do nothing. Safe to call from any goroutine.
func (l *Listener) Stop() {
	l.stop.Do(func() {
		l.cancel()
		select {
		case err := <-l.done:
			if err != nil {
				l.t.Errorf("Listen returned %v after its context ended, want nil", err)
			}
		case <-time.After(StopTimeout):
			l.t.Errorf("Listen did not return within %v after its context ended", StopTimeout)
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		if len(l.stray) > 0 {
			l.t.Errorf("Listen woke queues it was not listening to (name: times): %v", l.stray)
		}
	})
}

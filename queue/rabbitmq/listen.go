package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// listener is one Listen call's wake function; once stopped it is never called again.
type listener struct {
	mu      sync.Mutex
	stopped bool
	wake    func(queue string)
}

func (l *listener) call(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.stopped {
		l.wake(name)
	}
}

// wakeQueue calls the wake functions of every Listen of the queue called name.
func (q *Queue) wakeQueue(name string) {
	q.mu.Lock()
	ls := slices.Clone(q.listeners[name])
	q.mu.Unlock()
	for _, l := range ls {
		l.call(name)
	}
}

// Listen implements queue.Queue. It starts a consumer on each named queue (or joins the running
// one) and calls wake(queue) when a delivery arrives, when a consumer (re)starts on a new
// connection, and every poll interval. When ctx ends it returns nil, after which wake is never
// called again; the consumers of queues that no other Listen is listening to are cancelled, and
// what they hold unread goes back to the broker, while messages already read stay settleable
// until acked or given back. It returns ErrClosed if the Queue closes first.
func (q *Queue) Listen(ctx context.Context, queues []string, wake func(queue string)) error {
	if len(queues) == 0 {
		return errors.New("rabbitmq: listen: no queues")
	}
	if wake == nil {
		return errors.New("rabbitmq: listen: nil wake function")
	}
	names := slices.Compact(slices.Sorted(slices.Values(queues)))
	for _, name := range names {
		if err := q.checkName(name); err != nil {
			return fmt.Errorf("rabbitmq: listen: %w", err)
		}
	}
	l := &listener{wake: wake}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return fmt.Errorf("rabbitmq: listen: %w", ErrClosed)
	}
	for _, name := range names {
		q.listeners[name] = append(q.listeners[name], l)
		q.ensureConsumer(name)
	}
	q.mu.Unlock()
	defer q.unlisten(l, names)

	wakeAll := func() {
		for _, name := range names {
			l.call(name)
		}
	}
	wakeAll()
	t := time.NewTicker(q.opt.pollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-q.ctx.Done():
			return fmt.Errorf("rabbitmq: listen: %w", ErrClosed)
		case <-t.C:
			wakeAll()
		}
	}
}

// unlisten removes l, stops the consumers nobody listens to any more and waits for a wake call in
// progress to return.
func (q *Queue) unlisten(l *listener, names []string) {
	q.mu.Lock()
	for _, name := range names {
		ls := slices.DeleteFunc(q.listeners[name], func(other *listener) bool { return other == l })
		if len(ls) > 0 {
			q.listeners[name] = ls
			continue
		}
		delete(q.listeners, name)
		if c := q.consumers[name]; c != nil {
			delete(q.consumers, name)
			close(c.stop)
		}
	}
	q.mu.Unlock()
	l.mu.Lock()
	l.stopped = true
	l.mu.Unlock()
}

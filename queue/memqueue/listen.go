package memqueue

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"time"

	"github.com/tasker-systems/tasker/internal/clock"
)

// listener is one running Listen call.
type listener struct {
	queues  map[string]struct{}
	poke    chan struct{}       // capacity 1: something changed, look again
	pending map[string]struct{} // queues to wake, guarded by Queue.mu
}

// notifyLocked tells the listeners of queueName that its messages changed; wake asks them to wake
// it (a message is visible now). Called with q.mu held.
func (q *Queue) notifyLocked(queueName string, wake bool) {
	for l := range q.listeners {
		if _, ok := l.queues[queueName]; !ok {
			continue
		}
		if wake {
			l.pending[queueName] = struct{}{}
		}
		select {
		case l.poke <- struct{}{}:
		default:
		}
	}
}

// Listen implements queue.Queue. It wakes every queue once at the start (as pgqueue does when its
// connection is in place), a queue as soon as a message sent to it or given back is visible, the
// queues whose delayed or timed-out messages become visible when they do, and every queue on the
// poll interval. wake is only called from Listen's own goroutine. Listen starts no goroutine and
// returns nil when ctx ends.
func (q *Queue) Listen(ctx context.Context, queues []string, wake func(queue string)) error {
	if len(queues) == 0 {
		return errors.New("memqueue: listen: no queues")
	}
	if wake == nil {
		return errors.New("memqueue: listen: nil wake function")
	}
	l := &listener{queues: map[string]struct{}{}, poke: make(chan struct{}, 1), pending: map[string]struct{}{}}
	var names []string
	for _, name := range queues {
		if _, dup := l.queues[name]; !dup {
			l.queues[name] = struct{}{}
			names = append(names, name)
		}
	}
	q.mu.Lock()
	q.listeners[l] = struct{}{}
	q.mu.Unlock()
	defer func() {
		q.mu.Lock()
		delete(q.listeners, l)
		q.mu.Unlock()
	}()
	if ctx.Err() != nil {
		return nil
	}
	for _, name := range names {
		wake(name)
	}

	ticker := time.NewTicker(q.pollInterval)
	defer ticker.Stop()
	// The timer for the next message to become visible, on the queue's clock: armed for an
	// absolute time, so that a clock moved by a test between the reading and the arming cannot
	// make it late.
	var (
		timer *clock.Timer
		armed time.Time
		never <-chan struct{} = make(chan struct{})
		seen                  = q.now() // messages visible by then have had their wake-up
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		q.mu.Lock()
		pending := l.pending
		l.pending = map[string]struct{}{}
		t := q.now()
		// The queues of messages that became visible since the last look, whether the timer fired
		// or the clock moved past them before it was armed (a test's clock jumps).
		next, ok, became := q.nextVisibleLocked(names, seen, t)
		seen = t
		for _, name := range became {
			pending[name] = struct{}{}
		}
		q.mu.Unlock()
		if ctx.Err() != nil {
			return nil
		}
		for _, name := range names {
			if _, ok := pending[name]; ok {
				wake(name)
			}
		}
		if timer != nil && (!ok || !next.Equal(armed)) {
			timer.Stop()
			timer = nil
		}
		if ok && timer == nil {
			timer, armed = clock.NewTimer(q.clock, next), next
		}
		timerC := never
		if timer != nil {
			timerC = timer.C
		}
		select {
		case <-ctx.Done():
			return nil
		case <-l.poke:
		case <-ticker.C:
			for _, name := range names {
				wake(name)
			}
		case <-timerC:
			timer = nil // the next look wakes the queues whose messages became visible
		}
	}
}

// errNulInString is what PostgreSQL says of a string holding \u0000, which jsonb cannot store.
var errNulInString = errors.New(`unsupported Unicode escape sequence: \u0000 cannot be converted to text`)

// jsonbAccepts reports why PostgreSQL's jsonb would refuse a valid JSON document: a string (or
// key) holding \u0000.
func jsonbAccepts(doc []byte) error {
	if !bytes.Contains(doc, []byte(`\u0000`)) {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if s, ok := tok.(string); ok && strings.ContainsRune(s, 0) {
			return errNulInString
		}
	}
}

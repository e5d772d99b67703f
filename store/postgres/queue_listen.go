package postgres

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgxlisten"
)

// Listen implements queue.Queue. It holds one dedicated connection, made from the pool's
// configuration rather than taken from the pool, so that it never starves the pool and survives the
// pool's connection recycling. When the connection drops, Listen logs the error and connects again
// after QueueReconnectDelayDefault; every successful (re)connect wakes all queues, because notifications
// sent while it was away are lost. The fallback poll runs throughout, also while disconnected.
func (q *Queue) Listen(ctx context.Context, queues []string, wake func(queue string)) error {
	if len(queues) == 0 {
		return errors.New("pgqueue: listen: no queues")
	}
	if wake == nil {
		return errors.New("pgqueue: listen: nil wake function")
	}
	listened := make(map[string]struct{}, len(queues))
	for _, name := range queues {
		listened[name] = struct{}{}
	}
	wakeAll := func() {
		for _, name := range queues {
			wake(name)
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	conns := &connTracker{}
	l := &pgxlisten.Listener{
		Connect: func(ctx context.Context) (*pgx.Conn, error) {
			cfg := q.pool.Config().ConnConfig.Copy()
			if cfg.RuntimeParams == nil {
				cfg.RuntimeParams = map[string]string{}
			}
			cfg.RuntimeParams["application_name"] = ListenApplicationName
			conn, err := pgx.ConnectConfig(ctx, cfg)
			if err != nil {
				return nil, err
			}
			conns.add(conn)
			return conn, nil
		},
		LogError: func(ctx context.Context, err error) {
			if ctx.Err() != nil {
				return // shutting down: the error is the cancellation itself
			}
			q.log.Error(err, "queue listener: connection trouble, will reconnect", "channel", q.channel)
		},
		ReconnectDelay: q.reconnectDelay,
	}
	l.Handle(q.channel, &wakeHandler{listened: listened, wake: wake, wakeAll: wakeAll, q: q})

	done := make(chan struct{})
	go func() {
		defer close(done)
		// Listen returns only when ctx ends: every other error is logged and retried.
		_ = l.Listen(ctx)
	}()

	ticker := time.NewTicker(q.pollInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			<-done
			conns.wait()
			return nil
		case <-done:
			// Only ctx's end stops pgxlisten with the Connect and handler set above.
			cancel()
			conns.wait()
			return nil
		case <-ticker.C:
			wakeAll()
		}
	}
}

// wakeHandler turns notifications on the schema's channel into wake-ups. As a BacklogHandler it
// also wakes every queue once LISTEN is in place on a new connection, so no message sent while the
// listener was disconnected waits for the poll.
type wakeHandler struct {
	listened map[string]struct{}
	wake     func(string)
	wakeAll  func()
	q        *Queue
}

func (h *wakeHandler) HandleNotification(_ context.Context, n *pgconn.Notification, _ *pgx.Conn) error {
	if _, ok := h.listened[n.Payload]; ok {
		h.wake(n.Payload)
	}
	return nil
}

func (h *wakeHandler) HandleBacklog(context.Context, string, *pgx.Conn) error {
	h.q.log.V(1).Info("queue listener connected", "channel", h.q.channel)
	h.wakeAll()
	return nil
}

// connTracker remembers the listener's connections until their resources are released. A
// connection interrupted by ctx closes asynchronously (pgconn sends a cancel request and a
// Terminate from a goroutine of its own); Listen waits for that so that nothing it started
// outlives it.
type connTracker struct {
	mu    sync.Mutex
	conns []*pgx.Conn
}

func (t *connTracker) add(c *pgx.Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	// Forget connections that are already fully closed.
	t.conns = slices.DeleteFunc(t.conns, func(old *pgx.Conn) bool {
		select {
		case <-old.PgConn().CleanupDone():
			return true
		default:
			return false
		}
	})
	t.conns = append(t.conns, c)
}

func (t *connTracker) wait() {
	t.mu.Lock()
	conns := t.conns
	t.conns = nil
	t.mu.Unlock()
	for _, c := range conns {
		<-c.PgConn().CleanupDone()
	}
}

package rabbitmq

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	amqp "github.com/rabbitmq/amqp091-go"
)

// dialTimeout bounds the TCP connect and the AMQP handshake of one connection attempt.
const dialTimeout = 30 * time.Second

// closeTimeout bounds the close handshake of a connection in Close.
const closeTimeout = 5 * time.Second

// link is one AMQP connection that re-establishes itself: its run goroutine watches the connection
// and, when it drops, dials again with backoff until the Queue closes. Users take the current
// connection with await; gen tells connections apart, so that state built on an old one (a
// channel, a declaration) is recognised as stale.
type link struct {
	q    *Queue
	role string

	mu     sync.Mutex
	conn   *amqp.Connection // nil while down
	gen    uint64
	up     chan struct{} // closed while conn is set
	closed bool
}

func newLink(q *Queue, role string) *link {
	return &link{q: q, role: role, up: make(chan struct{})}
}

// dial makes one connection attempt, abandoned at once when the Queue closes.
func (l *link) dial() (*amqp.Connection, error) {
	cfg := l.q.opt.amqpConfig
	props := amqp.NewConnectionProperties()
	for k, v := range cfg.Properties {
		props[k] = v
	}
	props.SetClientConnectionName(l.q.opt.connName + " " + l.role)
	cfg.Properties = props
	var stops []func() bool
	var stopsMu sync.Mutex
	if cfg.Dial == nil {
		cfg.Dial = func(network, addr string) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(l.q.ctx, dialTimeout)
			defer cancel()
			var d net.Dialer
			conn, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// Heartbeats start after the handshake: until then a deadline guards against a server
			// that accepts and says nothing, and Close cuts the handshake short.
			if err := conn.SetDeadline(time.Now().Add(dialTimeout)); err != nil {
				_ = conn.Close()
				return nil, err
			}
			stopsMu.Lock()
			stops = append(stops, context.AfterFunc(l.q.ctx, func() { _ = conn.SetDeadline(time.Now()) }))
			stopsMu.Unlock()
			return conn, nil
		}
	}
	conn, err := amqp.DialConfig(l.q.url, cfg)
	stopsMu.Lock()
	for _, stop := range stops {
		stop()
	}
	stopsMu.Unlock()
	return conn, err
}

// start makes conn the link's connection and starts watching it.
func (l *link) start(conn *amqp.Connection) {
	l.set(conn)
	l.q.wg.Add(1)
	go func() {
		defer l.q.wg.Done()
		l.run(conn)
	}()
}

// run watches the connection and replaces it when it drops, until the Queue closes.
func (l *link) run(conn *amqp.Connection) {
	for {
		lost := conn.NotifyClose(make(chan *amqp.Error, 1))
		var cause error = errors.New("connection closed")
		select {
		case <-l.q.ctx.Done():
			return
		case aerr := <-lost:
			if aerr != nil {
				cause = aerr
			}
		}
		l.setDown(conn)
		if l.q.ctx.Err() != nil {
			return
		}
		l.q.log.Error(cause, "rabbitmq: connection lost; reconnecting", "connection", l.role)
		conn = l.reconnect()
		if conn == nil {
			return
		}
		l.q.log.Info("rabbitmq: reconnected", "connection", l.role)
	}
}

// reconnect dials with exponential backoff until it succeeds, and installs the new connection; it
// returns nil when the Queue closes first.
func (l *link) reconnect() *amqp.Connection {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = l.q.opt.reconnectMin
	b.MaxInterval = l.q.opt.reconnectMax
	b.MaxElapsedTime = 0
	b.Reset()
	for attempt := 1; ; attempt++ {
		t := time.NewTimer(b.NextBackOff())
		select {
		case <-l.q.ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		conn, err := l.dial()
		if err != nil {
			if l.q.ctx.Err() != nil {
				return nil
			}
			l.q.log.Error(err, "rabbitmq: reconnect failed; will retry", "connection", l.role, "attempt", attempt)
			continue
		}
		if !l.set(conn) {
			_ = conn.Close() // Close ran meanwhile
			return nil
		}
		return conn
	}
}

// set installs conn; it reports false, installing nothing, when the link is closed.
func (l *link) set(conn *amqp.Connection) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.conn = conn
	l.gen++
	close(l.up)
	return true
}

func (l *link) setDown(conn *amqp.Connection) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == conn && conn != nil {
		l.conn = nil
		l.up = make(chan struct{})
	}
}

// current returns the connection and its generation, or nil while down.
func (l *link) current() (*amqp.Connection, uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.conn, l.gen
}

// await returns the connection, waiting while it is down until ctx or stop ends (stop may be nil).
// The connection may have dropped already; what is done with it then fails, and is retried.
func (l *link) await(ctx context.Context, stop <-chan struct{}) (*amqp.Connection, uint64, error) {
	for {
		l.mu.Lock()
		conn, gen, up := l.conn, l.gen, l.up
		l.mu.Unlock()
		if conn != nil {
			return conn, gen, nil
		}
		select {
		case <-up:
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		case <-stop:
			return nil, 0, errStopped
		case <-l.q.ctx.Done():
			return nil, 0, ErrClosed
		}
	}
}

// errStopped is await's answer to a stop request.
var errStopped = errors.New("rabbitmq: stopped")

// close closes the connection; the link installs no new one afterwards. A failed close handshake
// is only logged: the socket is closed all the same, and the broker takes back what was not acked.
func (l *link) close() {
	l.mu.Lock()
	l.closed = true
	conn := l.conn
	l.mu.Unlock()
	if conn == nil || conn.IsClosed() {
		return
	}
	if err := conn.CloseDeadline(time.Now().Add(closeTimeout)); err != nil && !errors.Is(err, amqp.ErrClosed) {
		l.q.log.V(1).Info("rabbitmq: close connection", "connection", l.role, "error", err.Error())
	}
}

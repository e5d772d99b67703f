package rabbitmq

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tasker-systems/tasker/queue"
)

// TestMain fails the package if any goroutine outlives the tests: Close must stop everything the
// Queue starts, and every test closes what it opens.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// EnvURL names the environment variable with the broker the tests use.
const EnvURL = "TASKER_TEST_RABBITMQ_URL"

// testURL is the broker the tests use: $TASKER_TEST_RABBITMQ_URL, else the local one.
func testURL() string {
	if u := os.Getenv(EnvURL); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

type bundle struct {
	ctx       context.Context
	prefix    string
	adminConn *amqp.Connection
	admin     *amqp.Channel

	mu     sync.Mutex
	queues []*Queue
	names  map[string]struct{}
}

// setup gives a test its own queue-name prefix, an admin channel to inspect the broker with, and
// deletes every queue the test touched when it ends. It fails (never skips) when the broker is
// down.
func setup(t testing.TB) *bundle {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	conn, err := amqp.Dial(testURL())
	if err != nil {
		t.Fatalf("cannot reach RabbitMQ at %s (set %s to use another broker; start the local one with "+
			"`rabbitmq-server -detached`, or install it with `apt-get install rabbitmq-server`): %v", testURL(), EnvURL, err)
	}
	admin, err := conn.Channel()
	require.NoError(t, err)
	b := &bundle{
		ctx:       ctx,
		prefix:    "tasker-test-" + strings.ToLower(rand.Text()[:10]) + ".",
		adminConn: conn,
		admin:     admin,
		names:     map[string]struct{}{},
	}
	t.Cleanup(func() {
		b.mu.Lock()
		qs := b.queues
		b.mu.Unlock()
		brokerNames := map[string]struct{}{}
		for _, q := range qs {
			require.NoError(t, q.Close())
			q.mu.Lock()
			for name := range q.declared {
				brokerNames[name] = struct{}{}
			}
			q.mu.Unlock()
			for name := range b.names {
				brokerNames[q.QueueName(name)] = struct{}{}
				brokerNames[q.DeadLetterQueueName(name)] = struct{}{}
			}
		}
		for name := range brokerNames {
			ch, err := conn.Channel() // one each: an error closes the channel
			require.NoError(t, err)
			if _, err := ch.QueueDelete(name, false, false, false); err != nil {
				t.Errorf("delete queue %q: %v", name, err)
			}
			_ = ch.Close()
		}
		ch, err := conn.Channel()
		require.NoError(t, err)
		require.NoError(t, ch.ExchangeDelete(b.prefix+"dead-letter", false, false))
		require.NoError(t, conn.Close())
	})
	return b
}

// open returns a new Queue with the test's prefix, closed when the test ends; names are the queue
// names the test will use, deleted at its end.
func (b *bundle) open(t testing.TB, names []string, opts ...Option) *Queue {
	t.Helper()
	return b.openURL(t, testURL(), names, opts...)
}

// openURL is open with another broker URL.
func (b *bundle) openURL(t testing.TB, url string, names []string, opts ...Option) *Queue {
	t.Helper()
	opts = append([]Option{WithPrefix(b.prefix), WithReconnectBackoff(20*time.Millisecond, 500*time.Millisecond),
		WithConnectionName("tasker-test " + t.Name())}, opts...)
	q, err := New(url, opts...)
	require.NoError(t, err)
	b.mu.Lock()
	b.queues = append(b.queues, q)
	for _, n := range names {
		b.names[n] = struct{}{}
	}
	b.mu.Unlock()
	return q
}

// publish publishes payloads and fails the test on error.
func publish(t *testing.T, ctx context.Context, q *Queue, name string, delay time.Duration, payloads ...string) {
	t.Helper()
	raw := make([][]byte, len(payloads))
	for i, p := range payloads {
		raw[i] = []byte(p)
	}
	require.NoError(t, q.Publish(ctx, name, raw, delay))
}

// readN reads until it has want messages, failing the test if they do not come within 10s.
func readN(t *testing.T, ctx context.Context, q *Queue, name string, want int, vt time.Duration) []queue.Message {
	t.Helper()
	var got []queue.Message
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < want {
		msgs, err := q.Read(ctx, name, want-len(got), vt)
		require.NoError(t, err)
		got = append(got, msgs...)
		if len(msgs) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("read %d messages from queue %q within 10s, want %d", len(got), name, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return got
}

// readNone checks that nothing can be read from the queue for a while.
func readNone(t *testing.T, ctx context.Context, q *Queue, name string, during time.Duration) {
	t.Helper()
	deadline := time.Now().Add(during)
	for time.Now().Before(deadline) {
		msgs, err := q.Read(ctx, name, 10, time.Minute)
		require.NoError(t, err)
		require.Empty(t, msgs, "nothing should be readable yet")
		time.Sleep(10 * time.Millisecond)
	}
}

// ready is how many messages the broker holds ready (not delivered) in a broker queue.
func (b *bundle) ready(t *testing.T, brokerName string) int {
	t.Helper()
	info, err := b.admin.QueueDeclarePassive(brokerName, true, false, false, false, nil)
	require.NoError(t, err, "inspect queue %q", brokerName)
	return info.Messages
}

// exists reports whether the broker has a queue of that name, on a channel of its own, since
// asking about a missing queue closes the channel.
func (b *bundle) exists(t *testing.T, brokerName string) bool {
	t.Helper()
	ch, err := b.adminConn.Channel()
	require.NoError(t, err)
	defer func() { _ = ch.Close() }()
	_, err = ch.QueueDeclarePassive(brokerName, true, false, false, false, nil)
	var aerr *amqp.Error
	if errors.As(err, &aerr) && aerr.Code == amqp.NotFound {
		return false
	}
	require.NoError(t, err)
	return true
}

// get takes one message from a broker queue (acked), failing the test if there is none within 10s.
func (b *bundle) get(t *testing.T, brokerName string) amqp.Delivery {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		d, ok, err := b.admin.Get(brokerName, true)
		require.NoError(t, err)
		if ok {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("no message in queue %q within 10s", brokerName)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ids(msgs []queue.Message) []int64 {
	out := make([]int64, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

// closeFromServer makes the broker close conn, as an operator or a broker shutting down would:
// rabbitmqctl close_connection, found by the connection's local port.
func closeFromServer(t *testing.T, conn *amqp.Connection) {
	t.Helper()
	port := conn.LocalAddr().(*net.TCPAddr).Port
	out, err := exec.Command("rabbitmqctl", "-q", "list_connections", "--no-table-headers", "pid", "peer_port").CombinedOutput()
	require.NoError(t, err, "rabbitmqctl list_connections (the reconnection tests need rabbitmqctl and the "+
		"broker's Erlang cookie, i.e. to run as root or rabbitmq on the broker's machine): %s", out)
	var pid string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 2 && fields[1] == strconv.Itoa(port) {
			pid = fields[0]
		}
	}
	require.NotEmpty(t, pid, "no broker connection from local port %d in:\n%s", port, out)
	out, err = exec.Command("rabbitmqctl", "-q", "close_connection", pid, "tasker test: closed by the server").CombinedOutput()
	require.NoError(t, err, "rabbitmqctl close_connection: %s", out)
}

func payloads(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(`{"i": %d}`, i)
	}
	return out
}

// proxy stands between a Queue and the broker so that a test can cut the network: down resets
// every connection and refuses new ones, as a broker that stops would; up lets them in again.
type proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newProxy(t *testing.T) *proxy {
	t.Helper()
	uri, err := amqp.ParseURI(testURL())
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &proxy{ln: ln, target: net.JoinHostPort(uri.Host, strconv.Itoa(uri.Port)), conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		_ = ln.Close()
		p.setDown(true)
		p.wg.Wait()
	})
	return p
}

// url is the test broker's URL with the proxy's address.
func (p *proxy) url(t *testing.T) string {
	uri, err := amqp.ParseURI(testURL())
	require.NoError(t, err)
	host, port, _ := net.SplitHostPort(p.ln.Addr().String())
	uri.Host = host
	uri.Port, _ = strconv.Atoi(port)
	return uri.String()
}

func (p *proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			_ = c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			defer p.wg.Done()
			_, _ = io.Copy(dst, src)
			_ = dst.Close()
			_ = src.Close()
		}
		p.wg.Add(2)
		go pipe(up, c)
		go pipe(c, up)
	}
}

// setDown cuts every connection and refuses new ones (true), or accepts them again (false).
func (p *proxy) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for c := range p.conns {
			_ = c.Close()
		}
		clear(p.conns)
	}
}

package rabbitmq

import (
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
)

// node is a private, throwaway RabbitMQ node for tests that stop or restart their broker, which
// they must never do to the broker every other test shares. It listens on 127.0.0.1 on a free
// port, keeps its data in a temporary directory, and is stopped and deleted when the test ends.
// When the test runs as root, the node runs as the rabbitmq OS user, as the Debian scripts do.
type node struct {
	name string
	port int
	dir  string
	env  []string
}

// newNode starts a private node. It fails the test (never skips) when rabbitmq-server is missing or
// the node does not start.
func newNode(t *testing.T) *node {
	t.Helper()
	for _, bin := range []string{"rabbitmq-server", "rabbitmqctl"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("private RabbitMQ node: %s not found (apt-get install rabbitmq-server): %v", bin, err)
		}
	}
	dir, err := os.MkdirTemp("", "tasker-rmq-")
	require.NoError(t, err)
	n := &node{name: "tasker-test-" + strings.ToLower(rand.Text()[:8]) + "@localhost", dir: dir}
	t.Cleanup(func() {
		n.stop(t)
		_ = os.RemoveAll(dir)
	})
	n.port = freePort(t)
	distPort := freePort(t)
	files := map[string]string{
		"rabbitmq.conf":   fmt.Sprintf("listeners.tcp.default = 127.0.0.1:%d\n", n.port),
		"enabled_plugins": "[].\n",
	}
	for name, content := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644))
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("rabbitmq")
		if err != nil {
			t.Fatalf("private RabbitMQ node: running as root, but there is no rabbitmq OS user to run it as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		for _, p := range []string{dir, filepath.Join(dir, "rabbitmq.conf"), filepath.Join(dir, "enabled_plugins")} {
			require.NoError(t, os.Chown(p, uid, gid))
		}
	}
	n.env = append(os.Environ(),
		"RABBITMQ_NODENAME="+n.name,
		"RABBITMQ_NODE_PORT="+strconv.Itoa(n.port),
		"RABBITMQ_DIST_PORT="+strconv.Itoa(distPort),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(dir, "log"),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(dir, "rabbitmq.conf"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(dir, "enabled_plugins"),
		"RABBITMQ_PID_FILE="+filepath.Join(dir, "pid"),
		"RABBITMQ_CONF_ENV_FILE="+filepath.Join(dir, "rabbitmq-env.conf"), // none: not the shared node's
		"ERL_EPMD_ADDRESS=127.0.0.1",
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}",
	)
	n.start(t)
	return n
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}

func (n *node) url() string { return fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", n.port) }

// start starts the node and waits until it accepts AMQP connections.
func (n *node) start(t *testing.T) {
	t.Helper()
	cmd := exec.Command("rabbitmq-server", "-detached")
	cmd.Env = n.env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("private RabbitMQ node: rabbitmq-server -detached: %v\n%s", err, out)
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		conn, err := amqp.Dial(n.url())
		if err == nil {
			_ = conn.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("private RabbitMQ node did not accept connections within 90s (logs in %s): %v", filepath.Join(n.dir, "log"), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop stops the node and waits for its process to end.
func (n *node) stop(t *testing.T) {
	t.Helper()
	cmd := exec.Command("rabbitmqctl", "-q", "-n", n.name, "stop", filepath.Join(n.dir, "pid"))
	cmd.Env = n.env
	if out, err := cmd.CombinedOutput(); err != nil && !strings.Contains(string(out), "no longer running") &&
		!strings.Contains(string(out), "not running") {
		t.Logf("private RabbitMQ node: rabbitmqctl stop: %v\n%s", err, out)
	}
}

// ctl runs rabbitmqctl against the node and returns its output.
func (n *node) ctl(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("rabbitmqctl", append([]string{"-q", "-n", n.name}, args...)...)
	cmd.Env = n.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Sprintf("rabbitmqctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

package chaos_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/chaos"
	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/internal/testrabbit"
	"github.com/tasker-systems/tasker/queue/rabbitmq"
)

// workerStalledLine is what the worker program prints on stdout when it holds a publish
// (worker/main.go).
const workerStalledLine = "chaos worker publish stalled"

// testRabbitMQ opens a RabbitMQ queue with the given prefix for the test process; when the test
// ends it closes it and deletes the chaos namespace's broker queues and the dead-letter exchange
// (delay queues expire by themselves). It fails, never skips, when the broker does not answer.
func testRabbitMQ(t *testing.T, url, prefix string) *rabbitmq.Queue {
	t.Helper()
	q, err := rabbitmq.New(url, rabbitmq.WithPrefix(prefix))
	require.NoError(t, err, testrabbit.Unreachable(url))
	testrabbit.DeleteAtCleanup(t, url, prefix, func() []string {
		return []string{q.QueueName(chaos.Namespace), q.DeadLetterQueueName(chaos.Namespace)}
	})
	t.Cleanup(func() { _ = q.Close() })
	return q
}

// brokerSteps lists the step names of the messages ready in a broker queue, without consuming
// them: it gets each with basic.get and no ack, and closing the channel gives them all back.
func brokerSteps(t *testing.T, url, brokerQueue string) []string {
	t.Helper()
	conn, err := amqp.Dial(url)
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	defer ch.Close()
	var steps []string
	for {
		d, ok, err := ch.Get(brokerQueue, false)
		if err != nil {
			var ae *amqp.Error
			if errors.As(err, &ae) && ae.Code == amqp.NotFound {
				return steps // never declared: nothing was ever published to it
			}
			require.NoError(t, err)
		}
		if !ok {
			return steps
		}
		var m struct {
			Step string `json:"step"`
		}
		require.NoError(t, json.Unmarshal(d.Body, &m), "message %s", d.Body)
		steps = append(steps, m.Step)
	}
}

// stepStates maps the only task's step names to their states.
func stepStates(t *testing.T, ctx context.Context, pool *pgxpool.Pool, sq func(string) string) map[string]string {
	t.Helper()
	rows, err := pool.Query(ctx, sq(`SELECT name, state FROM {s}.steps`))
	require.NoError(t, err)
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var name, state string
		require.NoError(t, rows.Scan(&name, &state))
		out[name] = state
	}
	require.NoError(t, rows.Err())
	return out
}

// stallingWorker runs the worker program with env and extra, waits until it prints
// workerStalledLine (it then blocks in a publish, after the commit that the publish follows), and
// returns the process, still running.
func stallingWorker(t *testing.T, bin string, env []string, logDir, name string, extra ...string) *exec.Cmd {
	t.Helper()
	logPath := filepath.Join(logDir, name+".log")
	cmd := exec.Command(bin)
	cmd.Env = append(append(append([]string{}, env...), extra...), "TASKER_CHAOS_WORKER_ID="+name)
	cmd.SysProcAttr = sysProcAttr()
	logFile, err := os.Create(logPath)
	require.NoError(t, err)
	t.Cleanup(func() { _ = logFile.Close() })
	cmd.Stderr = logFile
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	stalled := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), workerStalledLine) {
				stalled <- sc.Text()
				_, _ = io.Copy(io.Discard, out)
				return
			}
		}
		close(stalled)
	}()
	select {
	case line, ok := <-stalled:
		require.True(t, ok, "the worker exited before stalling:\n%s", tail(logPath, 30))
		t.Logf("%s", line)
	case <-time.After(60 * time.Second):
		t.Fatalf("the worker did not stall a publish within 60s:\n%s", tail(logPath, 30))
	}
	return cmd
}

// kill SIGKILLs a process and waits for it.
func kill(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	err := cmd.Wait()
	var ee *exec.ExitError
	require.True(t, errors.As(err, &ee), "the worker should have died of SIGKILL, got %v", err)
}

// TestRabbitMQPublisherKilledBetweenCommitAndPublish kills real processes at the one point where
// a queue outside the database can lose a message: after the transaction that enqueues a step
// commits and before its message reaches the broker. First a process creating a task dies before
// publishing the root step; then a worker dies after committing a step's outcome and before
// publishing the two steps it released. A fresh worker finishes the task from database state: the
// sweeper publishes the lost messages again, and a message the broker delivers again (the killed
// worker's unacknowledged delivery) is dropped at the claim. Every handler runs exactly once.
func TestRabbitMQPublisherKilledBetweenCommitAndPublish(t *testing.T) {
	ctx := context.Background()
	url := *flagRabbitURL
	db := testdb.New(t, testdb.WithMaxConns(4))
	sq := schemaQuery(db.Schema)
	require.NoError(t, chaos.CreateEffectsTable(ctx, db.Pool, db.Schema))
	prefix := fmt.Sprintf("tasker-chaos-%016x.", rand.Uint64())
	q := testRabbitMQ(t, url, prefix) // for its names and its clean-up
	brokerQueue := q.QueueName(chaos.Namespace)
	bin := buildWorker(t)
	workerURL, err := withPoolSize(db.URL, 4)
	require.NoError(t, err)
	env := append(os.Environ(),
		"TASKER_CHAOS_DATABASE_URL="+workerURL,
		"TASKER_CHAOS_SCHEMA="+db.Schema,
		"TASKER_CHAOS_RABBITMQ_URL="+url,
		"TASKER_CHAOS_RABBITMQ_PREFIX="+prefix,
		"TASKER_CHAOS_REPUBLISH_AFTER=1s",
		"TASKER_CHAOS_LEASE=2s",
		"TASKER_CHAOS_LEADER_TTL=1s",
		"TASKER_CHAOS_RESCUE_INTERVAL=200ms",
		"TASKER_CHAOS_MIN_SLEEP=1ms",
		"TASKER_CHAOS_MAX_SLEEP=2ms",
	)
	logs := t.TempDir()
	t.Cleanup(func() {
		if t.Failed() {
			for _, name := range []string{"creator", "worker-1"} {
				t.Logf("%s's log:\n%s", name, tail(filepath.Join(logs, name+".log"), 40))
			}
		}
	})

	// 1. The creator commits the task and dies before publishing its root step.
	creator := stallingWorker(t, bin, env, logs, "creator", "TASKER_CHAOS_CREATE=1", "TASKER_CHAOS_STALL_PUBLISH=1")
	require.Equal(t, map[string]string{"a": "enqueued", "b": "pending", "c": "pending", "d": "pending"}, stepStates(t, ctx, db.Pool, sq))
	kill(t, creator)
	require.Empty(t, brokerSteps(t, url, brokerQueue), "a's message never reached the broker")

	// 2. A worker: the sweeper publishes a again (publish 1); a runs, its outcome commits and
	// releases b and c, and the worker dies in the publish of their messages (publish 2).
	worker1 := stallingWorker(t, bin, env, logs, "worker-1", "TASKER_CHAOS_STALL_PUBLISH=2")
	require.Equal(t, map[string]string{"a": "complete", "b": "enqueued", "c": "enqueued", "d": "pending"}, stepStates(t, ctx, db.Pool, sq))
	kill(t, worker1)
	inBroker := brokerSteps(t, url, brokerQueue)
	require.NotContains(t, inBroker, "b", "b's message never reached the broker")
	require.NotContains(t, inBroker, "c", "c's message never reached the broker")
	t.Logf("messages in the broker after the second kill: %v (a's, when the worker had not acked it yet)", inBroker)

	// 3. A fresh worker finishes the task from database state.
	fl := newFleet(t, bin, env, 1)
	n, err := waitSettled(ctx, db.Pool, sq, 1, 60*time.Second, 30*time.Second)
	require.NoError(t, err, diagnose(ctx, db.Pool, sq))
	require.Equal(t, 1, n)
	for _, msg := range fl.stop(20 * time.Second) {
		t.Error(msg)
	}
	require.Equal(t, map[string]string{"a": "complete", "b": "complete", "c": "complete", "d": "complete"}, stepStates(t, ctx, db.Pool, sq))
	runs := countBy(t, ctx, db.Pool, sq(`SELECT step_name, count(*) FROM {s}.chaos_effects GROUP BY step_name`))
	require.Equal(t, map[string]int{"a": 1, "b": 1, "c": 1, "d": 1}, runs, "every handler ran exactly once")
	checkTaskPaths(t, ctx, db.Pool, sq)
	checkStepPaths(t, ctx, db.Pool, sq, &report{})
	require.Empty(t, brokerSteps(t, url, brokerQueue), "every message was acknowledged")
}

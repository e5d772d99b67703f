// Package testrabbit gives tasker's tests outside queue/rabbitmq the RabbitMQ broker they use and
// cleans up after them.
package testrabbit

import (
	"os"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

// EnvURL names the environment variable with the broker the tests use.
const EnvURL = "TASKER_TEST_RABBITMQ_URL"

// URL is $TASKER_TEST_RABBITMQ_URL, else the local broker.
func URL() string {
	if u := os.Getenv(EnvURL); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

// Unreachable is the advice a test gives when the broker at url does not answer.
func Unreachable(url string) string {
	return "RabbitMQ must answer at " + url + " (rabbitmq-server -detached, or set " + EnvURL + ")"
}

// DeleteAtCleanup deletes, when t ends, the broker queues that brokerQueues returns then (main and
// dead-letter queues, by their broker names) and the dead-letter exchange of a queue prefix; delay
// queues expire by themselves. Register it before the queue's Close, so that Close runs first.
func DeleteAtCleanup(t testing.TB, url, prefix string, brokerQueues func() []string) {
	t.Cleanup(func() {
		conn, err := amqp.Dial(url)
		if err != nil {
			t.Logf("cannot delete the test's broker queues: %v", err)
			return
		}
		defer conn.Close()
		for _, name := range brokerQueues() {
			if ch, err := conn.Channel(); err == nil { // one each: an error closes the channel
				_, _ = ch.QueueDelete(name, false, false, false)
				_ = ch.Close()
			}
		}
		if ch, err := conn.Channel(); err == nil {
			_ = ch.ExchangeDelete(prefix+"dead-letter", false, false)
			_ = ch.Close()
		}
	})
}

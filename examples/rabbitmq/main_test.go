package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"strings"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/testdb"
)

func TestRabbitMQExampleRunsEveryTask(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	prefix := "tasker-test-" + strings.ToLower(rand.Text()[:10]) + "."
	t.Cleanup(func() {
		conn, err := amqp.Dial(brokerURL())
		if err != nil {
			return
		}
		defer conn.Close()
		for _, name := range []string{prefix + "rabbit_example", prefix + "rabbit_example@dead"} {
			if ch, err := conn.Channel(); err == nil {
				_, _ = ch.QueueDelete(name, false, false, false)
				_ = ch.Close()
			}
		}
		if ch, err := conn.Channel(); err == nil {
			_ = ch.ExchangeDelete(prefix+"dead-letter", false, false)
			_ = ch.Close()
		}
	})
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), db.Pool, db.Schema, brokerURL(), prefix, &out))
	require.Equal(t, 11, strings.Count(out.String(), ": complete in "), out.String())
	require.Equal(t, 11, strings.Count(out.String(), "score took 2 attempts"), out.String())
	require.Contains(t, out.String(), "published with score")
	require.Contains(t, out.String(), "RabbitMQ queue "+prefix+"rabbit_example")
}

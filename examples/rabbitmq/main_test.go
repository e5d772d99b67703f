package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/internal/testrabbit"
)

func TestRabbitMQExampleRunsEveryTask(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	prefix := "tasker-test-" + strings.ToLower(rand.Text()[:10]) + "."
	url := testrabbit.URL()
	testrabbit.DeleteAtCleanup(t, url, prefix, func() []string {
		return []string{prefix + "rabbit_example", prefix + "rabbit_example@dead"}
	})
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), db.Pool, db.Schema, url, prefix, &out))
	require.Equal(t, 11, strings.Count(out.String(), ": complete in "), out.String())
	require.Equal(t, 11, strings.Count(out.String(), "score took 2 attempts"), out.String())
	require.Contains(t, out.String(), "published with score")
	require.Contains(t, out.String(), "RabbitMQ queue "+prefix+"rabbit_example")
}

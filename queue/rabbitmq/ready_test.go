package rabbitmq

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestReadyCount: a queue never declared counts 0; published messages count until a consumer
// takes them (within its prefetch); delivered, unacknowledged ones do not count.
func TestReadyCount(t *testing.T) {
	t.Parallel()
	b := setup(t)
	q := b.open(t, []string{"r"}, WithPrefetch(1))
	n, err := q.ReadyCount(b.ctx, "r")
	require.NoError(t, err)
	require.Zero(t, n, "never declared")

	publish(t, b.ctx, q, "r", 0, payloads(3)...)
	n, err = q.ReadyCount(b.ctx, "r")
	require.NoError(t, err)
	require.Equal(t, 3, n, "confirmed messages wait ready")

	msgs := readN(t, b.ctx, q, "r", 1, time.Minute) // starts the consumer: prefetch 1
	require.Eventually(t, func() bool {
		n, err := q.ReadyCount(b.ctx, "r")
		return err == nil && n == 2
	}, 10*time.Second, 20*time.Millisecond, "the delivered message no longer counts")
	require.NoError(t, q.Ack(b.ctx, "r", ids(msgs)...))

	_, err = q.ReadyCount(b.ctx, "a@b")
	require.Error(t, err, "names with @ are refused")
}

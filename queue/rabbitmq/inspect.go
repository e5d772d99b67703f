package rabbitmq

import (
	"context"
	"fmt"

	"github.com/tasker-systems/tasker/queue"
)

var _ queue.Inspector = (*Queue)(nil)

// Depths implements queue.Inspector with one passive declare per queue (ReadyCount): the messages
// ready in the broker queue, plus those this process's consumer has taken from the broker and no
// Read has handed out yet. Messages read and not yet acknowledged, delayed ones still in a delay
// queue, and those buffered by other processes' consumers are not counted. The broker does not
// tell when its ready messages were sent without delivering them, so AgeKnown is false.
func (q *Queue) Depths(ctx context.Context, queues []string) ([]queue.Depth, error) {
	out := make([]queue.Depth, len(queues))
	for i, name := range queues {
		n, err := q.ReadyCount(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("rabbitmq: depths: %w", err)
		}
		q.mu.Lock()
		if c := q.consumers[name]; c != nil {
			n += len(c.buf)
		}
		q.mu.Unlock()
		out[i] = queue.Depth{Queue: name, Ready: n}
	}
	return out, nil
}

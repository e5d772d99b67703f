package queue

import (
	"context"
	"time"
)

// Inspector is implemented by queues that can tell how much work waits in them, for
// Engine.Health: queue/pgqueue (the SQL of store/postgres), queue/memqueue and queue/rabbitmq.
type Inspector interface {
	// Depths reports the backlog of each named queue, one Depth per name in the order given. A
	// queue that was never sent to has a zero Depth, not an error. It costs one round trip for a
	// database queue (counting the ready messages, with the index on the ready ones), one per
	// queue for a broker.
	Depths(ctx context.Context, queues []string) ([]Depth, error)
}

// Depth is the backlog of one queue at one moment.
type Depth struct {
	// Queue is the queue's name, as given to Depths.
	Queue string
	// Ready counts the messages that a Read could take now: sent, past any delay, and not hidden
	// by a reader's visibility timeout. Messages being worked on (read and not yet acked) and
	// delayed ones (a retry's backoff) are not counted.
	Ready int
	// AgeKnown is false when the backend cannot tell when its ready messages were sent or became
	// ready (queue/rabbitmq: the broker does not say without taking them); OldestAge and MaxWait
	// are then zero.
	AgeKnown bool
	// OldestAge is how long ago the oldest ready message was sent (by the backend's clock); zero
	// when none is ready.
	OldestAge time.Duration
	// MaxWait is how long the ready message that waits longest has been ready: since its delay
	// ended, or since a reader's visibility timeout gave it back. It is the time work has gone
	// untaken, where OldestAge also counts backoffs and earlier attempts; zero when none is ready.
	MaxWait time.Duration
}

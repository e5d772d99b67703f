package store

import (
	"context"
	"time"
)

// QueuePeeker is implemented by a store that owns its queue (QueueOwner) and claims from it by
// handler (QueueClaimer): a worker never reads the messages of handlers it lacks, so it learns of
// the steps that wait for another engine by looking, without reading them (Engine.Health).
type QueuePeeker interface {
	// PeekForeign lists up to limit visible messages of namespace's queue that name a handler
	// other than callables, oldest first, without reading or hiding them.
	PeekForeign(ctx context.Context, namespace string, callables []string, limit int) ([]PeekedMessage, error)
}

// PeekedMessage is a message seen by PeekForeign.
type PeekedMessage struct {
	StepMessage
	EnqueuedAt time.Time
}

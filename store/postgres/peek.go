package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/tasker-systems/tasker/store"
)

var _ store.QueuePeeker = (*Store)(nil)

// PeekForeign implements store.QueuePeeker over the store's queue: one read of the ready index.
func (s *Store) PeekForeign(ctx context.Context, namespace string, callables []string, limit int) ([]store.PeekedMessage, error) {
	if limit <= 0 {
		return nil, nil
	}
	if callables == nil {
		callables = []string{}
	}
	rows, err := s.pool.Query(ctx, s.q(`
		SELECT payload, enqueued_at FROM {s}.queue_messages
		 WHERE queue_name = $1 AND vt <= now()
		   AND payload->>'handler' IS NOT NULL AND NOT (payload->>'handler' = ANY($2::text[]))
		 ORDER BY msg_id LIMIT $3`), namespace, callables, limit)
	if err != nil {
		return nil, fmt.Errorf("peek at the queue of %q: %w", namespace, err)
	}
	defer rows.Close()
	var out []store.PeekedMessage
	for rows.Next() {
		var raw []byte
		var at time.Time
		if err := rows.Scan(&raw, &at); err != nil {
			return nil, err
		}
		var m store.StepMessage
		if json.Unmarshal(raw, &m) != nil {
			continue // a malformed payload: ClaimFromQueue reports it stale
		}
		out = append(out, store.PeekedMessage{StepMessage: m, EnqueuedAt: at})
	}
	return out, rows.Err()
}

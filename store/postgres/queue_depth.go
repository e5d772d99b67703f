package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/tasker/queue"
)

var _ queue.Inspector = (*Queue)(nil)

// Depths implements queue.Inspector in one statement: for each named queue, the messages visible
// now (vt <= now(), the index queue_messages_ready_idx), the age of the oldest and how long the
// longest-waiting one has been visible, by the database's clock.
func (q *Queue) Depths(ctx context.Context, queues []string) ([]queue.Depth, error) {
	if len(queues) == 0 {
		return nil, nil
	}
	table := pgx.Identifier{q.schema, "queue_messages"}.Sanitize()
	rows, err := q.pool.Query(ctx, `
		SELECT n.ord, count(m.msg_id),
		       COALESCE(EXTRACT(EPOCH FROM now() - min(m.enqueued_at)), 0)::float8,
		       COALESCE(EXTRACT(EPOCH FROM now() - min(m.vt)), 0)::float8
		  FROM unnest($1::text[]) WITH ORDINALITY AS n(name, ord)
		  LEFT JOIN `+table+` m ON m.queue_name = n.name AND m.vt <= now()
		 GROUP BY n.ord
		 ORDER BY n.ord`, queues)
	if err != nil {
		return nil, fmt.Errorf("pgqueue: depths: %w", err)
	}
	out := make([]queue.Depth, len(queues))
	for i, name := range queues {
		out[i] = queue.Depth{Queue: name, AgeKnown: true}
	}
	for rows.Next() {
		var (
			ord        int64
			ready      int64
			age, waits float64
		)
		if err := rows.Scan(&ord, &ready, &age, &waits); err != nil {
			rows.Close()
			return nil, fmt.Errorf("pgqueue: depths: %w", err)
		}
		d := &out[ord-1]
		d.Ready = int(ready)
		d.OldestAge = max(0, seconds(age))
		d.MaxWait = max(0, seconds(waits))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgqueue: depths: %w", err)
	}
	return out, nil
}

package memqueue

import (
	"context"

	"github.com/tasker-systems/tasker/queue"
)

var _ queue.Inspector = (*Queue)(nil)

// Depths implements queue.Inspector: for each named queue, the messages visible now, the age of
// the oldest and how long the longest-waiting one has been visible.
func (q *Queue) Depths(ctx context.Context, queues []string) ([]queue.Depth, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t := q.now()
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]queue.Depth, len(queues))
	for i, name := range queues {
		d := queue.Depth{Queue: name, AgeKnown: true}
		if l := q.queues[name]; l != nil {
			for _, m := range l.msgs {
				if m.acked || m.vt.After(t) {
					continue
				}
				d.Ready++
				d.OldestAge = max(d.OldestAge, t.Sub(m.enqueuedAt))
				d.MaxWait = max(d.MaxWait, t.Sub(m.vt))
			}
		}
		out[i] = d
	}
	return out, nil
}

package memory

import (
	"bytes"
	"cmp"
	"context"
	"slices"

	"github.com/google/uuid"

	"github.com/tasker-systems/tasker/store"
)

// archive is what PurgeTasks' Archive mode keeps of the purged tasks: their rows as they were.
type archive struct {
	tasks []*taskRow
	dead  []*deadLetterRow
}

// ArchivedTasks returns the IDs of the tasks PurgeTasks archived, in the order it purged them.
func (s *Store) ArchivedTasks() []uuid.UUID {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]uuid.UUID, len(s.archive.tasks))
	for i, t := range s.archive.tasks {
		out[i] = t.t.ID
	}
	return out
}

// PurgeTasks removes one batch of tasks that ended at least p.OlderThan ago (see store.History),
// oldest first, with their steps, edges, audit trail and dead-letter entries; with p.Archive they
// are kept aside (ArchivedTasks). The store's queue is its own: messages a purged task left there
// are dropped by the worker that reads them, as for any finished task, and Rows counts none.
func (s *Store) PurgeTasks(ctx context.Context, p store.PurgeTasksParams) (*store.PurgeResult, error) {
	res := &store.PurgeResult{Rows: make(map[string]int64, len(store.PurgeTableNames)), Archived: p.Archive}
	for _, name := range store.PurgeTableNames {
		res.Rows[name] = 0
	}
	err := s.write(ctx, func(tx *txn) error {
		cutoff := tx.now.Add(-p.OlderThan)
		var batch []*taskRow
		for _, t := range s.tasks {
			if store.Purgeable(t.t.State) && t.t.CompletedAt != nil && !t.t.CompletedAt.After(cutoff) && s.pendingEntry(t) == nil {
				batch = append(batch, t)
			}
		}
		slices.SortFunc(batch, func(a, b *taskRow) int {
			return cmp.Or(a.t.CompletedAt.Compare(*b.t.CompletedAt), bytes.Compare(a.t.ID[:], b.t.ID[:]))
		})
		batch = batch[:min(len(batch), limitOr(p.Limit, store.PurgeLimitDefault))]
		for _, t := range batch {
			s.purge(t, res, p.Archive)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// purge removes a task and everything that belongs to it, counting the rows as the tables would
// hold them. Called with s.mu held; it cannot fail, so it needs no undo.
func (s *Store) purge(t *taskRow, res *store.PurgeResult, keep bool) {
	for _, tr := range t.trail {
		if tr.step != nil {
			res.Rows["step_transitions"]++
		} else {
			res.Rows["task_transitions"]++
		}
	}
	for _, st := range t.steps {
		for _, parent := range st.parents {
			delete(s.edges, [2]uuid.UUID{parent.s.ID, st.s.ID})
			res.Rows["edges"]++
		}
		delete(s.steps, st.s.ID)
		delete(s.inProgress, st.s.ID) // never there: the task ended
		res.Rows["steps"]++
	}
	s.dead = slices.DeleteFunc(s.dead, func(r *deadLetterRow) bool {
		if r.task != t {
			return false
		}
		res.Rows["dead_letters"]++
		if keep {
			s.archive.dead = append(s.archive.dead, r)
		}
		return true
	})
	delete(s.identities, identityKey{t.t.Namespace, t.t.Name, t.t.IdentityHash})
	delete(s.tasks, t.t.ID)
	res.Rows["tasks"]++
	res.Tasks = append(res.Tasks, t.t.ID)
	if keep {
		s.archive.tasks = append(s.archive.tasks, t)
	}
}

package memory

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/google/uuid"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

// cloneTask returns a copy of a task row that shares nothing with the store.
func cloneTask(t *store.Task) store.Task {
	c := *t
	c.Context = cloneRaw(t.Context)
	c.Tags = slices.Clone(t.Tags)
	if c.Tags == nil {
		c.Tags = []string{}
	}
	c.CompletedAt = clonePtr(t.CompletedAt)
	return c
}

// cloneStep returns a copy of a step row that shares nothing with the store.
func cloneStep(s *store.Step) store.Step {
	c := *s
	c.Inputs, c.Result, c.LastError, c.Checkpoint = cloneRaw(s.Inputs), cloneRaw(s.Result), cloneRaw(s.LastError), cloneRaw(s.Checkpoint)
	c.NextRetryAt, c.LeaseExpiresAt = clonePtr(s.NextRetryAt), clonePtr(s.LeaseExpiresAt)
	c.StartedAt, c.CompletedAt = clonePtr(s.StartedAt), clonePtr(s.CompletedAt)
	if s.BatchGroup != nil {
		g := *s.BatchGroup
		c.BatchGroup = &g
	}
	return c
}

func cloneRaw(b json.RawMessage) json.RawMessage {
	if b == nil {
		return nil
	}
	return bytes.Clone(b)
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// GetTask returns a task.
func (s *Store) GetTask(ctx context.Context, id uuid.UUID) (*store.Task, error) {
	var out store.Task
	err := s.read(ctx, func() error {
		t, ok := s.tasks[id]
		if !ok {
			return fmt.Errorf("task %s: %w", id, store.ErrNotFound)
		}
		out = cloneTask(&t.t)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// GetSteps returns a task's steps in creation order (by step ID, which is a UUIDv7, as
// store/postgres orders them); none for an unknown task.
func (s *Store) GetSteps(ctx context.Context, taskID uuid.UUID) ([]store.Step, error) {
	var out []store.Step
	err := s.read(ctx, func() error {
		if t, ok := s.tasks[taskID]; ok {
			out = cloneSteps(t)
		}
		return nil
	})
	return out, err
}

// cloneSteps returns copies of a task's steps in creation order (by step ID, a UUIDv7, as
// store/postgres orders them). Called with the store's lock held.
func cloneSteps(t *taskRow) []store.Step {
	var out []store.Step
	for _, st := range t.steps {
		out = append(out, cloneStep(&st.s))
	}
	slices.SortStableFunc(out, func(a, b store.Step) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	return out
}

// StepTask returns the task and namespace of a step.
func (s *Store) StepTask(ctx context.Context, stepID uuid.UUID) (uuid.UUID, string, error) {
	var taskID uuid.UUID
	var ns string
	err := s.read(ctx, func() error {
		st, ok := s.steps[stepID]
		if !ok {
			return fmt.Errorf("step %s: %w", stepID, store.ErrNotFound)
		}
		taskID, ns = st.task.t.ID, st.task.t.Namespace
		return nil
	})
	return taskID, ns, err
}

// StepNames returns the names of a task's existing steps.
func (s *Store) StepNames(ctx context.Context, taskID uuid.UUID) ([]string, error) {
	out := []string{}
	err := s.read(ctx, func() error {
		if t, ok := s.tasks[taskID]; ok {
			for _, st := range t.steps {
				out = append(out, st.s.Name)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("step names of %s: %w", taskID, err)
	}
	return out, nil
}

// ListTasks returns tasks matching the filter, newest first (by creation time, then ID); Limit
// defaults to 100. AfterID continues after that task; an unknown AfterID lists nothing.
func (s *Store) ListTasks(ctx context.Context, p store.ListTasksParams) ([]store.Task, error) {
	limit := p.Limit
	if limit <= 0 {
		limit = 100
	}
	var out []store.Task
	err := s.read(ctx, func() error {
		var after *taskRow
		if p.AfterID != uuid.Nil {
			var ok bool
			if after, ok = s.tasks[p.AfterID]; !ok {
				return nil
			}
		}
		var match []*taskRow
		for _, t := range s.tasks {
			switch {
			case p.Namespace != "" && t.t.Namespace != p.Namespace,
				p.Name != "" && t.t.Name != p.Name,
				len(p.States) > 0 && !slices.Contains(p.States, t.t.State),
				!p.CreatedAfter.IsZero() && t.t.CreatedAt.Before(p.CreatedAfter),
				!p.CreatedBefore.IsZero() && !t.t.CreatedAt.Before(p.CreatedBefore),
				after != nil && newerFirst(t, after) <= 0,
				p.Scheduled && !scheduled(t):
				continue
			}
			match = append(match, t)
		}
		slices.SortFunc(match, newerFirst)
		for _, t := range match[:min(limit, len(match))] {
			out = append(out, cloneTask(&t.t))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	return out, nil
}

// scheduled reports whether t waits for its scheduled start (store.ListTasksParams.Scheduled).
func scheduled(t *taskRow) bool {
	if t.t.State != statemachine.TaskWaitingForRetry {
		return false
	}
	waiting := false
	for _, st := range t.steps {
		if st.s.Attempts > 0 {
			return false
		}
		waiting = waiting || st.s.State == statemachine.StepWaitingForRetry
	}
	return waiting
}

// newerFirst orders tasks by creation time, then ID, descending.
func newerFirst(a, b *taskRow) int {
	if c := b.t.CreatedAt.Compare(a.t.CreatedAt); c != 0 {
		return c
	}
	return bytes.Compare(b.t.ID[:], a.t.ID[:])
}

// Transitions returns the audit trail of a task and its steps in the order it was written (by
// time; at the same microsecond the task's own transitions first, as store/postgres orders them).
func (s *Store) Transitions(ctx context.Context, taskID uuid.UUID) ([]store.Transition, error) {
	type row struct {
		tr   store.Transition
		kind int
		id   int64
	}
	var rows []row
	err := s.read(ctx, func() error {
		t, ok := s.tasks[taskID]
		if !ok {
			return nil
		}
		for _, tr := range t.trail {
			r := row{id: tr.id, tr: store.Transition{TaskID: taskID, From: tr.from, To: tr.to, Event: tr.event,
				Metadata: cloneRaw(tr.meta), SortKey: tr.sortKey, CreatedAt: tr.createdAt}}
			if tr.step != nil {
				r.kind, r.tr.StepID, r.tr.StepName = 1, tr.step.s.ID, tr.step.s.Name
			}
			rows = append(rows, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("transitions of %s: %w", taskID, err)
	}
	slices.SortFunc(rows, func(a, b row) int {
		if c := a.tr.CreatedAt.Compare(b.tr.CreatedAt); c != 0 {
			return c
		}
		if c := cmp.Compare(a.kind, b.kind); c != 0 {
			return c
		}
		return cmp.Compare(a.id, b.id)
	})
	var out []store.Transition
	for _, r := range rows {
		out = append(out, r.tr)
	}
	return out, nil
}

// SaveCheckpoint stores a checkpoint for the attempt the worker holds.
func (s *Store) SaveCheckpoint(ctx context.Context, p store.CheckpointParams) error {
	return s.write(ctx, func(tx *txn) error {
		st, ok := s.steps[p.StepID]
		if !ok || !holds(st, p.WorkerID, p.Attempt) {
			return fmt.Errorf("save checkpoint of %s: %w", p.StepID, store.ErrConflict)
		}
		cp, err := jsonb(p.Checkpoint)
		if err != nil {
			return fmt.Errorf("save checkpoint of %s: %w", p.StepID, err)
		}
		set(tx, &st.s.Checkpoint, cp)
		set(tx, &st.s.UpdatedAt, tx.now)
		return nil
	})
}

package memory

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
	"github.com/tasker-systems/tasker/store/internal/params"
)

// deadLetterRow is a dead_letters row.
type deadLetterRow struct {
	d    store.DeadLetter // without the task's columns, which are read from task
	task *taskRow
}

// deadLetter returns the row as the store returns it, with its task's columns.
func (r *deadLetterRow) deadLetter() store.DeadLetter {
	d := r.d
	d.Snapshot = cloneRaw(d.Snapshot)
	d.ResolvedAt = clonePtr(d.ResolvedAt)
	d.Namespace, d.TaskName, d.TaskState, d.TaskPriority = r.task.t.Namespace, r.task.t.Name, r.task.t.State, r.task.t.Priority
	return d
}

// active returns the task as ActiveTasks lists it, its ages measured at now.
func active(t *taskRow, now time.Time) store.ActiveTask {
	a := store.ActiveTask{ID: t.t.ID, Namespace: t.t.Namespace, Name: t.t.Name, Version: t.t.Version, State: t.t.State,
		Priority: t.t.Priority, CreatedAt: t.t.CreatedAt, Age: now.Sub(t.t.CreatedAt)}
	if t.cur != nil {
		a.StateSince, a.StateSortKey, a.StateAge = t.cur.createdAt, t.cur.sortKey, now.Sub(t.cur.createdAt)
	}
	if t.t.State == statemachine.TaskWaitingForRetry {
		for _, st := range t.steps {
			if st.s.State == statemachine.StepWaitingForRetry && (st.s.Attempts == 0 || parked(st.s.LastError)) {
				a.Waiting = true
				break
			}
		}
	}
	return a
}

// tasksByID returns the tasks that pass keep, in task ID order after afterID, at most limit.
func (s *Store) tasksByID(afterID uuid.UUID, limit int, keep func(t *taskRow) bool) []*taskRow {
	var match []*taskRow
	for _, t := range s.tasks {
		if bytes.Compare(t.t.ID[:], afterID[:]) > 0 && keep(t) {
			match = append(match, t)
		}
	}
	slices.SortFunc(match, func(a, b *taskRow) int { return bytes.Compare(a.t.ID[:], b.t.ID[:]) })
	return match[:min(len(match), limitOr(limit, 100))]
}

func limitOr(n, def int) int {
	if n <= 0 {
		return def
	}
	return n
}

// ActiveTasks lists tasks not in a terminal state, in task ID order, with their ages.
func (s *Store) ActiveTasks(ctx context.Context, p store.ActiveTasksParams) ([]store.ActiveTask, error) {
	var out []store.ActiveTask
	err := s.read(ctx, func() error {
		now := s.clock()
		for _, t := range s.tasksByID(p.AfterID, p.Limit, func(t *taskRow) bool {
			return !t.t.State.Terminal() && (p.Namespace == "" || t.t.Namespace == p.Namespace) &&
				(p.MinAge <= 0 || now.Sub(t.t.CreatedAt) >= p.MinAge)
		}) {
			out = append(out, active(t, now))
		}
		return nil
	})
	return out, err
}

// ExhaustedTasks lists blocked tasks with a retryable step in error that used all its attempts,
// and no entry pending or written since the task was blocked.
func (s *Store) ExhaustedTasks(ctx context.Context, p store.ExhaustedTasksParams) ([]store.ActiveTask, error) {
	var out []store.ActiveTask
	err := s.read(ctx, func() error {
		now := s.clock()
		for _, t := range s.tasksByID(uuid.Nil, p.Limit, func(t *taskRow) bool {
			if t.t.State != statemachine.TaskBlockedByFailures {
				return false
			}
			exhausted := slices.ContainsFunc(t.steps, func(st *stepRow) bool {
				return st.s.State == statemachine.StepError && st.s.Retryable && st.s.Attempts >= st.s.MaxAttempts
			})
			return exhausted && !slices.ContainsFunc(s.dead, func(r *deadLetterRow) bool {
				return r.task == t && (r.d.Status == statemachine.DeadLetterPending || !r.d.CreatedAt.Before(t.cur.createdAt))
			})
		}) {
			out = append(out, active(t, now))
		}
		return nil
	})
	return out, err
}

// checkMeasured checks that the task is still in from, at the transition of sort key sortKey
// (when > 0).
func (s *Store) checkMeasured(taskID uuid.UUID, from statemachine.TaskState, sortKey int) (*taskRow, error) {
	t, ok := s.tasks[taskID]
	if !ok {
		return nil, fmt.Errorf("task %s: %w", taskID, store.ErrNotFound)
	}
	if from != "" && t.t.State != from {
		return nil, fmt.Errorf("task %s is %s, not %s: %w", taskID, t.t.State, from, store.ErrConflict)
	}
	if sortKey > 0 && (t.cur == nil || t.cur.sortKey != sortKey) {
		return nil, fmt.Errorf("task %s moved since it was measured: %w", taskID, store.ErrConflict)
	}
	return t, nil
}

// pendingEntry returns the task's pending entry, or nil.
func (s *Store) pendingEntry(t *taskRow) *deadLetterRow {
	for _, r := range s.dead {
		if r.task == t && r.d.Status == statemachine.DeadLetterPending {
			return r
		}
	}
	return nil
}

// insertDeadLetter writes an entry with a snapshot of the task as it is; it reports false when
// the task has a pending entry already (and writes nothing).
func (tx *txn) insertDeadLetter(t *taskRow, e store.NewDeadLetter) (bool, error) {
	if !e.Reason.Valid() {
		return false, fmt.Errorf("dead letter reason %q is not one of the table's", e.Reason)
	}
	if tx.s.pendingEntry(t) != nil {
		return false, nil
	}
	task := cloneTask(&t.t)
	snap, err := store.MakeSnapshot(&task, cloneSteps(t), e.Detail)
	if err != nil {
		return false, fmt.Errorf("snapshot of task %s: %w", t.t.ID, err)
	}
	if snap, err = jsonb(snap); err != nil {
		return false, err
	}
	r := &deadLetterRow{task: t, d: store.DeadLetter{ID: e.ID, TaskID: t.t.ID, Reason: e.Reason, Status: statemachine.DeadLetterPending,
		OriginalState: t.t.State, Snapshot: snap, CreatedAt: tx.s.clock()}}
	set(tx, &tx.s.dead, append(tx.s.dead, r))
	return true, nil
}

// FailTask moves a task to error, cancels its steps that could still run, and writes its entry.
func (s *Store) FailTask(ctx context.Context, p store.FailTaskParams) (*store.FailTaskResult, error) {
	var res *store.FailTaskResult
	err := s.write(ctx, func(tx *txn) error {
		t, err := s.checkMeasured(p.TaskID, p.From, p.FromSortKey)
		if err != nil {
			return err
		}
		plan, err := statemachine.PlanFail(countersOf(t).TaskCounters, p.Meta)
		if err != nil {
			return params.Conflict(fmt.Sprintf("fail task %s", p.TaskID), err)
		}
		if p.DeadLetter != nil {
			if _, err := tx.insertDeadLetter(t, *p.DeadLetter); err != nil {
				return err
			}
		}
		moves, err := tx.cancelSteps(t, statemachine.FailCancels, plan.Meta)
		if err != nil {
			return err
		}
		if err := tx.settle(t, plan.Delta(len(moves)), plan.Path, plan.Meta); err != nil {
			return err
		}
		res = &store.FailTaskResult{TaskState: plan.State}
		if p.DeadLetter != nil {
			if r := s.pendingEntry(t); r != nil {
				d := r.deadLetter()
				res.DeadLetter = &d
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.announce(store.Event{Kind: store.EventTaskCancelled, TaskID: p.TaskID})
	return res, nil
}

// AddDeadLetter writes an entry for a task without moving it.
func (s *Store) AddDeadLetter(ctx context.Context, p store.AddDeadLetterParams) (*store.DeadLetter, error) {
	var out store.DeadLetter
	err := s.write(ctx, func(tx *txn) error {
		t, err := s.checkMeasured(p.TaskID, p.From, p.FromSortKey)
		if err != nil {
			return err
		}
		ok, err := tx.insertDeadLetter(t, p.Entry)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("dead-letter task %s: %w", p.TaskID, store.ErrDeadLetterOpen)
		}
		out = s.pendingEntry(t).deadLetter()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// ListDeadLetters returns the entries that match the filter, newest first.
func (s *Store) ListDeadLetters(ctx context.Context, p store.ListDeadLettersParams) ([]store.DeadLetter, error) {
	var out []store.DeadLetter
	err := s.read(ctx, func() error {
		var match []*deadLetterRow
		for _, r := range s.dead {
			switch {
			case p.Status != "" && r.d.Status != p.Status,
				p.Reason != "" && r.d.Reason != p.Reason,
				p.Namespace != "" && r.task.t.Namespace != p.Namespace,
				!p.Since.IsZero() && r.d.CreatedAt.Before(p.Since),
				p.AfterID != uuid.Nil && !p.OldestFirst && bytes.Compare(r.d.ID[:], p.AfterID[:]) >= 0,
				p.AfterID != uuid.Nil && p.OldestFirst && bytes.Compare(r.d.ID[:], p.AfterID[:]) <= 0:
				continue
			}
			match = append(match, r)
		}
		slices.SortFunc(match, func(a, b *deadLetterRow) int {
			if p.OldestFirst {
				return bytes.Compare(a.d.ID[:], b.d.ID[:])
			}
			return bytes.Compare(b.d.ID[:], a.d.ID[:])
		})
		for _, r := range match[:min(len(match), limitOr(p.Limit, 100))] {
			out = append(out, r.deadLetter())
		}
		return nil
	})
	return out, err
}

// TaskDeadLetter returns a task's pending entry, or else its newest.
func (s *Store) TaskDeadLetter(ctx context.Context, taskID uuid.UUID) (*store.DeadLetter, error) {
	var out *store.DeadLetter
	err := s.read(ctx, func() error {
		var best *deadLetterRow
		for _, r := range s.dead {
			if r.d.TaskID != taskID {
				continue
			}
			if best == nil || r.d.Status == statemachine.DeadLetterPending ||
				(best.d.Status != statemachine.DeadLetterPending && bytes.Compare(r.d.ID[:], best.d.ID[:]) > 0) {
				best = r
			}
		}
		if best == nil {
			return fmt.Errorf("dead letter of task %s: %w", taskID, store.ErrNotFound)
		}
		d := best.deadLetter()
		out = &d
		return nil
	})
	return out, err
}

// ResolveDeadLetter sets a pending entry's resolution.
func (s *Store) ResolveDeadLetter(ctx context.Context, p store.ResolveDeadLetterParams) (*store.DeadLetter, error) {
	var out store.DeadLetter
	err := s.write(ctx, func(tx *txn) error {
		i := slices.IndexFunc(s.dead, func(r *deadLetterRow) bool { return r.d.ID == p.ID })
		if i < 0 {
			return fmt.Errorf("dead letter %s: %w", p.ID, store.ErrNotFound)
		}
		r := s.dead[i]
		if err := statemachine.CheckResolution(r.d.Status, p.Status); err != nil {
			return params.Conflict(fmt.Sprintf("resolve dead letter %s", p.ID), err)
		}
		set(tx, &r.d.Status, p.Status)
		set(tx, &r.d.Notes, p.Notes)
		set(tx, &r.d.ResolvedBy, p.ResolvedBy)
		set(tx, &r.d.ResolvedAt, ptr(s.clock()))
		out = r.deadLetter()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// DeadLetterStats counts the entries per reason.
func (s *Store) DeadLetterStats(ctx context.Context, p store.DeadLetterStatsParams) ([]store.DeadLetterStats, error) {
	var out []store.DeadLetterStats
	err := s.read(ctx, func() error {
		by := map[store.DeadLetterReason]*store.DeadLetterStats{}
		resolved := map[store.DeadLetterReason][2]time.Duration{} // total time, count
		for _, r := range s.dead {
			if (p.Namespace != "" && r.task.t.Namespace != p.Namespace) || (!p.Since.IsZero() && r.d.CreatedAt.Before(p.Since)) {
				continue
			}
			st := by[r.d.Reason]
			if st == nil {
				st = &store.DeadLetterStats{Reason: r.d.Reason, ByStatus: map[statemachine.DeadLetterStatus]int{}}
				by[r.d.Reason] = st
			}
			st.Total++
			st.ByStatus[r.d.Status]++
			if r.d.ResolvedAt != nil {
				v := resolved[r.d.Reason]
				resolved[r.d.Reason] = [2]time.Duration{v[0] + r.d.ResolvedAt.Sub(r.d.CreatedAt), v[1] + 1}
			}
		}
		for reason, st := range by {
			if v := resolved[reason]; v[1] > 0 {
				st.MeanTimeToResolution = v[0] / v[1]
			}
			out = append(out, *st)
		}
		slices.SortFunc(out, func(a, b store.DeadLetterStats) int { return cmpString(string(a.Reason), string(b.Reason)) })
		return nil
	})
	return out, err
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

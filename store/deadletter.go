package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-systems/tasker/statemachine"
)

// ErrDeadLetterOpen is returned by AddDeadLetter when the task already has a pending entry: a task
// has at most one open entry at a time.
var ErrDeadLetterOpen = errors.New("store: the task already has a pending dead-letter entry")

// DeadLetterReason says why a task was dead-lettered; its values are the dead_letters table's.
type DeadLetterReason string

// The dead-letter reasons.
const (
	// ReasonStalenessTimeout: the staleness detector found the task past a lifecycle threshold.
	ReasonStalenessTimeout DeadLetterReason = "staleness_timeout"
	// ReasonMaxRetriesExceeded: the task is blocked by a step that used all its attempts.
	ReasonMaxRetriesExceeded DeadLetterReason = "max_retries_exceeded"
	// ReasonPermanentFailure: the task is blocked by a step that failed for good at once.
	ReasonPermanentFailure DeadLetterReason = "permanent_failure"
	// ReasonWorkerUnavailable: no worker could take the task's steps.
	ReasonWorkerUnavailable DeadLetterReason = "worker_unavailable"
	// ReasonManual: an operator put the task there.
	ReasonManual DeadLetterReason = "manual_dlq"
)

// Valid reports whether r is one of the reasons the table accepts.
func (r DeadLetterReason) Valid() bool {
	switch r {
	case ReasonStalenessTimeout, ReasonMaxRetriesExceeded, ReasonPermanentFailure, ReasonWorkerUnavailable, ReasonManual:
		return true
	}
	return false
}

// DeadLetterStore is the part of the seam the staleness detector and the dead-letter queue use.
// Which task is stale, and what a resolution may be, are decided above it; it reads the facts
// (ages measured on the store's clock) and applies the moves with a compare-and-set.
type DeadLetterStore interface {
	// ActiveTasks lists tasks not in a terminal state, in task ID order (oldest first), with how
	// long each has been in its current state.
	ActiveTasks(ctx context.Context, p ActiveTasksParams) ([]ActiveTask, error)
	// ExhaustedTasks lists tasks in blocked_by_failures with a retryable step in error that used
	// all its attempts, and no dead-letter entry that is pending or was written since the task
	// entered its state.
	ExhaustedTasks(ctx context.Context, p ExhaustedTasksParams) ([]ActiveTask, error)
	// FailTask moves a task to error as statemachine.PlanFail says (cancelling the steps that
	// could still run), with a compare-and-set on its state and current transition, and, with
	// p.DeadLetter, writes its dead-letter entry in the same transaction. It returns ErrConflict
	// when the task moved since it was measured, or is terminal.
	FailTask(ctx context.Context, p FailTaskParams) (*FailTaskResult, error)
	// AddDeadLetter writes a dead-letter entry for a task without moving it, with the same
	// compare-and-set as FailTask when p.From is set. It returns ErrDeadLetterOpen when the task
	// has a pending entry, ErrNotFound when there is no such task.
	AddDeadLetter(ctx context.Context, p AddDeadLetterParams) (*DeadLetter, error)
	// ListDeadLetters returns the entries that match the filter, newest first.
	ListDeadLetters(ctx context.Context, p ListDeadLettersParams) ([]DeadLetter, error)
	// TaskDeadLetter returns a task's pending entry, or else its newest, or ErrNotFound.
	TaskDeadLetter(ctx context.Context, taskID uuid.UUID) (*DeadLetter, error)
	// ResolveDeadLetter sets a pending entry's resolution with a compare-and-set on pending. It
	// returns ErrNotFound for an unknown entry and ErrConflict for one already resolved.
	ResolveDeadLetter(ctx context.Context, p ResolveDeadLetterParams) (*DeadLetter, error)
	// DeadLetterStats counts the entries per reason, in reason order.
	DeadLetterStats(ctx context.Context, p DeadLetterStatsParams) ([]DeadLetterStats, error)
}

// ActiveTasksParams filters and pages ActiveTasks.
type ActiveTasksParams struct {
	// Namespace, when set, keeps that namespace's tasks.
	Namespace string
	// MinAge, when > 0, keeps the tasks created at least MinAge ago (a task is never longer in
	// its state than it exists, so no younger task can pass a threshold of MinAge).
	MinAge time.Duration
	// AfterID continues a listing after the task with this ID (keyset pagination).
	AfterID uuid.UUID
	Limit   int
}

// ExhaustedTasksParams bounds ExhaustedTasks.
type ExhaustedTasksParams struct {
	Limit int
}

// ActiveTask is a task not yet terminal, with its ages on the store's clock.
type ActiveTask struct {
	ID                       uuid.UUID
	Namespace, Name, Version string
	State                    statemachine.TaskState
	Priority                 int
	CreatedAt                time.Time
	// StateSince is when the task entered State: the time of its current transition.
	StateSince time.Time
	// StateSortKey is the sort key of that transition, the token of FailTask's compare-and-set.
	StateSortKey int
	// Age is how long the task has existed; StateAge how long it has been in State.
	Age, StateAge time.Duration
	// Waiting is true when a step of the task waits in waiting_for_retry by design, not for a
	// retry: the root of a task scheduled to start later (no attempt made) or a parked step (a
	// durable sleep, a wait for a signal, whose error record has kind "parked").
	Waiting bool
}

// NewDeadLetter is the entry FailTask or AddDeadLetter writes.
type NewDeadLetter struct {
	ID     uuid.UUID
	Reason DeadLetterReason
	// Detail goes into the snapshot beside the task and its steps (the threshold that fired, the
	// operator who asked).
	Detail map[string]any
}

// FailTaskParams moves a task to error.
type FailTaskParams struct {
	TaskID uuid.UUID
	// From is the state the task was measured in; FromSortKey, when > 0, the sort key of its
	// current transition then (ActiveTask.StateSortKey). The move happens only if both still hold.
	From        statemachine.TaskState
	FromSortKey int
	// Meta is the metadata of the transitions written (the threshold that fired).
	Meta map[string]any
	// DeadLetter, when set, is written in the same transaction, with a snapshot of the task and its
	// steps before the move. A pending entry the task already has is kept instead.
	DeadLetter *NewDeadLetter
}

// FailTaskResult is a failed task and its entry.
type FailTaskResult struct {
	TaskState statemachine.TaskState
	// DeadLetter is the task's pending entry (the one written, or the one it had), or nil.
	DeadLetter *DeadLetter
}

// AddDeadLetterParams writes an entry without moving the task.
type AddDeadLetterParams struct {
	TaskID uuid.UUID
	// From and FromSortKey, when set, are checked as FailTaskParams' are (ErrConflict).
	From        statemachine.TaskState
	FromSortKey int
	Entry       NewDeadLetter
}

// ListDeadLettersParams filters and pages ListDeadLetters. Entries come newest first.
type ListDeadLettersParams struct {
	Status    statemachine.DeadLetterStatus // "" for any
	Reason    DeadLetterReason              // "" for any
	Namespace string                        // "" for any
	// Since keeps the entries created at or after it (zero: all).
	Since time.Time
	// AfterID continues a listing after the entry with this ID (keyset pagination).
	AfterID uuid.UUID
	Limit   int
	// OldestFirst lists the entries oldest first (AfterID then continues towards the newer).
	OldestFirst bool
}

// ResolveDeadLetterParams resolves a pending entry.
type ResolveDeadLetterParams struct {
	ID         uuid.UUID
	Status     statemachine.DeadLetterStatus
	Notes      string
	ResolvedBy string
}

// DeadLetterStatsParams filters DeadLetterStats.
type DeadLetterStatsParams struct {
	Namespace string    // "" for any
	Since     time.Time // entries created at or after it (zero: all)
}

// DeadLetter is a dead_letters row, with what the investigation queue needs of its task.
type DeadLetter struct {
	ID     uuid.UUID
	TaskID uuid.UUID
	Reason DeadLetterReason
	Status statemachine.DeadLetterStatus
	// OriginalState is the task's state when the entry was written.
	OriginalState statemachine.TaskState
	// Snapshot is the task and its steps at that time (see Snapshot), in JSON.
	Snapshot   json.RawMessage
	CreatedAt  time.Time
	ResolvedAt *time.Time
	ResolvedBy string
	Notes      string
	// Namespace, TaskName, TaskState (now) and TaskPriority are read from the task.
	Namespace, TaskName string
	TaskState           statemachine.TaskState
	TaskPriority        int
}

// DeadLetterStats are the counts of one reason's entries.
type DeadLetterStats struct {
	Reason DeadLetterReason
	// Total counts every entry; ByStatus splits it by status.
	Total    int
	ByStatus map[statemachine.DeadLetterStatus]int
	// MeanTimeToResolution is the mean time from creation to resolution of the resolved entries
	// (0 when none is resolved).
	MeanTimeToResolution time.Duration
}

// Snapshot is what a dead-letter entry keeps of its task: the task and its steps as they were, and
// the detail of why it was written. Both stores write it with MakeSnapshot.
type Snapshot struct {
	Task   SnapshotTask   `json:"task"`
	Steps  []SnapshotStep `json:"steps"`
	Detail map[string]any `json:"detail,omitempty"`
}

// SnapshotTask is a task in a Snapshot.
type SnapshotTask struct {
	ID              uuid.UUID              `json:"task_id"`
	Namespace       string                 `json:"namespace"`
	Name            string                 `json:"name"`
	Version         string                 `json:"version"`
	State           statemachine.TaskState `json:"state"`
	Context         json.RawMessage        `json:"context,omitempty"`
	Priority        int                    `json:"priority"`
	CorrelationID   string                 `json:"correlation_id,omitempty"`
	Tags            []string               `json:"tags,omitempty"`
	StepsTotal      int                    `json:"steps_total"`
	StepsUnfinished int                    `json:"steps_unfinished"`
	StepsFailed     int                    `json:"steps_failed"`
	CreatedAt       time.Time              `json:"created_at"`
	UpdatedAt       time.Time              `json:"updated_at"`
}

// SnapshotStep is a step in a Snapshot.
type SnapshotStep struct {
	ID          uuid.UUID              `json:"step_id"`
	Name        string                 `json:"name"`
	Handler     string                 `json:"handler"`
	State       statemachine.StepState `json:"state"`
	Attempts    int                    `json:"attempts"`
	MaxAttempts int                    `json:"max_attempts"`
	NextRetryAt *time.Time             `json:"next_retry_at,omitempty"`
	LeaseOwner  string                 `json:"lease_owner,omitempty"`
	LastError   json.RawMessage        `json:"last_error,omitempty"`
	UpdatedAt   time.Time              `json:"updated_at"`
}

// MakeSnapshot returns the JSON snapshot of a task and its steps, with detail.
func MakeSnapshot(t *Task, steps []Step, detail map[string]any) (json.RawMessage, error) {
	s := Snapshot{Task: SnapshotTask{ID: t.ID, Namespace: t.Namespace, Name: t.Name, Version: t.Version, State: t.State,
		Context: t.Context, Priority: t.Priority, CorrelationID: t.CorrelationID, Tags: t.Tags, StepsTotal: t.StepsTotal,
		StepsUnfinished: t.StepsUnfinished, StepsFailed: t.StepsFailed, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt},
		Steps: make([]SnapshotStep, len(steps)), Detail: detail}
	for i, st := range steps {
		s.Steps[i] = SnapshotStep{ID: st.ID, Name: st.Name, Handler: st.Handler, State: st.State, Attempts: st.Attempts,
			MaxAttempts: st.MaxAttempts, NextRetryAt: st.NextRetryAt, LeaseOwner: st.LeaseOwner, LastError: st.LastError,
			UpdatedAt: st.UpdatedAt}
	}
	return json.Marshal(s)
}

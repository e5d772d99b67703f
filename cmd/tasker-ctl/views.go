package main

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-systems/tasker"
)

// The JSON (and YAML) documents tasker-ctl prints and the MCP tools return: the library's values
// with snake_case keys, stable for scripts.

type taskView struct {
	ID             uuid.UUID       `json:"id"`
	Namespace      string          `json:"namespace"`
	Name           string          `json:"name"`
	Version        string          `json:"version"`
	State          string          `json:"state"`
	Context        json.RawMessage `json:"context,omitempty"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
	Priority       int             `json:"priority"`
	CorrelationID  string          `json:"correlation_id,omitempty"`
	Tags           []string        `json:"tags,omitempty"`
	Initiator      string          `json:"initiator,omitempty"`
	SourceSystem   string          `json:"source_system,omitempty"`
	Reason         string          `json:"reason,omitempty"`
	CreatedAt      time.Time       `json:"created_at"`
	UpdatedAt      time.Time       `json:"updated_at"`
	CompletedAt    *time.Time      `json:"completed_at,omitempty"`
	// StepsDone and StepsTotal are absent from listings, which do not read the steps.
	StepsDone  *int       `json:"steps_done,omitempty"`
	StepsTotal *int       `json:"steps_total,omitempty"`
	Steps      []stepView `json:"steps,omitempty"`
}

type stepView struct {
	ID          uuid.UUID           `json:"id"`
	Name        string              `json:"name"`
	Handler     string              `json:"handler"`
	Type        string              `json:"type"`
	State       string              `json:"state"`
	Attempts    int                 `json:"attempts"`
	MaxAttempts int                 `json:"max_attempts"`
	Result      json.RawMessage     `json:"result,omitempty"`
	LastError   *tasker.StepFailure `json:"last_error,omitempty"`
	NextRetryAt *time.Time          `json:"next_retry_at,omitempty"`
	CreatedAt   time.Time           `json:"created_at"`
	StartedAt   *time.Time          `json:"started_at,omitempty"`
	CompletedAt *time.Time          `json:"completed_at,omitempty"`
}

type transitionView struct {
	StepID   *uuid.UUID      `json:"step_id,omitempty"`
	StepName string          `json:"step_name,omitempty"`
	From     string          `json:"from"`
	To       string          `json:"to"`
	Event    string          `json:"event"`
	Metadata json.RawMessage `json:"metadata,omitempty"`
	At       time.Time       `json:"at"`
}

type deadLetterView struct {
	ID            uuid.UUID       `json:"id"`
	TaskID        uuid.UUID       `json:"task_id"`
	Namespace     string          `json:"namespace"`
	TaskName      string          `json:"task_name"`
	TaskState     string          `json:"task_state"`
	TaskPriority  int             `json:"task_priority"`
	Reason        string          `json:"reason"`
	Status        string          `json:"status"`
	OriginalState string          `json:"original_state"`
	CreatedAt     time.Time       `json:"created_at"`
	ResolvedAt    *time.Time      `json:"resolved_at,omitempty"`
	ResolvedBy    string          `json:"resolved_by,omitempty"`
	Notes         string          `json:"notes,omitempty"`
	Snapshot      json.RawMessage `json:"snapshot,omitempty"`
}

func viewTask(t *tasker.Task) taskView {
	v := taskView{ID: t.ID, Namespace: t.Namespace, Name: t.Name, Version: t.Version, State: string(t.State),
		Context: t.Context, IdempotencyKey: t.IdempotencyKey, Priority: t.Priority, CorrelationID: t.CorrelationID,
		Tags: t.Tags, Initiator: t.Initiator, SourceSystem: t.SourceSystem, Reason: t.Reason,
		CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt, CompletedAt: t.CompletedAt}
	for _, s := range t.Steps {
		v.Steps = append(v.Steps, viewStep(s))
	}
	if len(t.Steps) > 0 {
		done, total := progress(t)
		v.StepsDone, v.StepsTotal = &done, &total
	}
	return v
}

func viewStep(s tasker.StepInfo) stepView {
	return stepView{ID: s.ID, Name: s.Name, Handler: s.Handler, Type: string(s.Type), State: string(s.State),
		Attempts: s.Attempts, MaxAttempts: s.MaxAttempts, Result: s.Result, LastError: s.LastError,
		NextRetryAt: s.NextRetryAt, CreatedAt: s.CreatedAt, StartedAt: s.StartedAt, CompletedAt: s.CompletedAt}
}

func viewTransition(tr tasker.Transition) transitionView {
	v := transitionView{StepName: tr.StepName, From: tr.From, To: tr.To, Event: tr.Event, Metadata: tr.Metadata, At: tr.At}
	if tr.StepID != uuid.Nil {
		id := tr.StepID
		v.StepID = &id
	}
	return v
}

func viewDeadLetter(d *tasker.DeadLetter, withSnapshot bool) deadLetterView {
	v := deadLetterView{ID: d.ID, TaskID: d.TaskID, Namespace: d.Namespace, TaskName: d.TaskName,
		TaskState: string(d.TaskState), TaskPriority: d.TaskPriority, Reason: string(d.Reason),
		Status: string(d.Status), OriginalState: string(d.OriginalState), CreatedAt: d.CreatedAt,
		ResolvedAt: d.ResolvedAt, ResolvedBy: d.ResolvedBy, Notes: d.Notes}
	if withSnapshot {
		v.Snapshot = d.Snapshot
	}
	return v
}

// progress counts a task's finished steps (complete or resolved by hand) out of all.
func progress(t *tasker.Task) (done, total int) {
	for _, s := range t.Steps {
		if s.State.Finished() {
			done++
		}
	}
	return done, len(t.Steps)
}

// running names the steps of a task that a handler is working on now.
func running(t *tasker.Task) []string {
	var out []string
	for _, s := range t.Steps {
		if s.State == tasker.StepInProgress {
			out = append(out, s.Name)
		}
	}
	return out
}

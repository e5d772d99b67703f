package httpapi

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-systems/tasker"
)

// The JSON documents of the API: snake_case keys, times in RFC 3339, durations in seconds (a
// number, fractions allowed). The OpenAPI document (openapi.json) describes each.

type taskDoc struct {
	ID             uuid.UUID       `json:"id"`
	Namespace      string          `json:"namespace"`
	Name           string          `json:"name"`
	Version        string          `json:"version"`
	State          string          `json:"state"`
	Context        json.RawMessage `json:"context"`
	IdentityHash   string          `json:"identity_hash"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
	Priority       int             `json:"priority"`
	CorrelationID  string          `json:"correlation_id,omitempty"`
	Tags           []string        `json:"tags"`
	Initiator      string          `json:"initiator,omitempty"`
	SourceSystem   string          `json:"source_system,omitempty"`
	Reason         string          `json:"reason,omitempty"`
	CreatedAt      time.Time       `json:"created_at"`
	UpdatedAt      time.Time       `json:"updated_at"`
	CompletedAt    *time.Time      `json:"completed_at,omitempty"`
	Steps          []stepDoc       `json:"steps,omitempty"`
}

type stepDoc struct {
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
	// Dependencies are the IDs of the steps this one runs after.
	Dependencies []uuid.UUID `json:"dependencies"`
}

type edgeDoc struct {
	From uuid.UUID `json:"from"`
	To   uuid.UUID `json:"to"`
}

type stepsDoc struct {
	TaskID    uuid.UUID `json:"task_id"`
	TaskState string    `json:"task_state"`
	Steps     []stepDoc `json:"steps"`
	Edges     []edgeDoc `json:"edges"`
}

type taskListDoc struct {
	Tasks      []taskDoc `json:"tasks"`
	NextCursor string    `json:"next_cursor,omitempty"`
}

type transitionDoc struct {
	TaskID   uuid.UUID       `json:"task_id"`
	StepID   *uuid.UUID      `json:"step_id,omitempty"`
	StepName string          `json:"step_name,omitempty"`
	From     string          `json:"from,omitempty"`
	To       string          `json:"to"`
	Event    string          `json:"event"`
	Metadata json.RawMessage `json:"metadata,omitempty"`
	At       time.Time       `json:"at"`
}

type transitionsDoc struct {
	Transitions []transitionDoc `json:"transitions"`
}

type diagramDoc struct {
	Format  string `json:"format"`
	Diagram string `json:"diagram"`
}

type templateSummaryDoc struct {
	Namespace   string            `json:"namespace"`
	Name        string            `json:"name"`
	Version     string            `json:"version"`
	Description string            `json:"description,omitempty"`
	Steps       []templateStepDoc `json:"steps"`
}

type templateStepDoc struct {
	Name         string   `json:"name"`
	Handler      string   `json:"handler"`
	Type         string   `json:"type"`
	Dependencies []string `json:"dependencies"`
	Description  string   `json:"description,omitempty"`
	MaxAttempts  int      `json:"max_attempts"`
	Retryable    bool     `json:"retryable"`
}

type templateDoc struct {
	templateSummaryDoc
	Mermaid    string          `json:"mermaid"`
	Definition json.RawMessage `json:"definition"`
}

type templatesDoc struct {
	Templates []templateSummaryDoc `json:"templates"`
}

type deadLetterDoc struct {
	ID            uuid.UUID       `json:"id"`
	TaskID        uuid.UUID       `json:"task_id"`
	Reason        string          `json:"reason"`
	Status        string          `json:"status"`
	OriginalState string          `json:"original_state"`
	Snapshot      json.RawMessage `json:"snapshot,omitempty"`
	CreatedAt     time.Time       `json:"created_at"`
	ResolvedAt    *time.Time      `json:"resolved_at,omitempty"`
	ResolvedBy    string          `json:"resolved_by,omitempty"`
	Notes         string          `json:"notes,omitempty"`
	Namespace     string          `json:"namespace"`
	TaskName      string          `json:"task_name"`
	TaskState     string          `json:"task_state"`
	TaskPriority  int             `json:"task_priority"`
	Score         *float64        `json:"score,omitempty"`
}

type deadLettersDoc struct {
	Entries    []deadLetterDoc `json:"entries"`
	NextCursor string          `json:"next_cursor,omitempty"`
}

type investigationDoc struct {
	Entries   []deadLetterDoc `json:"entries"`
	Pending   int             `json:"pending"`
	Truncated bool            `json:"truncated"`
}

type deadLetterStatsDoc struct {
	Reason                      string         `json:"reason"`
	Total                       int            `json:"total"`
	ByStatus                    map[string]int `json:"by_status"`
	MeanTimeToResolutionSeconds float64        `json:"mean_time_to_resolution_seconds"`
}

type statsDoc struct {
	Stats []deadLetterStatsDoc `json:"stats"`
}

type windowDoc struct {
	Since     *time.Time `json:"since,omitempty"`
	Until     *time.Time `json:"until,omitempty"`
	Namespace string     `json:"namespace,omitempty"`
}

type templatePerfDoc struct {
	Namespace          string  `json:"namespace"`
	Name               string  `json:"name"`
	Version            string  `json:"version"`
	Tasks              int     `json:"tasks"`
	Completed          int     `json:"completed"`
	Failed             int     `json:"failed"`
	Cancelled          int     `json:"cancelled"`
	SuccessRate        float64 `json:"success_rate"`
	DurationP50Seconds float64 `json:"duration_p50_seconds"`
	DurationP95Seconds float64 `json:"duration_p95_seconds"`
}

type stepPerfDoc struct {
	Namespace          string  `json:"namespace"`
	TaskName           string  `json:"task_name"`
	Step               string  `json:"step"`
	Steps              int     `json:"steps"`
	Completed          int     `json:"completed"`
	Failed             int     `json:"failed"`
	Attempts           int     `json:"attempts"`
	Retries            int     `json:"retries"`
	SuccessRate        float64 `json:"success_rate"`
	DurationP50Seconds float64 `json:"duration_p50_seconds"`
	DurationP95Seconds float64 `json:"duration_p95_seconds"`
}

type performanceDoc struct {
	Window    windowDoc         `json:"window"`
	Templates []templatePerfDoc `json:"templates"`
	Steps     []stepPerfDoc     `json:"steps"`
}

type bottlenecksDoc struct {
	Window      windowDoc     `json:"window"`
	Slowest     []stepPerfDoc `json:"slowest"`
	MostRetried []stepPerfDoc `json:"most_retried"`
}

func taskDocOf(t *tasker.Task) taskDoc {
	tags := t.Tags
	if tags == nil {
		tags = []string{}
	}
	ctx := t.Context
	if len(ctx) == 0 {
		ctx = json.RawMessage("{}")
	}
	return taskDoc{ID: t.ID, Namespace: t.Namespace, Name: t.Name, Version: t.Version, State: string(t.State),
		Context: ctx, IdentityHash: t.IdentityHash, IdempotencyKey: t.IdempotencyKey, Priority: t.Priority,
		CorrelationID: t.CorrelationID, Tags: tags, Initiator: t.Initiator, SourceSystem: t.SourceSystem,
		Reason: t.Reason, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt, CompletedAt: t.CompletedAt}
}

// stepDocOf is the step's document; parents lists its dependencies (nil for none).
func stepDocOf(s *tasker.StepInfo, parents []uuid.UUID) stepDoc {
	if parents == nil {
		parents = []uuid.UUID{}
	}
	return stepDoc{ID: s.ID, Name: s.Name, Handler: s.Handler, Type: string(s.Type), State: string(s.State),
		Attempts: s.Attempts, MaxAttempts: s.MaxAttempts, Result: s.Result, LastError: s.LastError,
		NextRetryAt: s.NextRetryAt, CreatedAt: s.CreatedAt, StartedAt: s.StartedAt, CompletedAt: s.CompletedAt,
		Dependencies: parents}
}

func transitionDocOf(t *tasker.Transition) transitionDoc {
	d := transitionDoc{TaskID: t.TaskID, StepName: t.StepName, From: t.From, To: t.To, Event: t.Event, At: t.At}
	if len(t.Metadata) > 0 && string(t.Metadata) != "null" && string(t.Metadata) != "{}" {
		d.Metadata = t.Metadata
	}
	if t.StepID != uuid.Nil {
		id := t.StepID
		d.StepID = &id
	}
	return d
}

func templateSummaryOf(t *tasker.Template) templateSummaryDoc {
	d := templateSummaryDoc{Namespace: t.Namespace, Name: t.Name, Version: t.Version, Description: t.Description,
		Steps: make([]templateStepDoc, 0, len(t.Steps))}
	for _, s := range t.Steps {
		deps := s.Dependencies
		if deps == nil {
			deps = []string{}
		}
		typ := string(s.Type)
		if typ == "" {
			typ = string(tasker.StepStandard)
		}
		max := s.Retry.MaxAttempts
		if s.Retry.NoRetry {
			max = 1
		}
		d.Steps = append(d.Steps, templateStepDoc{Name: s.Name, Handler: s.Handler.Callable, Type: typ,
			Dependencies: deps, Description: s.Description, MaxAttempts: max, Retryable: !s.Retry.NoRetry})
	}
	return d
}

func deadLetterDocOf(d *tasker.DeadLetter) deadLetterDoc {
	return deadLetterDoc{ID: d.ID, TaskID: d.TaskID, Reason: string(d.Reason), Status: string(d.Status),
		OriginalState: string(d.OriginalState), Snapshot: d.Snapshot, CreatedAt: d.CreatedAt, ResolvedAt: d.ResolvedAt,
		ResolvedBy: d.ResolvedBy, Notes: d.Notes, Namespace: d.Namespace, TaskName: d.TaskName,
		TaskState: string(d.TaskState), TaskPriority: d.TaskPriority}
}

func windowDocOf(w tasker.AnalyticsWindow) windowDoc {
	d := windowDoc{Namespace: w.Namespace}
	if !w.Since.IsZero() {
		d.Since = &w.Since
	}
	if !w.Until.IsZero() {
		d.Until = &w.Until
	}
	return d
}

func stepPerfDocOf(s tasker.StepPerformance) stepPerfDoc {
	return stepPerfDoc{Namespace: s.Namespace, TaskName: s.TaskName, Step: s.Step, Steps: s.Steps, Completed: s.Completed,
		Failed: s.Failed, Attempts: s.Attempts, Retries: s.Retries, SuccessRate: s.SuccessRate,
		DurationP50Seconds: s.DurationP50.Seconds(), DurationP95Seconds: s.DurationP95.Seconds()}
}

func stepPerfDocs(ss []tasker.StepPerformance) []stepPerfDoc {
	out := make([]stepPerfDoc, 0, len(ss))
	for _, s := range ss {
		out = append(out, stepPerfDocOf(s))
	}
	return out
}

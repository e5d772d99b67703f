package tasker

import (
	"encoding/json"
	"fmt"
)

// DecisionOutcome is what a decision step's handler returns: the branches to create. It encodes
// as Tasker Core's {"decision_point_outcome": {...}}, so a handler may also return that JSON.
type DecisionOutcome struct {
	// StepNames are the steps to create; empty means no branch.
	StepNames []string
}

// CreateSteps returns the outcome of a decision step that creates the named steps.
func CreateSteps(names ...string) DecisionOutcome { return DecisionOutcome{StepNames: names} }

// NoBranches returns the outcome of a decision step that creates no step.
func NoBranches() DecisionOutcome { return DecisionOutcome{} }

type decisionJSON struct {
	Type      string   `json:"type"`
	StepNames []string `json:"step_names,omitempty"`
}

// MarshalJSON encodes Tasker Core's shape.
func (d DecisionOutcome) MarshalJSON() ([]byte, error) {
	inner := decisionJSON{Type: "no_branches"}
	if len(d.StepNames) > 0 {
		inner = decisionJSON{Type: "create_steps", StepNames: d.StepNames}
	}
	return json.Marshal(map[string]any{"decision_point_outcome": inner})
}

// BatchCursor is one batch worker's share of the work: items [Start, End).
type BatchCursor struct {
	BatchID   string `json:"batch_id"`
	Start     int64  `json:"start_cursor"`
	End       int64  `json:"end_cursor"`
	BatchSize int64  `json:"batch_size"`
}

// BatchOutcome is what a batchable step's handler returns: the cursors of the workers to create
// from a batch_worker template. It encodes as Tasker Core's {"batch_processing_outcome": {...}}.
type BatchOutcome struct {
	// WorkerTemplate names the batch_worker step the workers are made from; "" means the only
	// batch_worker step that depends on the batchable step.
	WorkerTemplate string
	// Cursors are the batches; none means no batches (one no-op worker keeps the workflow's shape).
	Cursors []BatchCursor
	// TotalItems is informational.
	TotalItems int64
}

// CreateBatches returns the outcome of a batchable step that creates one worker per cursor.
func CreateBatches(workerTemplate string, cursors ...BatchCursor) BatchOutcome {
	return BatchOutcome{WorkerTemplate: workerTemplate, Cursors: cursors}
}

// NoBatches returns the outcome of a batchable step with nothing to process.
func NoBatches() BatchOutcome { return BatchOutcome{} }

// Cursors splits items [0, total) — or [first, first+total) — into batches of size batchSize,
// numbered "001", "002", ....
func Cursors(first, total, batchSize int64) []BatchCursor {
	var out []BatchCursor
	if batchSize <= 0 {
		return nil
	}
	for start, i := first, 1; start < first+total; start, i = start+batchSize, i+1 {
		out = append(out, BatchCursor{BatchID: fmt.Sprintf("%03d", i), Start: start, End: min(start+batchSize, first+total), BatchSize: batchSize})
	}
	return out
}

type batchJSON struct {
	Type               string        `json:"type"`
	WorkerTemplateName string        `json:"worker_template_name,omitempty"`
	WorkerCount        int           `json:"worker_count,omitempty"`
	CursorConfigs      []BatchCursor `json:"cursor_configs,omitempty"`
	TotalItems         int64         `json:"total_items,omitempty"`
}

// MarshalJSON encodes Tasker Core's shape.
func (b BatchOutcome) MarshalJSON() ([]byte, error) {
	inner := batchJSON{Type: "no_batches", WorkerTemplateName: b.WorkerTemplate}
	if len(b.Cursors) > 0 {
		inner = batchJSON{Type: "create_batches", WorkerTemplateName: b.WorkerTemplate, WorkerCount: len(b.Cursors),
			CursorConfigs: b.Cursors, TotalItems: b.TotalItems}
	}
	return json.Marshal(map[string]any{"batch_processing_outcome": inner})
}

// BatchInputs is what a batch worker receives: its cursor and its batch's settings.
type BatchInputs struct {
	Cursor        BatchCursor `json:"cursor"`
	BatchMetadata struct {
		CursorField     string `json:"cursor_field"`
		FailureStrategy string `json:"failure_strategy"`
	} `json:"batch_metadata"`
	// IsNoOp marks the placeholder worker of a batch with no batches; its handler is not run.
	IsNoOp bool `json:"is_no_op"`
}

package store

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-systems/tasker/statemachine"
)

// History is the part of the seam that retention and analytics use: the purge of tasks that ended
// long ago, and the statistics of the tasks of a time window. Ages are measured on the store's
// clock (the database's now()), as the other maintenance reads are.
type History interface {
	// PurgeTasks deletes, oldest first, at most p.Limit tasks that ended (completed_at) at least
	// p.OlderThan ago in a purgeable state (Purgeable) and have no pending dead-letter entry, with
	// every row that belongs to them: steps, edges, task and step transitions, dead-letter entries
	// and queue messages left behind. Each batch is one transaction; with p.Archive the rows are
	// copied to the archive tables in it first. Tasks another purge is deleting at the same time
	// are skipped, not waited for.
	PurgeTasks(ctx context.Context, p PurgeTasksParams) (*PurgeResult, error)
	// Analytics returns the counts and durations of the tasks created in a window, per template
	// version and per template step.
	Analytics(ctx context.Context, p AnalyticsParams) (*Analytics, error)
}

// Purgeable reports whether a task in state s may be purged once it is old enough: complete,
// cancelled and resolved_manually tasks are; a task in error is kept until a person resolves it
// (an operator's action moves it on), and a task not yet terminal is never purged.
func Purgeable(s statemachine.TaskState) bool {
	switch s {
	case statemachine.TaskComplete, statemachine.TaskCancelled, statemachine.TaskResolvedManually:
		return true
	}
	return false
}

// PurgeTableNames are the keys of PurgeResult.Rows: the tables whose rows a task takes with it
// when it is purged, children first. queue_messages is the PostgreSQL queue's table (the memory
// store's queue is its own and always reports 0 there).
var PurgeTableNames = []string{"step_transitions", "task_transitions", "edges", "dead_letters", "queue_messages", "steps", "tasks"}

// PurgeLimitDefault is PurgeTasksParams.Limit's default.
const PurgeLimitDefault = 100

// PurgeTasksParams selects the tasks PurgeTasks deletes.
type PurgeTasksParams struct {
	// OlderThan is how long ago a task must have ended, at least; 0 purges every ended task.
	OlderThan time.Duration
	// Limit bounds the tasks of the batch; 0 means PurgeLimitDefault.
	Limit int
	// Archive copies the rows to the archive tables (archive_tasks, archive_steps, ...) before
	// they are deleted, in the same transaction. The memory store keeps them in memory.
	Archive bool
}

// PurgeResult is what one PurgeTasks batch removed.
type PurgeResult struct {
	// Tasks are the purged tasks' IDs, oldest ended first. Fewer than the limit means no purgeable
	// task was left (or the others were being purged by someone else).
	Tasks []uuid.UUID
	// Rows counts the rows deleted per table (every name of PurgeTableNames is present).
	Rows map[string]int64
	// Archived is true when the rows were copied to the archive first.
	Archived bool
}

// AnalyticsParams selects the window of Analytics.
type AnalyticsParams struct {
	// Since and Until bound the tasks' creation times: Since <= created_at < Until. A zero Since
	// means from the beginning; a zero Until means up to now.
	Since, Until time.Time
	// Namespace, when set, keeps that namespace's tasks.
	Namespace string
}

// Analytics are the statistics of one window, in key order.
type Analytics struct {
	Templates []TemplateAnalytics
	Steps     []StepAnalytics
}

// TemplateAnalytics counts the tasks of one template version.
type TemplateAnalytics struct {
	Namespace, Name, Version string
	// Tasks counts the tasks created in the window; Completed, Failed (error) and Cancelled those
	// of them in that state now.
	Tasks, Completed, Failed, Cancelled int
	// DurationP50 and DurationP95 are the median and 95th percentile (linear interpolation,
	// PostgreSQL's percentile_cont) of complete tasks' durations, from creation to completion;
	// 0 when none completed.
	DurationP50, DurationP95 time.Duration
}

// StepAnalytics counts the steps made from one template step (batch workers under the step that
// names them in the template), across versions.
type StepAnalytics struct {
	Namespace, TaskName, Step string
	// Steps counts the steps; Completed and Failed (error) those in that state now.
	Steps, Completed, Failed int
	// Attempts counts the attempts started; Retries the attempts after each step's first.
	Attempts, Retries int
	// DurationP50 and DurationP95 are percentiles (as TemplateAnalytics') of complete steps'
	// last attempt, from its start to its completion; 0 when none completed.
	DurationP50, DurationP95 time.Duration
}

// Package store is tasker's persistence seam: the operations the engine needs from its source of
// truth, each taking a params struct so that adding a field breaks no caller.
//
// The engine is its only user; applications choose an implementation (store/postgres) and hand it
// to tasker.NewEngine, but never call it directly. Every method that changes a step or a task does
// so with a compare-and-set on its current state and records the transition in the same
// transaction, so two processes can never both move the same step.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/tasker/queue"
	"github.com/tasker-systems/tasker/statemachine"
)

// ErrNotFound is returned when a task or step does not exist.
var ErrNotFound = errors.New("store: not found")

// ErrConflict is returned when a compare-and-set finds the row in another state than expected:
// someone else moved it first, or the operation does not apply to its current state.
var ErrConflict = errors.New("store: state changed concurrently or does not allow this")

// ErrNotDue is returned by PromoteRetry when the step's backoff has not elapsed yet.
var ErrNotDue = errors.New("store: retry not due yet")

// ErrUnstorable is returned (wrapped) by RecordOutcome when the database refuses the outcome's data
// for good: a value it cannot represent, a name too long for its index. Trying the same outcome
// again cannot succeed; the engine records the step's failure instead.
var ErrUnstorable = errors.New("store: the database cannot store this outcome")

// ErrTemplateConflict is matched (errors.Is) by every *TemplateConflictError.
var ErrTemplateConflict = errors.New("template version already registered with a different definition")

// TemplateConflictError reports that the registry holds another definition under a template's
// namespace, name and version. Versions are immutable: a changed template needs a new version.
type TemplateConflictError struct {
	Namespace, Name, Version string
	// Existing is the checksum of the definition registered first; Proposed is the other one.
	Existing, Proposed string
}

func (e *TemplateConflictError) Error() string {
	return fmt.Sprintf("template %s/%s@%s is already registered with a different definition (checksum %s, this one %s): "+
		"versions are immutable, so register the changed template under a new version",
		e.Namespace, e.Name, e.Version, shortSum(e.Existing), shortSum(e.Proposed))
}

// Is makes errors.Is(err, ErrTemplateConflict) true.
func (e *TemplateConflictError) Is(target error) bool { return target == ErrTemplateConflict }

func shortSum(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

// Enqueuer puts steps on the delivery queue inside the store's transaction, so that a step is
// enqueued if and only if the transaction that made it ready commits.
type Enqueuer interface {
	// EnqueueTx enqueues steps on the queue of namespace as part of the store's transaction tx
	// (nil for a store without transactions); they become visible after delay.
	EnqueueTx(ctx context.Context, tx pgx.Tx, namespace string, steps []StepRef, delay time.Duration) error
}

// BatchEnqueuer is an Enqueuer whose sends can join the store's pipelined batch (see
// queue.BatchSender). EnqueueBatch reports false when the queue cannot, and the store then calls
// EnqueueTx.
type BatchEnqueuer interface {
	EnqueueBatch(b *pgx.Batch, namespace string, steps []StepRef, delay time.Duration) (bool, error)
}

// QueueOwner is implemented by a store whose transactions can carry a queue's messages
// (store/postgres with its own queue, or queue/pgqueue's on the same pool and schema). With such a
// queue the store sends, holds, reads and acks the messages inside its own transactions; with any
// other, it returns the messages to send as data (Publish), and the caller publishes and acks them
// after the commit.
type QueueOwner interface {
	// OwnsQueue reports whether q's messages are the store's own rows.
	OwnsQueue(q queue.Queue) bool
}

// StepRef identifies a step for the queue.
type StepRef struct {
	TaskID uuid.UUID
	StepID uuid.UUID
	// TaskName, Version and Name (the step's template step) let the worker compute the step's
	// ancestors from the template before the claim; "" when unknown.
	TaskName, Version, Name string
	// Handler is the step's handler callable, so that a worker without the template version can
	// tell whether it has the handler before it claims the step; "" when unknown.
	Handler string
	// Retry marks a step in waiting_for_retry whose message fires when its backoff has elapsed.
	Retry bool
}

// StepMessage is the payload of a step's queue message, as the engine and a store that owns its
// queue write it, in JSON.
type StepMessage struct {
	TaskID uuid.UUID `json:"task_id"`
	StepID uuid.UUID `json:"step_id"`
	// Retry marks the timer message of a step waiting for its backoff.
	Retry bool `json:"retry,omitempty"`
	// TaskName, Version and Step name the step in its template, so that the worker knows its
	// ancestors before it claims it; empty when the sender did not know them.
	TaskName string `json:"task,omitempty"`
	Version  string `json:"version,omitempty"`
	Step     string `json:"step,omitempty"`
	// Handler is the step's handler callable, so that a worker can tell whether it has the handler
	// before it claims the step (and ClaimFromQueue can filter on it); empty when unknown.
	Handler string `json:"handler,omitempty"`
}

// Message returns the step's queue message.
func (r StepRef) Message() StepMessage {
	return StepMessage{TaskID: r.TaskID, StepID: r.StepID, Retry: r.Retry, TaskName: r.TaskName, Version: r.Version, Step: r.Name, Handler: r.Handler}
}

// Store is the persistence seam.
type Store interface {
	// RegisterTemplate stores a template definition in the registry. Versions are immutable: the
	// same definition (by checksum) again is a no-op, and a different one under a key already
	// registered is refused with a *TemplateConflictError, the stored row kept.
	RegisterTemplate(ctx context.Context, p RegisterTemplateParams) error
	// CreateTask creates a task as CreateTaskParams says, inside tx when it is not nil (a store
	// without transactions refuses a non-nil tx with an error of its own). A task with the same
	// identity hash for the same template is returned with Duplicate set, and nothing is written.
	CreateTask(ctx context.Context, tx pgx.Tx, p CreateTaskParams) (*CreateTaskResult, error)
	// ClaimStep moves an enqueued step to in_progress for one more attempt, under a lease, and
	// returns what its handler needs. It returns ErrConflict when the step is not enqueued (a
	// duplicate delivery, a cancelled task): the message should be dropped.
	ClaimStep(ctx context.Context, p ClaimStepParams) (*ClaimedStep, error)
	// PromoteRetry moves a step whose backoff has elapsed from waiting_for_retry to enqueued. It
	// returns ErrNotDue when the backoff has not elapsed, and ErrConflict when the step is not
	// waiting or its task is blocked or finished.
	PromoteRetry(ctx context.Context, p PromoteRetryParams) error
	// RecordOutcome records an attempt's outcome as OutcomeParams says, with a compare-and-set on
	// the attempt the worker holds. It returns ErrConflict when the worker no longer holds the
	// step (the task was cancelled, the step rescued).
	RecordOutcome(ctx context.Context, p OutcomeParams) (*OutcomeResult, error)
	// ReleaseStep gives an in-progress step back to the queue without spending its attempt.
	ReleaseStep(ctx context.Context, p ReleaseStepParams) error
	// Heartbeat extends the lease of a step its worker still holds and returns the step's state;
	// when the worker no longer holds it, it returns the current state and ErrConflict.
	Heartbeat(ctx context.Context, p HeartbeatParams) (statemachine.StepState, error)
	// CancelTask cancels a task and every step that has not finished. It returns ErrConflict when
	// the task is already terminal.
	CancelTask(ctx context.Context, p CancelTaskParams) (*OutcomeResult, error)
	// OperatorAction applies an operator's action to a step in error and resumes the task when
	// no failure is left. It returns ErrConflict when the step is not in error or the task has
	// finished.
	OperatorAction(ctx context.Context, p OperatorParams) (*OutcomeResult, error)
	// GetTask returns a task, or ErrNotFound.
	GetTask(ctx context.Context, id uuid.UUID) (*Task, error)
	// GetSteps returns a task's steps in creation order.
	GetSteps(ctx context.Context, taskID uuid.UUID) ([]Step, error)
	// StepTask returns the task and namespace a step belongs to.
	StepTask(ctx context.Context, stepID uuid.UUID) (uuid.UUID, string, error)
	// ListTasks returns the tasks that match the filter, newest first.
	ListTasks(ctx context.Context, p ListTasksParams) ([]Task, error)
	// Transitions returns the audit trail of a task and its steps, in the order it was written.
	Transitions(ctx context.Context, taskID uuid.UUID) ([]Transition, error)

	// SaveCheckpoint stores a batch worker's checkpoint while its worker holds the step.
	SaveCheckpoint(ctx context.Context, p CheckpointParams) error
	// StepNames returns the names of a task's existing steps.
	StepNames(ctx context.Context, taskID uuid.UUID) ([]string, error)

	// TryLead takes or renews the named leadership for p.TTL; it reports whether p.LeaderID holds it.
	TryLead(ctx context.Context, p LeadParams) (bool, error)
	// Resign gives the leadership up early, if p.LeaderID holds it.
	Resign(ctx context.Context, p LeadParams) error
	// ExpiredSteps lists steps in progress whose lease has expired: their worker died or was cut off.
	ExpiredSteps(ctx context.Context, p ExpiredStepsParams) ([]ExpiredStep, error)
	// StaleSteps lists steps enqueued (or due for their retry) for longer than p.OlderThan, and
	// marks them as seen so that each is listed at most once per OlderThan: the sweeper publishes
	// their messages again.
	StaleSteps(ctx context.Context, p StaleStepsParams) ([]StaleStep, error)

	DeadLetterStore // staleness and the dead-letter queue (deadletter.go)
	Inspector       // inspect.go: Ping, Leader, Edges
	History         // history.go: retention's purge, analytics
}

// CheckpointParams saves a checkpoint for the attempt a worker holds.
type CheckpointParams struct {
	StepID     uuid.UUID
	WorkerID   string
	Attempt    int
	Checkpoint json.RawMessage
}

// LeadParams names a leadership and its candidate.
type LeadParams struct {
	Name     string
	LeaderID string
	TTL      time.Duration
}

// ExpiredStepsParams bounds ExpiredSteps.
type ExpiredStepsParams struct {
	Limit int
}

// StaleStepsParams bounds StaleSteps.
type StaleStepsParams struct {
	OlderThan time.Duration
	Limit     int
}

// StaleStep is a step whose message may have been lost.
type StaleStep struct {
	Ref       StepRef
	Namespace string
}

// ExpiredStep is a step whose lease expired, with what the rescuer needs to settle its attempt.
type ExpiredStep struct {
	Step
	Namespace   string
	TaskName    string
	Version     string
	TraceParent string // the task's (Task.TraceParent)
}

// RegisterTemplateParams stores a template definition in the registry (see
// Store.RegisterTemplate: an insert, refused with a *TemplateConflictError when the key holds
// another checksum).
type RegisterTemplateParams struct {
	Namespace, Name, Version string
	Definition               json.RawMessage
	Checksum                 string
}

// NewStep is one step of a task being created.
type NewStep struct {
	StepID       uuid.UUID
	Name         string
	TemplateStep string
	Handler      string
	Type         string
	MaxAttempts  int
	Retryable    bool
	Backoff      string
	BackoffBase  time.Duration
	MaxBackoff   time.Duration
	Timeout      time.Duration
	Parents      []int // indices into CreateTaskParams.Steps
	Inputs       json.RawMessage
	// ParentNames, for steps created at run time (SpawnPlan), names the parents instead of Parents.
	ParentNames []string
	// Held keeps a ready batch worker waiting until a sibling of its batch finishes (parallelism).
	Held bool
	// BatchGroup is the batchable step that created a batch worker.
	BatchGroup uuid.UUID
	// FailureStrategy is a batch worker's failure strategy.
	FailureStrategy string
}

// SpawnPlan lists the steps a decision or batchable step's outcome creates, in the same
// transaction as its completion. A step that already exists (a convergence step made by an
// earlier outcome) only gains the edges from the parents it lacks, and only while it is pending;
// parents that do not exist are skipped.
type SpawnPlan struct {
	Steps []NewStep
}

// CreateTaskParams creates a task, its steps and edges, the initial transitions, and enqueues the
// root steps, all in one transaction.
type CreateTaskParams struct {
	TaskID         uuid.UUID
	Namespace      string
	Name           string
	Version        string
	Context        json.RawMessage
	IdentityHash   string
	IdempotencyKey string
	Priority       int
	CorrelationID  string
	Tags           []string
	Initiator      string // who asked for the task ("" stores nothing)
	SourceSystem   string // the system it came from ("" stores nothing)
	Reason         string // why ("" stores nothing)
	// TraceParent is the W3C traceparent of the creating call's span ("" stores nothing): every
	// step attempt's span joins that trace.
	TraceParent string
	Steps       []NewStep
	// Enqueuer sends the root steps' messages, unless OwnedQueue is set.
	Enqueuer Enqueuer
	// OwnedQueue tells a store that owns the engine's queue (QueueOwner.OwnsQueue) that it is the
	// one in use: the store sends the root steps' messages in the task's own transaction, and
	// Enqueuer is not used. A store that owns no queue ignores it.
	OwnedQueue bool
	// Template, when set, is written to the template registry in the same transaction, with
	// RegisterTemplate's rule: a different definition under its key fails the creation with a
	// *TemplateConflictError, and nothing is written.
	Template *RegisterTemplateParams
	// AnnounceCommit asks an EventListener store to announce the new task (EventTaskCreated) once
	// the transaction commits (not when it rolls back, nor for a duplicate). The engine sets it when
	// the task is created in a caller's transaction and its queue publishes after commits, which only
	// the database sees happen.
	AnnounceCommit bool
	// RunAt, when not zero, schedules the task's start (statemachine.PlanScheduledCreate): its
	// roots wait in waiting_for_retry with next_retry_at = RunAt, and their messages are retry
	// timers delayed until then. The engine passes only a RunAt in the future.
	RunAt time.Time
	// PriorityCredit dates the roots' messages back by this much (a negative send delay), so that
	// they are read before the messages of the last PriorityCredit (see the root package's
	// priority.go). 0: none. A scheduled task's roots get none: they wait for RunAt.
	PriorityCredit time.Duration
	// ClaimRoot, when set, asks a store that owns its queue to claim the root step
	// ClaimRoot.StepID for ClaimRoot.WorkerID in the creation's own transaction, as ClaimNext
	// claims a released step after an outcome: its message is sent held (hidden for the lease), so
	// that the engine whose worker had a free slot runs the first step at once, without a trip
	// through the queue, and a crash before it finishes leaves the step to the lease rescuer and the
	// message to surface after the lease. The step must be a root whose first state is enqueued
	// (not a scheduled task's). A store that cannot claim it in the creation ignores ClaimRoot, as
	// do creations in the caller's transaction; CreateTaskResult.Claimed says what was claimed.
	ClaimRoot *ClaimRootParams
}

// ClaimRootParams configures CreateTaskParams.ClaimRoot.
type ClaimRootParams struct {
	StepID   uuid.UUID
	WorkerID string
	Lease    time.Duration // the claimed step's lease, and how long its held message stays hidden
}

// TaskWithStepsReader is implemented by stores that read a task and its steps in one round trip
// (store/postgres pipelines both reads); the engine falls back to GetTask and GetSteps.
type TaskWithStepsReader interface {
	// GetTaskWithSteps returns a task, or ErrNotFound, and its steps in creation order.
	GetTaskWithSteps(ctx context.Context, id uuid.UUID) (*Task, []Step, error)
}

// EventListener is implemented by stores that announce some changes to every engine once they
// commit (store/postgres with NOTIFY, store/memory in process). Announcements are hints, sent only
// for committed changes: one can be lost (no listener at the time, a dropped connection), so the
// engine keeps its slower safety nets (the sweeper, heartbeats).
type EventListener interface {
	// ListenEvents calls handle for each announcement until ctx ends; it returns nil then, after
	// everything it started has stopped. handle must not block for long.
	ListenEvents(ctx context.Context, handle func(Event)) error
}

// EventKind is what an Event announces.
type EventKind int

// The events a store announces.
const (
	// EventTaskCreated: a task created with CreateTaskParams.AnnounceCommit was committed, or an
	// operator action with OperatorParams.AnnounceCommit: its enqueued steps are to be published.
	EventTaskCreated EventKind = iota + 1
	// EventTaskCancelled: a task was cancelled; its handlers running anywhere should stop.
	EventTaskCancelled
	// EventListening: the listener is in place, at first and again after each reconnection
	// (announcements made while it was away are lost). TaskID is uuid.Nil.
	EventListening
)

// Event is one announcement.
type Event struct {
	Kind   EventKind
	TaskID uuid.UUID
}

// CreateTaskResult is the created task, or the existing one when Duplicate is set.
type CreateTaskResult struct {
	Task Task
	// Steps are the task's steps in creation order: for a new task as its creation wrote them
	// (the roots enqueued, the others pending), read inside the creating transaction so that no
	// worker has moved them yet; for a duplicate, the existing task's steps as found.
	Steps     []Step
	Duplicate bool
	// Claimed is the root step claimed for CreateTaskParams.ClaimRoot, with its held message; nil
	// when none was (a store that does not, a duplicate, a root not enqueued).
	Claimed *ClaimedMessage
}

// ClaimStepParams moves an enqueued step to in_progress for one attempt.
type ClaimStepParams struct {
	StepID   uuid.UUID
	WorkerID string
	Lease    time.Duration
	// Ancestors, when not nil, names the steps whose results the handler sees (computed from the
	// template's DAG); nil means every ancestor in the task's edges.
	Ancestors []string
}

// ClaimedStep is everything a handler needs for one attempt.
type ClaimedStep struct {
	Step    Step
	Task    Task
	Results map[string]json.RawMessage // the results of every ancestor, by step name
}

// PromoteRetryParams moves a step whose backoff has elapsed from waiting_for_retry to enqueued.
type PromoteRetryParams struct {
	StepID uuid.UUID
}

// OutcomeKind is what an attempt came to.
type OutcomeKind int

// The outcomes of an attempt.
const (
	OutcomeSuccess   OutcomeKind = iota + 1 // complete with a result
	OutcomeRetry                            // waiting_for_retry until NextRetryAt
	OutcomePermanent                        // error: the task is blocked until an operator acts
)

// OutcomeParams records the outcome of one attempt, releases the dependents it makes ready,
// enqueues them and finalizes the task, in one transaction.
type OutcomeParams struct {
	TaskID     uuid.UUID
	StepID     uuid.UUID
	WorkerID   string
	Attempt    int
	Kind       OutcomeKind
	Result     json.RawMessage // for OutcomeSuccess
	Error      json.RawMessage // for failures: {"message": ..., "kind": ..., ...}
	RetryDelay time.Duration   // for OutcomeRetry
	// PriorityCredit dates the messages of the steps the outcome releases back by this much (see
	// CreateTaskParams.PriorityCredit).
	PriorityCredit time.Duration
	Namespace      string
	Enqueuer       Enqueuer
	BeforeCommit   func(ctx context.Context, tx pgx.Tx) error // e.g. ack the queue message in the same transaction
	// LeaseExpired makes the compare-and-set also require an expired lease: the rescuer settles
	// the attempt of a worker that stopped renewing it.
	LeaseExpired bool
	// Spawn, with OutcomeSuccess, creates steps (a decision's branches, a batch's workers).
	Spawn *SpawnPlan
	// Isolated, with OutcomePermanent, marks the failure as isolated: the rest of the task goes on
	// and the task settles in blocked_by_failures only when nothing else can run.
	Isolated bool
	// AckBatch, when set, may be called by a store that commits the outcome with a pipelined
	// pgx.Batch (store/postgres's hot path), to queue the ack of the attempt's message into that
	// batch; the store then reports OutcomeResult.Acked. Other paths ignore it.
	AckBatch func(b *pgx.Batch) error
	// ClaimNext, with OutcomeSuccess, asks a store that commits the outcome in a pipelined
	// pgx.Batch (store/postgres's hot path) to claim for the same worker, in the same transaction,
	// one of the steps this outcome makes ready, so that the worker runs it next without a trip
	// through the queue. Its message is still sent, held by the worker (ClaimNextParams.Hold), and
	// its start transition's metadata names the handing step ("after": StepID), so that a worker
	// that cannot tell whether its outcome committed can find and release it. The claimed step
	// comes back in OutcomeResult.Next; other paths ignore ClaimNext.
	ClaimNext *ClaimNextParams
}

// ClaimNextParams configures OutcomeParams.ClaimNext.
type ClaimNextParams struct {
	// Lease is the claimed step's lease, and how long its held message stays hidden.
	Lease time.Duration
	// Hold queues into b the message of the claimed step, held by the worker (see
	// queue.BatchHolder); *id receives its ID when the batch runs. It reports false when the queue
	// cannot, and the store then claims nothing.
	Hold func(b *pgx.Batch, namespace string, step StepRef, lease time.Duration, id *int64) (bool, error)
	// Accept, when set, tells whether the worker can run a released step (the store claims the
	// first one accepted, or none).
	Accept func(namespace string, step StepRef) bool
	// Ancestors, when set, names the steps whose results the claimed step's handler sees, as
	// ClaimStepParams.Ancestors does (nil: every ancestor along the task's edges).
	Ancestors func(namespace string, step StepRef) []string
}

// NextStep is a step claimed by RecordOutcome for the worker that recorded the outcome.
type NextStep struct {
	ClaimedStep
	// MessageID is the ID of the step's message, which the worker holds.
	MessageID int64
}

// OutcomeResult reports the task's state after an outcome or operator action.
type OutcomeResult struct {
	TaskID    uuid.UUID
	TaskState statemachine.TaskState
	// Settled is set when this call brought the task to rest (statemachine.AtRest): into a
	// terminal state, or into blocked_by_failures with no step left active, or, in a task already
	// blocked, finished its last active step. A failure that blocks the task while other steps
	// still run does not set it; the outcome of the last of them does.
	Settled bool
	// Released lists the dependents that were enqueued.
	Released int
	// Acked reports that OutcomeParams.AckBatch ran in the committed transaction.
	Acked bool
	// Next is the step claimed for the worker (OutcomeParams.ClaimNext), or nil.
	Next *NextStep
}

// ReleaseStepParams gives an in-progress step back to the queue without spending its attempt
// (graceful shutdown).
type ReleaseStepParams struct {
	StepID   uuid.UUID
	WorkerID string
	Attempt  int
	Reason   string
	// Enqueuer, when set, sends the released step's message on Namespace's queue in the same
	// transaction, as every other move to enqueued does. A caller that gives its own message back
	// (queue.RetryLater) leaves it nil; one that cannot count on an earlier message of the step
	// sets it: a message that surfaces while its step is in progress is dropped at its claim.
	Namespace string
	Enqueuer  Enqueuer
	// Delay hides the message Enqueuer sends for that long (a step declined by this engine, given
	// a chance to reach another one first).
	Delay time.Duration
}

// HeartbeatParams extends a step's lease; the step's current state is returned so that a worker
// learns of a cancellation.
type HeartbeatParams struct {
	StepID   uuid.UUID
	WorkerID string
	Lease    time.Duration
	// Attempt, when > 0, is the attempt the worker runs: the step is held only at that attempt
	// (the same worker may have claimed a later one after its lease expired).
	Attempt int
}

// CancelTaskParams cancels a task and every unfinished step.
type CancelTaskParams struct {
	TaskID uuid.UUID
	Reason string
}

// OperatorAction is what an operator does to a step in error.
type OperatorAction string

// The operator actions.
const (
	OperatorRetry    OperatorAction = "retry"    // reset the step for another attempt
	OperatorResolve  OperatorAction = "resolve"  // mark it resolved_manually
	OperatorComplete OperatorAction = "complete" // complete it with a given result
)

// OperatorParams applies an operator action to a step in error and resumes the task when no
// failure is left.
type OperatorParams struct {
	StepID    uuid.UUID
	Action    OperatorAction
	Result    json.RawMessage // for OperatorComplete
	Reason    string
	Operator  string
	Namespace string
	Enqueuer  Enqueuer
	// AnnounceCommit asks an EventListener store to announce the step's task (EventTaskCreated)
	// once the transaction commits, as CreateTaskParams.AnnounceCommit does: the action runs in a
	// caller's transaction, and the steps it enqueued are published by the elected engine then.
	AnnounceCommit bool
}

// Task is a task row.
type Task struct {
	ID              uuid.UUID
	Namespace       string
	Name            string
	Version         string
	State           statemachine.TaskState
	Context         json.RawMessage
	IdentityHash    string
	IdempotencyKey  string
	Priority        int
	CorrelationID   string
	Tags            []string
	Initiator       string
	SourceSystem    string
	Reason          string
	TraceParent     string // the creating span's W3C traceparent, "" when none was recorded
	StepsTotal      int
	StepsUnfinished int
	StepsActive     int
	StepsFailed     int
	CreatedAt       time.Time
	UpdatedAt       time.Time
	CompletedAt     *time.Time
}

// Step is a step row.
type Step struct {
	ID              uuid.UUID
	TaskID          uuid.UUID
	Name            string
	TemplateStep    string
	Handler         string
	Type            string
	State           statemachine.StepState
	Attempts        int
	MaxAttempts     int
	Retryable       bool
	Backoff         string
	BackoffBase     time.Duration
	MaxBackoff      time.Duration
	Timeout         time.Duration
	NextRetryAt     *time.Time
	LeaseOwner      string
	LeaseExpiresAt  *time.Time
	Inputs          json.RawMessage
	Result          json.RawMessage
	LastError       json.RawMessage
	Checkpoint      json.RawMessage
	BatchGroup      *uuid.UUID
	FailureStrategy string
	CreatedAt       time.Time
	UpdatedAt       time.Time
	StartedAt       *time.Time
	CompletedAt     *time.Time
}

// ListTasksParams filters and pages ListTasks. Results are ordered by creation time, newest first.
type ListTasksParams struct {
	Namespace     string
	Name          string
	States        []statemachine.TaskState
	CreatedAfter  time.Time
	CreatedBefore time.Time
	Limit         int
	// AfterID continues a listing after the task with this ID (keyset pagination).
	AfterID uuid.UUID
	// Scheduled keeps only the tasks waiting for their scheduled start: a step waits in
	// waiting_for_retry with no attempt made and next_retry_at still ahead, and no step of the
	// task has made an attempt.
	Scheduled bool
}

// Transition is one row of the audit trail.
type Transition struct {
	TaskID    uuid.UUID
	StepID    uuid.UUID // uuid.Nil for a task transition
	StepName  string
	From      string // "" for the first transition
	To        string
	Event     string
	Metadata  json.RawMessage
	SortKey   int
	CreatedAt time.Time
}

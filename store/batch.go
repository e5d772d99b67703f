package store

import (
	"context"
	"encoding/json"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-systems/tasker/statemachine"
)

// BatchStore is the batched hot path of the seam (issue 12, engine v2): claims and outcomes of
// many steps, of many tasks, as plain data in one call. Every store implements it; it joins Store
// when the callback seam (OutcomeParams' callbacks, RecordOutcome, ClaimStep) is removed.
type BatchStore interface {
	// ClaimMany moves each enqueued step of p to in_progress for one more attempt by p.WorkerID,
	// under p.Lease, and loads what its handler needs. A step that is not enqueued (a duplicate
	// delivery, a cancelled task, an unknown step) is reported in Stale, and the others are still
	// claimed.
	ClaimMany(ctx context.Context, p ClaimManyParams) (*ClaimManyResult, error)
	// RecordOutcomes records the outcomes of p in one transaction, each with a compare-and-set on
	// the attempt its worker holds: it moves the step as the outcome's plan says, releases the
	// dependents it makes ready, updates the counters and settles the task. An outcome whose worker
	// no longer holds its step is reported per outcome (Conflict, AlreadyRecorded, NotFound) and
	// the others are still recorded. A recorded success with Handoff claims one of the steps it
	// released for its worker (OutcomeRecord.Next). An error means nothing was recorded.
	RecordOutcomes(ctx context.Context, p RecordOutcomesParams) (*RecordOutcomesResult, error)
	// HeartbeatMany extends the lease of each step of p that p.WorkerID still holds at its
	// attempt, and reports every step's state, in p.Steps' order, so that a worker learns which
	// of its steps were cancelled or rescued.
	HeartbeatMany(ctx context.Context, p HeartbeatManyParams) ([]HeartbeatRecord, error)
	// ReleaseSteps gives in-progress steps back to the queue (enqueued) without spending their
	// attempts, as a graceful shutdown or a decline does, each with a compare-and-set on the
	// attempt p.WorkerID holds; a step no longer held is skipped and reported.
	ReleaseSteps(ctx context.Context, p ReleaseStepsParams) ([]ReleaseRecord, error)
	// PromoteRetries moves each step of p whose backoff has elapsed from waiting_for_retry to
	// enqueued, as PromoteRetry does, in one transaction; a step that cannot be promoted is
	// reported with PromoteRetry's error and the others are still promoted.
	PromoteRetries(ctx context.Context, p PromoteRetriesParams) ([]PromoteRecord, error)
}

// Outcome is one attempt's outcome, decided above the seam: the store applies Plan and derives
// no state of its own.
type Outcome struct {
	TaskID, StepID uuid.UUID
	WorkerID       string
	Attempt        int
	// Plan is statemachine.PlanOutcome's plan of the attempt: the step's transition and its
	// metadata, whether it keeps a result and releases its children. Its Meta identifies the
	// outcome, so a retried call finds a landed one AlreadyRecorded.
	Plan statemachine.OutcomePlan
	// Result is a success's result; Error a failure's {"message": ..., "kind": ...} document.
	Result, Error json.RawMessage
	// RetryDelay is a retry's backoff: its message becomes visible then.
	RetryDelay time.Duration
	// PriorityCredit dates the messages of the steps the outcome releases back by this much (see
	// CreateTaskParams.PriorityCredit).
	PriorityCredit time.Duration
	// LeaseExpired makes the compare-and-set also require an expired lease: the rescuer settles
	// the attempt of a worker that stopped renewing it.
	LeaseExpired bool
	// Spawn, with a success, creates steps (a decision's branches, a batch's workers).
	Spawn     *SpawnPlan
	Namespace string
	// MessageID is the attempt's queue message (0: none). A store that owns the queue deletes it
	// in the outcome's commit, whatever the outcome's status (OutcomeRecord.Acked), when the call
	// says the queue is its own (RecordOutcomesParams.OwnedQueue); otherwise the caller acks it
	// once the call has returned.
	MessageID int64
	// Handoff, with a success, asks the store to claim for WorkerID, in the same transaction, one
	// of the steps this outcome makes ready whose handler is in RecordOutcomesParams.Callables,
	// so that the worker runs it next without a trip through the queue (OutcomeRecord.Next). The
	// step's start transition names this one ("after": StepID), so that a worker that cannot tell
	// whether the call committed can find the step and give it back.
	Handoff bool
}

// RecordOutcomesParams records many outcomes, of many tasks, in one transaction.
type RecordOutcomesParams struct {
	// Outcomes are applied in order; two outcomes of one task see each other's effects, as they
	// would one after the other.
	Outcomes []Outcome
	// Lease is the lease of a handed-over step (Outcome.Handoff), and how long its held message
	// stays hidden. It must be positive when an outcome asks for a hand-over.
	Lease time.Duration
	// Callables are the handlers the worker has: only a step whose handler is one of them is
	// handed over (none when empty).
	Callables []string
	// OwnedQueue tells a store that owns the caller's queue (QueueOwner.OwnsQueue) that it is the
	// one in use: the store then sends the messages of the steps the outcomes enqueue in the
	// commit (Publish stays empty), holds the message of a handed-over step (NextStep.MessageID),
	// and deletes each Outcome.MessageID. A store that owns no queue ignores it.
	OwnedQueue bool
}

// OutcomeStatus is what became of one outcome of a RecordOutcomes call.
type OutcomeStatus int

// The statuses of an outcome.
const (
	// Recorded: the outcome was applied.
	Recorded OutcomeStatus = iota + 1
	// AlreadyRecorded: the step's latest transition is this very outcome (same worker, attempt,
	// move and metadata): a retried call after a commit whose answer was lost. Nothing changed.
	AlreadyRecorded
	// Conflict: the worker no longer holds the step (cancelled, rescued, another attempt, or the
	// task has no such step). Nothing changed.
	Conflict
	// NotFound: the outcome's task does not exist. Nothing changed.
	NotFound
)

// String returns the status's name.
func (s OutcomeStatus) String() string {
	switch s {
	case Recorded:
		return "recorded"
	case AlreadyRecorded:
		return "already_recorded"
	case Conflict:
		return "conflict"
	case NotFound:
		return "not_found"
	}
	return "unknown"
}

// OutcomeRecord is the answer to one outcome, in the order of RecordOutcomesParams.Outcomes.
type OutcomeRecord struct {
	StepID uuid.UUID
	Status OutcomeStatus
	// TaskState, Settled and Released are as in OutcomeResult, for a Recorded outcome: the task's
	// state after it, whether it brought the task to rest, how many dependents it enqueued.
	TaskState statemachine.TaskState
	Settled   bool
	Released  int
	// Acked reports that the store deleted the outcome's MessageID (if it was still there) in
	// this commit: the caller does not ack it.
	Acked bool
	// Next is the step handed over to the outcome's worker (Outcome.Handoff), claimed for it under
	// RecordOutcomesParams.Lease, or nil. Its MessageID is its message, held by the worker, when
	// the store owns the queue (RecordOutcomesParams.OwnedQueue); 0 otherwise: the step was not
	// published, and the rescuer takes it over should the worker die.
	Next *NextStep
}

// RecordOutcomesResult is the answer to RecordOutcomes.
type RecordOutcomesResult struct {
	// Records are in Outcomes' order.
	Records []OutcomeRecord
	// Publish lists the messages of the steps the outcomes enqueued (released dependents, retry
	// timers), for the caller to send once the call has returned; a crash in between leaves them
	// to the sweeper.
	Publish []Publish
}

// Publish is a group of step messages to send once the call that made them ready has committed.
type Publish struct {
	Namespace string
	Steps     []StepRef
	// Delay is how long the messages stay invisible (a retry's backoff).
	Delay time.Duration
}

// ClaimManyParams claims many enqueued steps for one worker.
type ClaimManyParams struct {
	WorkerID string
	Lease    time.Duration
	Steps    []ClaimRef
}

// ClaimRef is one step to claim, with the message that delivered it.
type ClaimRef struct {
	StepID uuid.UUID
	// MessageID is the delivering message, returned with the claim (0: none).
	MessageID int64
	// Ancestors, when not nil, names the steps whose results the handler sees (from the
	// template's DAG); nil means every ancestor along the task's edges.
	Ancestors []string
}

// ClaimManyResult is the answer to ClaimMany and ClaimFromQueue.
type ClaimManyResult struct {
	// Claimed are the claimed steps, in the order of ClaimManyParams.Steps (of the messages'
	// IDs for ClaimFromQueue).
	Claimed []ClaimedMessage
	// Stale are the refs whose step was not enqueued (a duplicate delivery, a cancelled task, an
	// unknown step, a message that names no step): their messages should be acked and dropped.
	Stale []ClaimRef
	// Retries, from ClaimFromQueue only, are the retry timers read (StepMessage.Retry) whose
	// steps still wait in waiting_for_retry: their messages are hidden for the claim's lease, and
	// the caller promotes the steps (PromoteRetries) and claims them (ClaimMany), or gives the
	// messages back. A retry timer whose step an earlier delivery promoted is claimed as usual.
	Retries []ClaimRef
}

// ClaimedMessage is a claimed step and the message that delivered it.
type ClaimedMessage struct {
	ClaimedStep
	MessageID int64
	// ReadCount and EnqueuedAt are the message's, as queue.Message has them, for ClaimFromQueue
	// (zero for ClaimMany, which reads no message).
	ReadCount  int
	EnqueuedAt time.Time
}

// QueueClaimer is implemented by a store that owns its queue (QueueOwner): it reads messages and
// claims their steps in one statement.
type QueueClaimer interface {
	// ClaimFromQueue reads up to p.Limit visible messages of p.Namespace's queue whose handler is
	// one of p.Callables (or that name no handler), hides each for p.Lease, and claims their
	// enqueued steps for p.WorkerID under p.Lease, as ClaimMany does. The message of a step it
	// claims may be deleted instead of hidden (store/postgres does): the step's lease stands for
	// it, so a caller that gives a claimed step back (ReleaseStep) sends it a message of its own
	// (ReleaseStepParams.Enqueuer) rather than counting on RetryLater. It loads the results of
	// every ancestor along the task's edges. A message whose step is not enqueued is reported in
	// Stale (or, for a retry timer whose step waits for its backoff, in Retries). Nothing to read
	// is an empty result, not an error.
	ClaimFromQueue(ctx context.Context, p ClaimFromQueueParams) (*ClaimManyResult, error)
}

// ClaimFromQueueParams reads and claims up to Limit steps of one namespace's queue for a worker.
type ClaimFromQueueParams struct {
	Namespace, WorkerID string
	// Limit is the most messages read; it must be positive.
	Limit int
	// Lease is the claimed steps' lease and their messages' visibility timeout; it must be
	// positive.
	Lease time.Duration
	// Callables are the handlers the worker has: a message naming another handler is left for
	// another worker; one that names none (StepMessage.Handler empty) is read.
	Callables []string
}

// HeartbeatManyParams extends the leases of many steps of one worker.
type HeartbeatManyParams struct {
	WorkerID string
	Lease    time.Duration
	Steps    []StepAttempt
}

// StepAttempt is an attempt a worker runs, with the message that delivered it.
type StepAttempt struct {
	StepID uuid.UUID
	// Attempt, when > 0, is the attempt the worker runs: the step is held only at that attempt.
	Attempt int
	// MessageID is the attempt's queue message (0: none). A store that owns the queue keeps it
	// hidden for the new lease too, in the same statement, while the step is held.
	MessageID int64
}

// HeartbeatRecord is one step's answer to HeartbeatMany.
type HeartbeatRecord struct {
	StepID uuid.UUID
	// State is the step's state ("" for an unknown step).
	State statemachine.StepState
	// Held reports that the worker holds the step at its attempt, and that its lease was
	// extended.
	Held bool
}

// ReleaseStepsParams gives many steps of one worker back.
type ReleaseStepsParams struct {
	WorkerID string
	Steps    []ReleaseRef
}

// ReleaseRef is one step to give back, at the attempt the worker holds, with why.
type ReleaseRef struct {
	StepID  uuid.UUID
	Attempt int
	Reason  string
}

// ReleaseRecord is one step's answer to ReleaseSteps, in the order of ReleaseStepsParams.Steps.
type ReleaseRecord struct {
	StepID uuid.UUID
	// Released is false when the worker no longer held the step at that attempt (cancelled,
	// rescued, unknown): nothing changed, and its message has nothing left to do.
	Released bool
}

// PromoteRetriesParams promotes many retries whose timers fired.
type PromoteRetriesParams struct {
	Steps []uuid.UUID
}

// PromoteRecord is one step's answer to PromoteRetries, in the order of PromoteRetriesParams.Steps.
type PromoteRecord struct {
	StepID uuid.UUID
	// Err is nil when the step was promoted, else what PromoteRetry would have returned for it:
	// ErrNotDue, ErrConflict (not waiting, or its task is blocked or finished) or ErrNotFound.
	// Nothing changed for it then.
	Err error
}

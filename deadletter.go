package tasker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

// DeadLetterReason says why a task was put in the dead-letter queue.
type DeadLetterReason = store.DeadLetterReason

// The dead-letter reasons.
const (
	// ReasonStalenessTimeout: the staleness detector found the task past a lifecycle threshold.
	ReasonStalenessTimeout = store.ReasonStalenessTimeout
	// ReasonMaxRetriesExceeded: the task is blocked by a step that used all its attempts; the
	// elected engine writes these entries (the task stays blocked until an operator fixes the step).
	ReasonMaxRetriesExceeded = store.ReasonMaxRetriesExceeded
	// ReasonPermanentFailure: the task is blocked by a step that failed for good at once.
	ReasonPermanentFailure = store.ReasonPermanentFailure
	// ReasonWorkerUnavailable: no worker could take the task's steps.
	ReasonWorkerUnavailable = store.ReasonWorkerUnavailable
	// ReasonManual: an operator put the task there (Engine.DeadLetterTask).
	ReasonManual = store.ReasonManual
)

// DeadLetterStatus is the status of a dead-letter entry: pending until an operator resolves it,
// once, to one of the three resolutions.
type DeadLetterStatus = statemachine.DeadLetterStatus

// The dead-letter statuses.
const (
	// DeadLetterPending is an entry waiting for an operator.
	DeadLetterPending = statemachine.DeadLetterPending
	// DeadLetterManuallyResolved is an entry whose problem an operator fixed (the task was resumed
	// with a step fix, or its effect was achieved by other means).
	DeadLetterManuallyResolved = statemachine.DeadLetterManuallyResolved
	// DeadLetterPermanentlyFailed is an entry an operator gave up on.
	DeadLetterPermanentlyFailed = statemachine.DeadLetterPermanentlyFailed
	// DeadLetterCancelled is an entry an operator withdrew (raised in error, or no longer relevant).
	DeadLetterCancelled = statemachine.DeadLetterCancelled
)

// Bounds of the dead-letter API.
const (
	// DeadLetterPageLimitDefault is the page size of DeadLetters when the filter's Limit is 0.
	DeadLetterPageLimitDefault = 100
	// DeadLetterPageLimitMax is the largest page DeadLetters returns.
	DeadLetterPageLimitMax = 1000
)

// Errors of the dead-letter API, for errors.Is.
var (
	// ErrDeadLetterNotFound is returned for an unknown entry, or a task without any entry.
	ErrDeadLetterNotFound = errors.New("tasker: dead-letter entry not found")
	// ErrDeadLetterOpen is returned by DeadLetterTask when the task already has a pending entry:
	// a task has at most one open entry at a time.
	ErrDeadLetterOpen = store.ErrDeadLetterOpen
	// ErrIllegalResolution is matched by a *DeadLetterResolutionError.
	ErrIllegalResolution = errors.New("tasker: illegal dead-letter resolution")
	// ErrInvalidDeadLetterRequest is matched by a *DeadLetterRequestError.
	ErrInvalidDeadLetterRequest = errors.New("tasker: invalid dead-letter request")
)

// DeadLetterResolutionError reports a resolution the entry cannot take: to pending or to a status
// that is not one, or of an entry already resolved (an entry is resolved once and never goes back
// to pending). Nothing was changed. It matches ErrIllegalResolution and ErrNotAllowed.
type DeadLetterResolutionError struct {
	EntryID uuid.UUID
	// From is the entry's status ("" when the move was refused before the entry was read); To is
	// the status asked for.
	From, To DeadLetterStatus
	// Reason says what is wrong.
	Reason string
}

func (e *DeadLetterResolutionError) Error() string {
	return fmt.Sprintf("tasker: dead-letter entry %s cannot be resolved to %q: %s", e.EntryID, e.To, e.Reason)
}

// Is makes errors.Is(err, ErrIllegalResolution) and errors.Is(err, ErrNotAllowed) true.
func (e *DeadLetterResolutionError) Is(target error) bool {
	return target == ErrIllegalResolution || target == ErrNotAllowed
}

// DeadLetterRequestError reports an argument of a dead-letter call that is refused before anything
// is read or written: a missing operator, an unknown status or reason in a filter, a cursor that no
// page returned, a negative limit. Text the database cannot store (notes, an operator's name) is a
// *ValueError instead, as for the operator actions.
type DeadLetterRequestError struct {
	// Field names the argument, such as "By", "Cursor" or "Status".
	Field string
	// Reason says what is wrong.
	Reason string
}

func (e *DeadLetterRequestError) Error() string {
	return fmt.Sprintf("%s: %s %s", ErrInvalidDeadLetterRequest.Error(), e.Field, e.Reason)
}

// Is makes errors.Is(err, ErrInvalidDeadLetterRequest) true.
func (e *DeadLetterRequestError) Is(target error) bool { return target == ErrInvalidDeadLetterRequest }

// DeadLetter is one dead-letter entry: why and when its task was put there, the task and its steps
// as they were then (Snapshot), its resolution, and what the investigation needs of the task now.
type DeadLetter struct {
	ID     uuid.UUID
	TaskID uuid.UUID
	Reason DeadLetterReason
	Status DeadLetterStatus
	// OriginalState is the task's state when the entry was written.
	OriginalState TaskState
	// Snapshot is the task and its steps when the entry was written, with the detail of why, as
	// JSON; DecodeSnapshot reads it.
	Snapshot  json.RawMessage
	CreatedAt time.Time
	// ResolvedAt, ResolvedBy and Notes are set by ResolveDeadLetter.
	ResolvedAt *time.Time
	ResolvedBy string
	Notes      string
	// Namespace, TaskName, TaskState and TaskPriority are the task's, read with the entry: the
	// state is the task's current one (an operator's step fix may have resumed it since).
	Namespace, TaskName string
	TaskState           TaskState
	TaskPriority        int
}

// DeadLetterSnapshot is the decoded DeadLetter.Snapshot: the task and its steps as they were, and
// the detail of why the entry was written (the threshold that fired, the operator who asked).
type DeadLetterSnapshot = store.Snapshot

// DecodeSnapshot decodes the entry's snapshot.
func (d *DeadLetter) DecodeSnapshot() (*DeadLetterSnapshot, error) {
	var s DeadLetterSnapshot
	if err := json.Unmarshal(d.Snapshot, &s); err != nil {
		return nil, fmt.Errorf("tasker: decode the snapshot of dead-letter entry %s: %w", d.ID, err)
	}
	return &s, nil
}

func deadLetterFromStore(d *store.DeadLetter) DeadLetter {
	return DeadLetter{ID: d.ID, TaskID: d.TaskID, Reason: d.Reason, Status: d.Status, OriginalState: d.OriginalState,
		Snapshot: d.Snapshot, CreatedAt: d.CreatedAt, ResolvedAt: d.ResolvedAt, ResolvedBy: d.ResolvedBy, Notes: d.Notes,
		Namespace: d.Namespace, TaskName: d.TaskName, TaskState: d.TaskState, TaskPriority: d.TaskPriority}
}

// DeadLetterFilter filters and pages DeadLetters. Zero fields do not filter.
type DeadLetterFilter struct {
	Status    DeadLetterStatus
	Reason    DeadLetterReason
	Namespace string
	// Since keeps the entries written at or after it.
	Since time.Time
	// Limit caps the page: 0 means DeadLetterPageLimitDefault, and at most DeadLetterPageLimitMax.
	Limit int
	// Cursor continues a listing where a page ended: its NextCursor, with the same filter.
	Cursor string
}

// DeadLetterPage is one page of DeadLetters, newest entry first.
type DeadLetterPage struct {
	Entries []DeadLetter
	// NextCursor, when not "", is the DeadLetterFilter.Cursor of the next page; "" means this is
	// the last page. It is opaque, and stays valid as entries are added or resolved: the listing is
	// keyset-paged, so a page neither repeats nor skips an entry that matched when the listing began.
	NextCursor string
}

// DeadLetters lists the dead-letter entries that match the filter, newest first, one page at a
// time. An unknown status or reason, a negative limit or a cursor no page returned is refused with
// a *DeadLetterRequestError.
func (e *Engine) DeadLetters(ctx context.Context, f DeadLetterFilter) (*DeadLetterPage, error) {
	limit := f.Limit
	switch {
	case f.Status != "" && !f.Status.Valid():
		return nil, &DeadLetterRequestError{Field: "Status", Reason: fmt.Sprintf("%q is not a dead-letter status", f.Status)}
	case f.Reason != "" && !f.Reason.Valid():
		return nil, &DeadLetterRequestError{Field: "Reason", Reason: fmt.Sprintf("%q is not a dead-letter reason", f.Reason)}
	case limit < 0:
		return nil, &DeadLetterRequestError{Field: "Limit", Reason: fmt.Sprintf("is %d (0 means %d)", limit, DeadLetterPageLimitDefault)}
	case limit == 0:
		limit = DeadLetterPageLimitDefault
	}
	limit = min(limit, DeadLetterPageLimitMax)
	var after uuid.UUID
	if f.Cursor != "" {
		id, err := uuid.Parse(f.Cursor)
		if err != nil || id == uuid.Nil {
			return nil, &DeadLetterRequestError{Field: "Cursor", Reason: fmt.Sprintf("%q is not a cursor a page returned", f.Cursor)}
		}
		after = id
	}
	// One more than the page tells whether another page follows.
	list, err := e.store.ListDeadLetters(ctx, store.ListDeadLettersParams{Status: f.Status, Reason: f.Reason,
		Namespace: f.Namespace, Since: f.Since, AfterID: after, Limit: limit + 1})
	if err != nil {
		return nil, fmt.Errorf("tasker: list dead letters: %w", err)
	}
	page := &DeadLetterPage{Entries: make([]DeadLetter, 0, min(len(list), limit))}
	for i := range list[:min(len(list), limit)] {
		page.Entries = append(page.Entries, deadLetterFromStore(&list[i]))
	}
	if len(list) > limit {
		page.NextCursor = page.Entries[len(page.Entries)-1].ID.String()
	}
	return page, nil
}

// DeadLetter returns one entry by its ID, or ErrDeadLetterNotFound.
func (e *Engine) DeadLetter(ctx context.Context, entryID uuid.UUID) (*DeadLetter, error) {
	d, err := e.deadLetterByID(ctx, entryID)
	if err != nil {
		return nil, err
	}
	out := deadLetterFromStore(d)
	return &out, nil
}

// deadLetterByID reads one entry through the keyset listing: the first entry below the ID's
// successor is the entry itself, when it exists.
func (e *Engine) deadLetterByID(ctx context.Context, id uuid.UUID) (*store.DeadLetter, error) {
	next, ok := uuidSuccessor(id)
	p := store.ListDeadLettersParams{Limit: 1}
	if ok {
		p.AfterID = next
	}
	list, err := e.store.ListDeadLetters(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("tasker: read dead-letter entry %s: %w", id, err)
	}
	if len(list) == 0 || list[0].ID != id {
		return nil, fmt.Errorf("%w: %s", ErrDeadLetterNotFound, id)
	}
	return &list[0], nil
}

// uuidSuccessor returns the UUID after id in byte order (the stores' order), and false for the
// largest, which has none.
func uuidSuccessor(id uuid.UUID) (uuid.UUID, bool) {
	for i := len(id) - 1; i >= 0; i-- {
		id[i]++
		if id[i] != 0 {
			return id, true
		}
	}
	return uuid.Nil, false
}

// TaskDeadLetter returns a task's pending entry, or else its newest. It returns ErrTaskNotFound
// for an unknown task, and ErrDeadLetterNotFound for a task that has no entry.
func (e *Engine) TaskDeadLetter(ctx context.Context, taskID uuid.UUID) (*DeadLetter, error) {
	d, err := e.store.TaskDeadLetter(ctx, taskID)
	if errors.Is(err, store.ErrNotFound) {
		if _, terr := e.store.GetTask(ctx, taskID); terr != nil {
			return nil, mapStoreErr(terr, taskID)
		}
		return nil, fmt.Errorf("%w: task %s has no entry", ErrDeadLetterNotFound, taskID)
	}
	if err != nil {
		return nil, fmt.Errorf("tasker: read the dead letter of task %s: %w", taskID, err)
	}
	out := deadLetterFromStore(d)
	return &out, nil
}

// DeadLetterResolution is an operator's resolution of a pending entry.
type DeadLetterResolution struct {
	// Status is the resolution: DeadLetterManuallyResolved, DeadLetterPermanentlyFailed or
	// DeadLetterCancelled.
	Status DeadLetterStatus
	// Notes say what was done; optional, at most MaxOperatorTextBytes.
	Notes string
	// By names the operator; required, at most MaxOperatorTextBytes.
	By string
}

// ResolveDeadLetter resolves a pending entry, once, and returns it resolved. Resolving changes only
// the entry: the task is resumed by fixing its step (RetryStep, ResolveStep, CompleteStep), before
// or after. A move to pending or to a status that is not a resolution, or of an entry already
// resolved, returns a *DeadLetterResolutionError (errors.Is ErrIllegalResolution) and changes
// nothing; so does a resolution racing another, for the one that loses. A missing By is a
// *DeadLetterRequestError; notes or a name the database cannot store, a *ValueError. An unknown
// entry returns ErrDeadLetterNotFound.
func (e *Engine) ResolveDeadLetter(ctx context.Context, entryID uuid.UUID, r DeadLetterResolution) (*DeadLetter, error) {
	if err := statemachine.CheckResolution(DeadLetterPending, r.Status); err != nil {
		return nil, &DeadLetterResolutionError{EntryID: entryID, To: r.Status, Reason: err.Error()}
	}
	if err := checkOperatorText(r.By, "notes", r.Notes); err != nil {
		return nil, fmt.Errorf("tasker: resolve dead-letter entry %s: %w", entryID, err)
	}
	d, err := e.store.ResolveDeadLetter(ctx, store.ResolveDeadLetterParams{ID: entryID, Status: r.Status, Notes: r.Notes, ResolvedBy: r.By})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, fmt.Errorf("%w: %s", ErrDeadLetterNotFound, entryID)
	case errors.Is(err, store.ErrConflict):
		re := &DeadLetterResolutionError{EntryID: entryID, To: r.Status, Reason: "the entry is no longer pending"}
		if cur, rerr := e.deadLetterByID(ctx, entryID); rerr == nil {
			re.From = cur.Status
			re.Reason = fmt.Sprintf("the entry is %s, not pending: an entry is resolved once", cur.Status)
		}
		return nil, re
	case err != nil:
		return nil, fmt.Errorf("tasker: resolve dead-letter entry %s: %w", entryID, err)
	}
	e.log.Info("dead-letter entry resolved", "entry", d.ID, "task", d.TaskID, "status", d.Status, "by", r.By)
	out := deadLetterFromStore(d)
	return &out, nil
}

// checkOperatorText checks the operator's name (required) and one free text (optional) of a
// dead-letter call.
func checkOperatorText(by, field, text string) error {
	if by == "" {
		return &DeadLetterRequestError{Field: "By", Reason: "is required: it names the operator in the entry"}
	}
	return errors.Join(checkText("operator", by), checkText(field, text))
}

// DeadLetterRequest puts a task in the dead-letter queue by hand (Engine.DeadLetterTask).
type DeadLetterRequest struct {
	// Reason says why; it is kept in the entry's snapshot detail (and, with MoveToError, in the
	// task's transition). Optional, at most MaxOperatorTextBytes.
	Reason string
	// By names the operator; required, at most MaxOperatorTextBytes.
	By string
	// MoveToError also moves the task to error, cancelling its steps that could still run, in the
	// same transaction as the entry (a task already finished is refused with ErrNotAllowed).
	// Without it the task is left as it is.
	MoveToError bool
}

// DeadLetterTask writes a manual_dlq entry for a task, with a snapshot of it and its steps, and
// returns the entry; with MoveToError, it moves the task to error too. A task that already has a
// pending entry is refused with ErrDeadLetterOpen and left as it is, except with MoveToError,
// which moves it to error and returns the entry it had. Without MoveToError the task may be in any
// state, a finished one included (the entry is then a record to investigate). An unknown task
// returns ErrTaskNotFound; a missing By, a *DeadLetterRequestError.
func (e *Engine) DeadLetterTask(ctx context.Context, taskID uuid.UUID, r DeadLetterRequest) (*DeadLetter, error) {
	if err := checkOperatorText(r.By, "reason", r.Reason); err != nil {
		return nil, fmt.Errorf("tasker: dead-letter task %s: %w", taskID, err)
	}
	detail := map[string]any{"operator": r.By}
	if r.Reason != "" {
		detail["reason"] = r.Reason
	}
	entry := store.NewDeadLetter{ID: uuid.Must(uuid.NewV7()), Reason: store.ReasonManual, Detail: detail}
	var d *store.DeadLetter
	if r.MoveToError {
		meta := map[string]any{"operator": r.By, "reason": r.Reason, "dead_letter": string(store.ReasonManual)}
		res, err := e.store.FailTask(ctx, store.FailTaskParams{TaskID: taskID, Meta: meta, DeadLetter: &entry})
		if err != nil {
			return nil, mapStoreErr(err, taskID)
		}
		e.core.CancelRuns(taskID) // its handlers here stop; the store's announcement tells other engines
		e.core.Waiters().Notify(taskID)
		e.core.WakeParent(ctx, taskID) // a child task's parent sees the failure at once (child.go)
		d = res.DeadLetter
	} else {
		var err error
		if d, err = e.store.AddDeadLetter(ctx, store.AddDeadLetterParams{TaskID: taskID, Entry: entry}); err != nil {
			if errors.Is(err, store.ErrDeadLetterOpen) {
				return nil, fmt.Errorf("tasker: dead-letter task %s: %w", taskID, err)
			}
			return nil, mapStoreErr(err, taskID)
		}
	}
	if d == nil {
		return nil, fmt.Errorf("tasker: dead-letter task %s: the store returned no entry", taskID)
	}
	e.log.Info("task dead-lettered by hand", "task", taskID, "entry", d.ID, "by", r.By, "moved_to_error", r.MoveToError)
	out := deadLetterFromStore(d)
	return &out, nil
}

// DeadLetterStatsFilter filters DeadLetterStats. Zero fields do not filter.
type DeadLetterStatsFilter struct {
	Namespace string
	// Since keeps the entries written at or after it.
	Since time.Time
}

// DeadLetterStats are the counts of one reason's entries.
type DeadLetterStats struct {
	Reason DeadLetterReason
	// Total counts the reason's entries; ByStatus splits them by status (a status without
	// entries is absent).
	Total    int
	ByStatus map[DeadLetterStatus]int
	// MeanTimeToResolution is the mean time from an entry's writing to its resolution, over the
	// resolved entries (0 when none is).
	MeanTimeToResolution time.Duration
}

// DeadLetterStats counts the entries per reason, in reason order; a reason without entries is
// absent.
func (e *Engine) DeadLetterStats(ctx context.Context, f DeadLetterStatsFilter) ([]DeadLetterStats, error) {
	st, err := e.store.DeadLetterStats(ctx, store.DeadLetterStatsParams{Namespace: f.Namespace, Since: f.Since})
	if err != nil {
		return nil, fmt.Errorf("tasker: dead-letter stats: %w", err)
	}
	out := make([]DeadLetterStats, len(st))
	for i, s := range st {
		out[i] = DeadLetterStats{Reason: s.Reason, Total: s.Total, ByStatus: s.ByStatus, MeanTimeToResolution: s.MeanTimeToResolution}
	}
	return out, nil
}

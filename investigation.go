package tasker

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-systems/tasker/store"
)

// Bounds of the investigation queue.
const (
	// InvestigationLimitDefault is how many entries InvestigationQueue returns when asked for 0.
	InvestigationLimitDefault = 50
	// InvestigationScanMax is how many pending entries InvestigationQueue reads at most, oldest
	// first (they have waited longest), in pages of InvestigationPageSize. With more pending, the
	// newest are not ranked and Investigation.Truncated says so: resolve entries, or list them
	// with DeadLetters.
	InvestigationScanMax = 5000
	// InvestigationPageSize is the page InvestigationQueue reads pending entries in.
	InvestigationPageSize = 250
)

// The terms of InvestigationScore.
const (
	// investigationAgeCap caps the age term (one point per hour pending): after two days an entry of
	// any reason outranks a fresh one of a heavier reason (at equal task priority), so no entry
	// waits for ever.
	investigationAgeCap = 48
	// investigationPriorityCap caps the priority term (the task's priority / 5) at ±20 points.
	investigationPriorityCap = 20
)

// investigationReasonWeight is the reason term of InvestigationScore.
var investigationReasonWeight = map[DeadLetterReason]float64{
	ReasonStalenessTimeout:   40,
	ReasonPermanentFailure:   40,
	ReasonMaxRetriesExceeded: 30,
	ReasonWorkerUnavailable:  30,
	ReasonManual:             10,
}

// InvestigationScore is the priority of a pending entry in the investigation queue, higher first:
// the sum of three terms.
//
//   - Reason: staleness_timeout and permanent_failure 40 (the task is stuck, or failed in a way no
//     retry fixes); max_retries_exceeded and worker_unavailable 30; manual_dlq 10 (an operator
//     already knows of it); an unknown reason 0.
//   - Age: one point per hour the entry has been pending, at most 48, so that an old entry of any
//     reason rises above fresh ones of the same task priority and none waits for ever. A negative
//     age (the database's clock ahead of this process's) counts 0.
//   - Task priority: the task's priority divided by 5, within ±20 (priorities of ±100 and beyond).
//
// Ties are broken by InvestigationQueue: the older entry first, then the smaller ID.
func InvestigationScore(reason DeadLetterReason, age time.Duration, taskPriority int) float64 {
	ageTerm := min(max(age.Hours(), 0), investigationAgeCap)
	prioTerm := min(max(float64(taskPriority)/5, -investigationPriorityCap), investigationPriorityCap)
	return investigationReasonWeight[reason] + ageTerm + prioTerm
}

// RankedDeadLetter is an entry of the investigation queue with its score.
type RankedDeadLetter struct {
	DeadLetter
	// Score is the entry's InvestigationScore when the queue was read.
	Score float64
}

// Investigation is the investigation queue: pending entries, the one to look at first first.
type Investigation struct {
	Entries []RankedDeadLetter
	// Pending is how many pending entries were read and ranked; Truncated is true when more are
	// pending than InvestigationScanMax, the newest of which were not ranked.
	Pending   int
	Truncated bool
}

// InvestigationQueue returns up to limit pending entries (0 means InvestigationLimitDefault), by
// InvestigationScore at the time of the call, highest first; equal scores put the older entry
// first, then the smaller ID, so the order is deterministic. It reads at most InvestigationScanMax
// pending entries (see Investigation.Truncated), in pages, keeping only the best limit in memory.
func (e *Engine) InvestigationQueue(ctx context.Context, limit int) (*Investigation, error) {
	if limit < 0 {
		return nil, &DeadLetterRequestError{Field: "limit", Reason: fmt.Sprintf("is %d (0 means %d)", limit, InvestigationLimitDefault)}
	}
	if limit == 0 {
		limit = InvestigationLimitDefault
	}
	limit = min(limit, InvestigationScanMax)
	now := e.now() // Config.Clock: the store's clock with store/memory on the same one
	out := &Investigation{}
	var after uuid.UUID
	for out.Pending < InvestigationScanMax {
		n := min(InvestigationPageSize, InvestigationScanMax-out.Pending)
		page, err := e.store.ListDeadLetters(ctx, store.ListDeadLettersParams{Status: DeadLetterPending, AfterID: after, Limit: n, OldestFirst: true})
		if err != nil {
			return nil, fmt.Errorf("tasker: investigation queue: %w", err)
		}
		for i := range page {
			d := deadLetterFromStore(&page[i])
			out.Entries = append(out.Entries, RankedDeadLetter{DeadLetter: d,
				Score: InvestigationScore(d.Reason, now.Sub(d.CreatedAt), d.TaskPriority)})
		}
		out.Pending += len(page)
		rankDeadLetters(out.Entries)
		out.Entries = out.Entries[:min(len(out.Entries), limit)]
		if len(page) < n {
			return out, nil
		}
		after = page[len(page)-1].ID
	}
	more, err := e.store.ListDeadLetters(ctx, store.ListDeadLettersParams{Status: DeadLetterPending, AfterID: after, Limit: 1, OldestFirst: true})
	if err != nil {
		return nil, fmt.Errorf("tasker: investigation queue: %w", err)
	}
	if out.Truncated = len(more) > 0; out.Truncated {
		e.log.Info("the investigation queue ranks only the oldest pending entries", "ranked", out.Pending)
	}
	return out, nil
}

// rankDeadLetters sorts entries by score, highest first, then the older first, then by ID.
func rankDeadLetters(entries []RankedDeadLetter) {
	slices.SortStableFunc(entries, func(a, b RankedDeadLetter) int {
		if c := cmp.Compare(b.Score, a.Score); c != 0 {
			return c
		}
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return bytes.Compare(a.ID[:], b.ID[:])
	})
}

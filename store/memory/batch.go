package memory

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/tasker-systems/tasker/store"
	"github.com/tasker-systems/tasker/store/internal/params"
)

// This file is the batched seam (store.BatchStore) over the single-step operations: one operation
// under the store's lock, each outcome or claim undone alone when it does not apply.

// RecordOutcomes records the outcomes as one operation under the store's lock; each runs the
// single-step path and is undone alone when its worker no longer holds its step (store.Conflict,
// store.AlreadyRecorded, store.NotFound). A recorded success with Handoff claims the first step it
// released whose handler is callable, for its worker, in the same operation; that step is not
// published. The store does not own a queue, so nothing is acked or held: the caller acks every
// MessageID after the call, and sends the Publish lists.
func (s *Store) RecordOutcomes(ctx context.Context, p store.RecordOutcomesParams) (*store.RecordOutcomesResult, error) {
	if err := params.CheckBatch(p); err != nil {
		return nil, err
	}
	if len(p.Outcomes) == 0 {
		return &store.RecordOutcomesResult{}, nil
	}
	res := &store.RecordOutcomesResult{Records: make([]store.OutcomeRecord, len(p.Outcomes))}
	pub := &params.Publisher{}
	err := s.write(ctx, func(tx *txn) error {
		for i, o := range p.Outcomes {
			mark := len(tx.sends)
			rec, err := tx.recordOne(ctx, o, pub)
			if err != nil {
				return fmt.Errorf("record outcome %d of %d: %w", i+1, len(p.Outcomes), err)
			}
			if rec.Status == store.Recorded && params.HandsOver(o) {
				if rec.Next, err = tx.handOver(o, p, mark); err != nil {
					return fmt.Errorf("record outcome %d of %d: %w", i+1, len(p.Outcomes), err)
				}
			}
			res.Records[i] = rec
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	res.Publish = pub.List
	return res, nil
}

// handOver claims for o's worker the first step that o released (in the sends scheduled since
// mark) whose handler is callable, and takes it out of the sends; nil when there is none.
func (tx *txn) handOver(o store.Outcome, p store.RecordOutcomesParams, mark int) (*store.NextStep, error) {
	for i := mark; i < len(tx.sends); i++ {
		sd := &tx.sends[i]
		j := params.PickHandoff(sd.refs, p.Callables)
		if j < 0 {
			continue
		}
		ref := sd.refs[j]
		sd.refs = append(sd.refs[:j:j], sd.refs[j+1:]...)
		// Released in this operation, so it is enqueued: the claim cannot conflict.
		c, err := tx.claim(store.ClaimStepParams{StepID: ref.StepID, WorkerID: o.WorkerID, Lease: p.Lease}, o.StepID.String())
		if err != nil {
			return nil, fmt.Errorf("hand %s over: %w", ref.StepID, err)
		}
		return &store.NextStep{ClaimedStep: *c}, nil
	}
	return nil, nil
}

// savepoint marks the operation's changes so far, for rollbackTo.
type savepoint struct{ undo, sends int }

func (tx *txn) savepoint() savepoint { return savepoint{len(tx.undo), len(tx.sends)} }

// rollbackTo undoes the changes made since sp, newest first.
func (tx *txn) rollbackTo(sp savepoint) {
	for i := len(tx.undo) - 1; i >= sp.undo; i-- {
		tx.undo[i]()
	}
	tx.undo, tx.sends = tx.undo[:sp.undo], tx.sends[:sp.sends]
}

// recordOne applies one outcome and reports its status; an error other than the outcome's own
// conflict fails the whole operation.
func (tx *txn) recordOne(ctx context.Context, o store.Outcome, pub *params.Publisher) (store.OutcomeRecord, error) {
	rec := store.OutcomeRecord{StepID: o.StepID}
	sp := tx.savepoint()
	p := params.Single(o, pub)
	r, err := tx.recordOutcome(ctx, p, o.Plan)
	if err == nil {
		rec.Status, rec.TaskState, rec.Settled, rec.Released = store.Recorded, r.TaskState, r.Settled, r.Released
		return rec, nil
	}
	tx.rollbackTo(sp)
	rec.Status, err = params.Status(err, func() (bool, error) { return tx.landed(p, o) })
	return rec, err
}

// landed reports whether the step's latest transition is o itself: the same move with the same
// metadata (worker, attempt, error), as a commit whose answer was lost leaves it. A rescue of the
// same attempt writes another error, so it does not count.
func (tx *txn) landed(p store.OutcomeParams, o store.Outcome) (bool, error) {
	st, ok := tx.s.steps[o.StepID]
	if !ok || st.cur == nil {
		return false, nil
	}
	_, _, meta, err := stepWrites(p, o.Plan)
	if err != nil {
		return false, err
	}
	cur := st.cur
	return cur.from == string(o.Plan.Step.From) && cur.to == string(o.Plan.Step.To) && cur.event == string(o.Plan.Step.Event) &&
		bytes.Equal(cur.meta, meta), nil
}

// ClaimMany claims the steps as one operation under the store's lock.
func (s *Store) ClaimMany(ctx context.Context, p store.ClaimManyParams) (*store.ClaimManyResult, error) {
	res := &store.ClaimManyResult{}
	err := s.write(ctx, func(tx *txn) error {
		for _, ref := range p.Steps {
			c, err := tx.claim(store.ClaimStepParams{StepID: ref.StepID, WorkerID: p.WorkerID, Lease: p.Lease, Ancestors: ref.Ancestors}, "")
			switch {
			case errors.Is(err, store.ErrConflict):
				res.Stale = append(res.Stale, ref)
			case err != nil:
				return err
			default:
				res.Claimed = append(res.Claimed, store.ClaimedMessage{ClaimedStep: *c, MessageID: ref.MessageID})
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// HeartbeatMany extends the held leases as one operation under the store's lock. The store owns
// no queue: the caller extends the messages.
func (s *Store) HeartbeatMany(ctx context.Context, p store.HeartbeatManyParams) ([]store.HeartbeatRecord, error) {
	if len(p.Steps) == 0 {
		return nil, nil
	}
	out := make([]store.HeartbeatRecord, len(p.Steps))
	err := s.write(ctx, func(tx *txn) error {
		for i, sa := range p.Steps {
			out[i] = store.HeartbeatRecord{StepID: sa.StepID}
			st, ok := s.steps[sa.StepID]
			if !ok {
				continue
			}
			out[i].State = st.s.State
			out[i].Held = heldAt(st, p.WorkerID, sa.Attempt)
			if out[i].Held {
				set(tx, &st.s.LeaseExpiresAt, ptr(tx.live.Add(millis(p.Lease))))
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ReleaseSteps gives the steps back as one operation under the store's lock; a step no longer
// held fails its check before anything changes.
func (s *Store) ReleaseSteps(ctx context.Context, p store.ReleaseStepsParams) ([]store.ReleaseRecord, error) {
	if len(p.Steps) == 0 {
		return nil, nil
	}
	var out []store.ReleaseRecord
	err := s.write(ctx, func(tx *txn) error {
		var err error
		out, err = params.ReleaseEach(p, tx.releaseStep)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// PromoteRetries promotes the steps as one operation under the store's lock; a refused step is
// refused before anything of it changes.
func (s *Store) PromoteRetries(ctx context.Context, p store.PromoteRetriesParams) ([]store.PromoteRecord, error) {
	if len(p.Steps) == 0 {
		return nil, nil
	}
	out := make([]store.PromoteRecord, len(p.Steps))
	err := s.write(ctx, func(tx *txn) error {
		for i, id := range p.Steps {
			err := tx.promoteRetry(store.PromoteRetryParams{StepID: id})
			if err != nil && !params.PromoteRefused(err) {
				return err
			}
			out[i] = store.PromoteRecord{StepID: id, Err: err}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

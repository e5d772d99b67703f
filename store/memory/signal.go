package memory

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

var _ store.Signaler = (*Store)(nil)

// SignalStep implements store.Signaler as one operation under the store's lock.
func (s *Store) SignalStep(ctx context.Context, p store.SignalStepParams) (*store.SignalStepResult, error) {
	var res *store.SignalStepResult
	err := s.write(ctx, func(tx *txn) error {
		t, ok := s.tasks[p.TaskID]
		if !ok {
			return fmt.Errorf("signal step %q of task %s: %w", p.Step, p.TaskID, store.ErrNotFound)
		}
		st, ok := t.byName[p.Step]
		if !ok {
			return fmt.Errorf("signal step %q of task %s: %w", p.Step, p.TaskID, store.ErrNotFound)
		}
		if st.s.State.Terminal() {
			return fmt.Errorf("signal step %q of task %s: the step is %s: %w", p.Step, p.TaskID, st.s.State, store.ErrConflict)
		}
		sig := json.RawMessage("null")
		if !p.WakeOnly {
			var err error
			if sig, err = jsonb(p.Signal); err != nil {
				return fmt.Errorf("signal step %q of task %s: %w", p.Step, p.TaskID, err)
			}
		}
		res = &store.SignalStepResult{StepID: st.s.ID, State: st.s.State}
		doc := map[string]json.RawMessage{}
		if len(st.s.Checkpoint) > 0 && json.Unmarshal(st.s.Checkpoint, &doc) != nil {
			doc = nil
		}
		if doc == nil {
			doc = map[string]json.RawMessage{} // not an object: replaced, as jsonb_set on '{}' does
		}
		if _, had := doc[store.SignalKey]; !had && !p.WakeOnly {
			doc[store.SignalKey] = sig
			raw, err := json.Marshal(doc)
			if err != nil {
				return err
			}
			cp, err := jsonb(raw)
			if err != nil {
				return err
			}
			set(tx, &st.s.Checkpoint, cp)
			res.Stored = true
		}
		if st.s.State == statemachine.StepWaitingForRetry && parked(st.s.LastError) {
			if st.s.NextRetryAt == nil || st.s.NextRetryAt.After(tx.now) {
				set(tx, &st.s.NextRetryAt, ptr(tx.now))
			}
			res.Woken = true
			tx.enqueue(p.Enqueuer, p.Namespace, []store.StepRef{{TaskID: t.t.ID, StepID: st.s.ID, Retry: true,
				TaskName: t.t.Name, Version: t.t.Version, Name: st.s.TemplateStep, Handler: st.s.Handler}}, 0)
		}
		set(tx, &st.s.UpdatedAt, tx.now)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// parked reports whether an error record is a park's (kind "parked"), not an ordinary retry's.
func parked(lastError json.RawMessage) bool {
	var f struct {
		Kind string `json:"kind"`
	}
	return len(lastError) > 0 && json.Unmarshal(lastError, &f) == nil && f.Kind == "parked"
}

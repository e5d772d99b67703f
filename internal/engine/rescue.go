package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tasker-systems/tasker/store"
)

// rescue settles the attempts of steps whose worker stopped renewing the lease (it crashed, was
// killed, or lost the database): each counts as a failed attempt, recorded with the vanished
// worker's ID, and is retried under the step's policy or fails for good when none is left.
func (w *workers) rescue(ctx context.Context) error {
	e := w.e
	expired, err := e.store.ExpiredSteps(ctx, store.ExpiredStepsParams{Limit: 100})
	if err != nil {
		if ctx.Err() == nil {
			e.log.Error(err, "look for expired leases")
		}
		return fmt.Errorf("look for expired leases: %w", err)
	}
	var failed error
	for i := range expired {
		ex := &expired[i]
		st := &ex.Step
		start := time.Now()
		msg := fmt.Sprintf("worker %s stopped renewing its lease (crashed, killed or cut off)", st.LeaseOwner)
		p := Classify(st, Called{Return: Return{Err: errors.New(msg), Class: ClassRetryable}}, nil, e.cfg.MaxPayloadBytes)
		if p.Kind == store.OutcomePermanent || p.Kind == store.OutcomeRetry {
			var se Failure
			_ = json.Unmarshal(p.Error, &se)
			se.Kind = "lease_expired"
			p.Error, _ = json.Marshal(se)
		}
		p.TaskID, p.StepID, p.WorkerID, p.Attempt, p.Namespace = st.TaskID, st.ID, st.LeaseOwner, st.Attempts, ex.Namespace
		enq := e.NewEnqueuer()
		p.Enqueuer, p.LeaseExpired = enq, true
		res, err := e.store.RecordOutcome(ctx, p)
		if err == nil {
			enq.Flush(ctx)
		}
		outcome := map[store.OutcomeKind]string{store.OutcomeRetry: "retry", store.OutcomePermanent: "error"}[p.Kind]
		kv := []any{"task", st.TaskID, "step", st.Name, "step_id", st.ID}
		if id := TraceID(ex.TraceParent); id != "" {
			kv = append(kv, "trace_id", id)
		}
		if err != nil {
			if !errors.Is(err, store.ErrConflict) && ctx.Err() == nil {
				e.tel.recordRescue(ex, outcome, start, err)
				e.log.Error(err, "rescue step", kv...)
				failed = fmt.Errorf("rescue step %s of task %s: %w", st.Name, st.TaskID, err)
			}
			continue
		}
		e.tel.recordRescue(ex, outcome, start, nil)
		e.log.Info("rescued step whose lease expired", append(kv, "attempt", st.Attempts, "worker", st.LeaseOwner, "outcome", outcome)...)
		if p.Kind == store.OutcomeRetry {
			w.wakeAfter(ex.Namespace, p.RetryDelay)
		}
		if res.Settled {
			e.tel.taskSettled(ex.Namespace, res.TaskState)
			e.waiters.Notify(st.TaskID)
			e.wakeParent(ctx, st.TaskID, nil) // child.go
		}
	}
	return failed
}

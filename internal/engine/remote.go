package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-systems/tasker/internal/jsonsafe"
	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

// Remote workers (package workerapi): a step whose handler lives in another process is claimed,
// renewed and reported through these methods, with the engine's own leases, retries and audit
// trail. A remote claim takes a message from the namespace's queue whose callable the worker
// serves and claims its step under the worker's id; a Go worker of this engine declines such a
// message when it has no handler for the callable (decline.go), so the message waits on the queue
// for a remote claim.

// ErrRemoteNotFound is returned for a step that does not exist.
var ErrRemoteNotFound = errors.New("step not found")

// ErrRemoteStale is returned when the worker no longer holds the step at that attempt (its lease
// expired and the step was rescued, the attempt is not the current one, another worker holds it).
var ErrRemoteStale = errors.New("the worker does not hold the step at this attempt")

// ErrRemoteTooLarge is returned for a result over Config.MaxPayloadBytes.
var ErrRemoteTooLarge = errors.New("result is over the payload limit")

// RemoteClaimParams asks for one step.
type RemoteClaimParams struct {
	WorkerID  string
	Namespace string
	Callables []string
	Lease     time.Duration
	// Wait is how long to poll for a step before returning nil.
	Wait time.Duration
}

// RemoteClaim claims one step of p.Namespace whose callable is in p.Callables, waiting up to
// p.Wait for one; it returns nil, nil when none came.
func (e *Engine) RemoteClaim(ctx context.Context, p RemoteClaimParams) (*store.ClaimedStep, error) {
	deadline := time.Now().Add(p.Wait)
	for {
		c, err := e.remoteClaimOnce(ctx, p)
		if c != nil || err != nil {
			return c, err
		}
		if !time.Now().Before(deadline) {
			return nil, nil
		}
		t := time.NewTimer(min(100*time.Millisecond, time.Until(deadline)))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, nil
		case <-t.C:
		}
	}
}

// remoteClaimOnce reads the queue once; messages of other callables are made visible again.
func (e *Engine) remoteClaimOnce(ctx context.Context, p RemoteClaimParams) (*store.ClaimedStep, error) {
	// Read hides the messages briefly: those of other callables are made visible again at once,
	// and the queue calls after the read are not cut short by the caller's context, so that a
	// worker that hangs up mid-claim leaves no message hidden for long.
	ms, err := e.queue.Read(ctx, p.Namespace, 10, min(p.Lease, 5*time.Second))
	if err != nil {
		return nil, err
	}
	ctx = context.WithoutCancel(ctx)
	var claimed *store.ClaimedStep
	var failed error // a claim that failed: the messages after it are put back at once
	for _, m := range ms {
		var msg stepMessage
		if json.Unmarshal(m.Payload, &msg) != nil || msg.StepID == uuid.Nil {
			continue
		}
		if claimed != nil || failed != nil || msg.Handler == "" || !slices.Contains(p.Callables, msg.Handler) {
			_ = e.queue.RetryLater(ctx, p.Namespace, m.ID, 0)
			continue
		}
		if msg.Retry {
			err := e.store.PromoteRetry(ctx, store.PromoteRetryParams{StepID: msg.StepID})
			if errors.Is(err, store.ErrNotDue) {
				_ = e.queue.RetryLater(ctx, p.Namespace, m.ID, 100*time.Millisecond)
				continue
			}
			if errors.Is(err, store.ErrNotFound) {
				_ = e.queue.Ack(ctx, p.Namespace, m.ID)
				continue
			}
		}
		hold, ok, err := e.limitStep(ctx, p.Namespace, msg.TaskName, msg.TaskID) // limit.go
		if !ok {
			_ = e.queue.RetryLater(ctx, p.Namespace, m.ID, limitBackoff) // over a global limit: no attempt spent
			failed = err
			continue
		}
		c, err := e.store.ClaimStep(hold.Within(ctx), store.ClaimStepParams{StepID: msg.StepID, WorkerID: p.WorkerID, Lease: p.Lease,
			Ancestors: e.templateAncestors(p.Namespace, store.StepRef{TaskName: msg.TaskName, Version: msg.Version, Name: msg.Step})})
		hold.Unlock()
		if err != nil {
			if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
				_ = e.queue.Ack(ctx, p.Namespace, m.ID) // a duplicate, or the step moved on
				continue
			}
			_ = e.queue.RetryLater(ctx, p.Namespace, m.ID, 0)
			failed = err
			continue
		}
		_ = e.queue.Ack(ctx, p.Namespace, m.ID)
		claimed = c
	}
	if claimed == nil && failed != nil {
		return nil, failed
	}
	return claimed, nil
}

// RemoteHeartbeat renews a remote worker's lease on a step at an attempt.
func (e *Engine) RemoteHeartbeat(ctx context.Context, stepID uuid.UUID, workerID string, attempt int, lease time.Duration) error {
	st, _, err := e.remoteStep(ctx, stepID, workerID, attempt)
	if err != nil {
		return err
	}
	_, err = e.store.Heartbeat(ctx, store.HeartbeatParams{StepID: st.ID, WorkerID: workerID, Lease: lease, Attempt: attempt})
	if errors.Is(err, store.ErrConflict) {
		return ErrRemoteStale
	}
	if errors.Is(err, store.ErrNotFound) {
		return ErrRemoteNotFound
	}
	return err
}

// RemoteOutcome is what a remote handler came to: a result, or an error.
type RemoteOutcome struct {
	Result     json.RawMessage
	Failed     bool
	Message    string
	Retryable  bool
	RetryAfter time.Duration
}

// RemoteReport records a remote worker's outcome of a step at an attempt, classified as a Go
// handler's return would be (retry policy, backoff, step type).
func (e *Engine) RemoteReport(ctx context.Context, stepID uuid.UUID, workerID string, attempt int, o RemoteOutcome) error {
	if !o.Failed && len(o.Result) > e.cfg.MaxPayloadBytes {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrRemoteTooLarge, len(o.Result), e.cfg.MaxPayloadBytes)
	}
	st, task, err := e.remoteStep(ctx, stepID, workerID, attempt)
	if err != nil {
		return err
	}
	var out Called
	switch {
	case !o.Failed:
		var v any = o.Result
		if len(o.Result) == 0 {
			v = nil
		}
		out.Result = v
	case !o.Retryable:
		out.Err, out.Class = errors.New(o.Message), ClassPermanent
	case o.RetryAfter > 0:
		out.Err, out.Class, out.RetryAfter = errors.New(o.Message), ClassRetryAfter, o.RetryAfter
	default:
		out.Err, out.Class = errors.New(o.Message), ClassRetryable
	}
	p := Classify(st, out, nil, e.cfg.MaxPayloadBytes)
	if r, err := e.Template(task.Namespace, task.Name, task.Version); err == nil {
		ApplyStepType(ctx, e.store, r, st, &p, e.cfg.MaxDecisionSteps)
	}
	p.TaskID, p.StepID, p.WorkerID, p.Attempt, p.Namespace = task.ID, st.ID, workerID, attempt, task.Namespace
	p.PriorityCredit = e.PriorityCredit(task.Priority)
	enq := e.NewEnqueuer()
	p.Enqueuer = enq
	res, err := e.store.RecordOutcome(ctx, p)
	switch {
	case errors.Is(err, store.ErrConflict):
		return ErrRemoteStale
	case errors.Is(err, store.ErrNotFound):
		return ErrRemoteNotFound
	case err != nil:
		return err
	}
	enq.Flush(ctx)
	if res.Settled {
		e.waiters.Notify(task.ID)
		e.wakeParent(ctx, task.ID, task) // child.go
	}
	return nil
}

// remoteStep finds a step and its task and checks that workerID holds it at attempt.
func (e *Engine) remoteStep(ctx context.Context, stepID uuid.UUID, workerID string, attempt int) (*store.Step, *store.Task, error) {
	taskID, _, err := e.store.StepTask(ctx, stepID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, ErrRemoteNotFound
	}
	if err != nil {
		return nil, nil, err
	}
	task, err := e.store.GetTask(ctx, taskID)
	if err != nil {
		return nil, nil, err
	}
	steps, err := e.store.GetSteps(ctx, taskID)
	if err != nil {
		return nil, nil, err
	}
	for i := range steps {
		st := &steps[i]
		if st.ID != stepID {
			continue
		}
		if st.LeaseOwner != workerID || st.Attempts != attempt || st.State != statemachine.StepInProgress {
			return nil, nil, ErrRemoteStale
		}
		return st, task, nil
	}
	return nil, nil, ErrRemoteNotFound
}

// RemoteConfig is what a Go handler would find as its Step's config and method for a claimed
// step: the template step's handler initialization (and a batch worker's cursor).
func (e *Engine) RemoteConfig(c *store.ClaimedStep) (config map[string]any, method string) {
	st, task := &c.Step, &c.Task
	if tmpl, _ := e.Template(task.Namespace, task.Name, task.Version); tmpl != nil {
		if ts, ok := tmpl.Step(st.TemplateStep); ok {
			config = jsonsafe.CloneMap(ts.Init)
			method = ts.Method
		}
	}
	if st.BatchGroup != nil && len(st.Inputs) > 0 {
		var extra map[string]any
		if json.Unmarshal(st.Inputs, &extra) == nil {
			if config == nil {
				config = map[string]any{}
			}
			for k, v := range extra {
				config[k] = v
			}
		}
	}
	return config, method
}

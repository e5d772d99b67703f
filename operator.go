package tasker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/tasker-systems/tasker/store"
)

// OperatorRequest says who fixes a step and why; both go into the audit trail, so both must be
// text the database can store: a NUL character or bytes that are not UTF-8 make the action return
// a *ValueError (errors.Is ErrInvalidValue) and change nothing.
type OperatorRequest struct {
	Operator string
	Reason   string
}

// RetryStep resets a step in error for a fresh set of attempts and enqueues it. When it was the
// task's last failed step, the blocked task resumes at once. It returns ErrNotAllowed when the step
// is not in error.
func (e *Engine) RetryStep(ctx context.Context, stepID uuid.UUID, r OperatorRequest) error {
	return e.operator(ctx, store.OperatorParams{StepID: stepID, Action: store.OperatorRetry, Operator: r.Operator, Reason: r.Reason})
}

// ResolveStep marks a step in error as resolved_manually: its dependents run as if it had
// completed, without a result. The task resumes once no failed step is left.
func (e *Engine) ResolveStep(ctx context.Context, stepID uuid.UUID, r OperatorRequest) error {
	return e.operator(ctx, store.OperatorParams{StepID: stepID, Action: store.OperatorResolve, Operator: r.Operator, Reason: r.Reason})
}

// CompleteStep completes a step in error with the given result (any JSON-encodable value), which
// its dependents see as if the handler had returned it. The task resumes once no failed step is
// left. A result that is not JSON-encodable or that the database cannot store returns a
// *ValueError (errors.Is ErrInvalidValue); one over Config.MaxPayloadBytes, ErrPayloadTooLarge.
func (e *Engine) CompleteStep(ctx context.Context, stepID uuid.UUID, result any, r OperatorRequest) error {
	raw, err := json.Marshal(result)
	if err != nil {
		return fmt.Errorf("complete step %s: %w", stepID, &ValueError{Field: "result", Reason: "not JSON-encodable: " + err.Error(), Err: err})
	}
	if len(raw) > e.cfg.MaxPayloadBytes {
		return fmt.Errorf("%w: result of %d bytes, limit %d", ErrPayloadTooLarge, len(raw), e.cfg.MaxPayloadBytes)
	}
	if err := checkValue("result", raw); err != nil {
		return fmt.Errorf("complete step %s: %w", stepID, err)
	}
	return e.operator(ctx, store.OperatorParams{StepID: stepID, Action: store.OperatorComplete, Result: raw, Operator: r.Operator, Reason: r.Reason})
}

func (e *Engine) operator(ctx context.Context, p store.OperatorParams) error {
	if err := errors.Join(checkText("operator", p.Operator), checkText("reason", p.Reason)); err != nil {
		return err
	}
	// The step's namespace decides its queue; find it through the step's task.
	ns, err := e.stepNamespace(ctx, p.StepID)
	if err != nil {
		return err
	}
	enq := e.core.NewEnqueuer()
	p.Namespace, p.Enqueuer = ns, enq
	res, err := e.store.OperatorAction(ctx, p)
	if err == nil {
		enq.Flush(ctx)
	}
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: %s", ErrStepNotFound, p.StepID)
		}
		return mapStoreErr(err, p.StepID)
	}
	e.log.Info("operator action", "action", p.Action, "step", p.StepID, "task", res.TaskID, "task_state", res.TaskState, "operator", p.Operator)
	e.core.Waiters().Notify(res.TaskID)
	return nil
}

func (e *Engine) stepNamespace(ctx context.Context, stepID uuid.UUID) (string, error) {
	_, ns, err := e.store.StepTask(ctx, stepID)
	if errors.Is(err, store.ErrNotFound) {
		return "", fmt.Errorf("%w: %s", ErrStepNotFound, stepID)
	}
	return ns, err
}

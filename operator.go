package tasker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/tasker/queue"
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
	return e.operator(ctx, nil, store.OperatorParams{StepID: stepID, Action: store.OperatorRetry, Operator: r.Operator, Reason: r.Reason})
}

// ResolveStep marks a step in error as resolved_manually: its dependents run as if it had
// completed, without a result. The task resumes once no failed step is left.
func (e *Engine) ResolveStep(ctx context.Context, stepID uuid.UUID, r OperatorRequest) error {
	return e.operator(ctx, nil, store.OperatorParams{StepID: stepID, Action: store.OperatorResolve, Operator: r.Operator, Reason: r.Reason})
}

// CompleteStep completes a step in error with the given result (any JSON-encodable value), which
// its dependents see as if the handler had returned it. The task resumes once no failed step is
// left. A result that is not JSON-encodable or that the database cannot store returns a
// *ValueError (errors.Is ErrInvalidValue); one over Config.MaxPayloadBytes, ErrPayloadTooLarge.
func (e *Engine) CompleteStep(ctx context.Context, stepID uuid.UUID, result any, r OperatorRequest) error {
	raw, err := e.operatorResult(stepID, result)
	if err != nil {
		return err
	}
	return e.operator(ctx, nil, store.OperatorParams{StepID: stepID, Action: store.OperatorComplete, Result: raw, Operator: r.Operator, Reason: r.Reason})
}

// operatorResult encodes an operator's result and checks it against the limits and what the
// database can store.
func (e *Engine) operatorResult(stepID uuid.UUID, result any) (json.RawMessage, error) {
	raw, err := json.Marshal(result)
	if err != nil {
		return nil, fmt.Errorf("complete step %s: %w", stepID, &ValueError{Field: "result", Reason: "not JSON-encodable: " + err.Error(), Err: err})
	}
	if len(raw) > e.cfg.MaxPayloadBytes {
		return nil, fmt.Errorf("%w: result of %d bytes, limit %d", ErrPayloadTooLarge, len(raw), e.cfg.MaxPayloadBytes)
	}
	if err := checkValue("result", raw); err != nil {
		return nil, fmt.Errorf("complete step %s: %w", stepID, err)
	}
	return raw, nil
}

// operator applies an operator action, in the caller's transaction when tx is not nil.
func (e *Engine) operator(ctx context.Context, tx pgx.Tx, p store.OperatorParams) error {
	if err := errors.Join(checkText("operator", p.Operator), checkText("reason", p.Reason)); err != nil {
		return err
	}
	var ts store.Transactional
	if tx != nil {
		var ok bool
		if ts, ok = e.store.(store.Transactional); !ok {
			return fmt.Errorf("%s step %s: %w", p.Action, p.StepID, ErrNotTransactional)
		}
	}
	// The step's namespace decides its queue; find it through the step's task.
	ns, err := e.stepNamespace(ctx, p.StepID)
	if err != nil {
		return err
	}
	enq := e.core.NewEnqueuer()
	p.Namespace, p.Enqueuer = ns, enq
	var res *store.OutcomeResult
	if tx != nil {
		// What a queue outside the database must publish waits for the commit, which only the
		// database sees: the store announces it to the elected engine (and the sweeper is the net).
		_, p.AnnounceCommit = e.queue.(queue.Publisher)
		res, err = ts.OperatorActionTx(ctx, tx, p)
	} else if res, err = e.store.OperatorAction(ctx, p); err == nil {
		enq.Flush(ctx)
	}
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: %s", ErrStepNotFound, p.StepID)
		}
		return mapStoreErr(err, p.StepID)
	}
	e.log.Info("operator action", "action", p.Action, "step", p.StepID, "task", res.TaskID, "task_state", res.TaskState,
		"operator", p.Operator, "in_caller_tx", tx != nil)
	e.core.Waiters().Notify(res.TaskID)
	if tx == nil && (res.Settled || res.TaskState.Terminal()) {
		// A child task the action ended or brought to rest wakes its parent (child.go). In the
		// caller's transaction the commit is not seen here: the parent finds it at its next poll.
		e.core.WakeParent(ctx, res.TaskID)
	}
	return nil
}

// RetryStepTx is RetryStep inside the caller's transaction: the step is reset and enqueued only
// if tx commits, and a refusal (ErrNotAllowed, say) rolls back to a savepoint, so tx stays usable.
// A store that cannot join a transaction (store/memory) returns ErrNotTransactional.
func (e *Engine) RetryStepTx(ctx context.Context, tx pgx.Tx, stepID uuid.UUID, r OperatorRequest) error {
	if tx == nil {
		return fmt.Errorf("retry step %s: %w: nil tx", stepID, ErrNotTransactional)
	}
	return e.operator(ctx, tx, store.OperatorParams{StepID: stepID, Action: store.OperatorRetry, Operator: r.Operator, Reason: r.Reason})
}

// ResolveStepTx is ResolveStep inside the caller's transaction, as RetryStepTx is RetryStep.
func (e *Engine) ResolveStepTx(ctx context.Context, tx pgx.Tx, stepID uuid.UUID, r OperatorRequest) error {
	if tx == nil {
		return fmt.Errorf("resolve step %s: %w: nil tx", stepID, ErrNotTransactional)
	}
	return e.operator(ctx, tx, store.OperatorParams{StepID: stepID, Action: store.OperatorResolve, Operator: r.Operator, Reason: r.Reason})
}

// CompleteStepTx is CompleteStep inside the caller's transaction, as RetryStepTx is RetryStep: an
// operator's result can be written together with the caller's own rows.
func (e *Engine) CompleteStepTx(ctx context.Context, tx pgx.Tx, stepID uuid.UUID, result any, r OperatorRequest) error {
	if tx == nil {
		return fmt.Errorf("complete step %s: %w: nil tx", stepID, ErrNotTransactional)
	}
	raw, err := e.operatorResult(stepID, result)
	if err != nil {
		return err
	}
	return e.operator(ctx, tx, store.OperatorParams{StepID: stepID, Action: store.OperatorComplete, Result: raw, Operator: r.Operator, Reason: r.Reason})
}

func (e *Engine) stepNamespace(ctx context.Context, stepID uuid.UUID) (string, error) {
	_, ns, err := e.store.StepTask(ctx, stepID)
	if errors.Is(err, store.ErrNotFound) {
		return "", fmt.Errorf("%w: %s", ErrStepNotFound, stepID)
	}
	return ns, err
}

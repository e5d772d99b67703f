package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
	"github.com/tasker-systems/tasker/store/internal/params"
)

var _ store.Transactional = (*Store)(nil)

// CancelTaskTx is CancelTask inside the caller's transaction (a pgx.Tx), under a savepoint: the
// cancellation is announced to the engines when tx commits, and a refusal leaves tx usable.
func (s *Store) CancelTaskTx(ctx context.Context, tx store.Tx, p store.CancelTaskParams) (*store.OutcomeResult, error) {
	ptx, err := callerTx(tx)
	if err != nil {
		return nil, err
	}
	var res *store.OutcomeResult
	err = pgx.BeginFunc(ctx, ptx, func(sp pgx.Tx) error {
		res, err = s.cancelTask(ctx, sp, p)
		return err
	})
	return res, err
}

// OperatorActionTx is OperatorAction inside the caller's transaction (a pgx.Tx), under a
// savepoint: the step's messages are sent in tx, and with p.AnnounceCommit its task is announced
// when tx commits.
func (s *Store) OperatorActionTx(ctx context.Context, tx store.Tx, p store.OperatorParams) (*store.OutcomeResult, error) {
	ptx, err := callerTx(tx)
	if err != nil {
		return nil, err
	}
	var res *store.OutcomeResult
	err = pgx.BeginFunc(ctx, ptx, func(sp pgx.Tx) error {
		res, err = s.operatorAction(ctx, sp, p)
		return err
	})
	return res, err
}

// RecordOutcomeTx is RecordOutcome inside the caller's transaction (a pgx.Tx), under a
// savepoint; when the outcome released steps, their task is announced on commit (EventTaskCreated)
// for a queue outside the database.
func (s *Store) RecordOutcomeTx(ctx context.Context, tx store.Tx, p store.OutcomeParams) (*store.OutcomeResult, error) {
	ptx, err := callerTx(tx)
	if err != nil {
		return nil, err
	}
	plan, err := statemachine.PlanOutcome(params.Attempt(p))
	if err != nil {
		return nil, err
	}
	var res *store.OutcomeResult
	err = pgx.BeginFunc(ctx, ptx, func(sp pgx.Tx) error {
		if res, err = s.recordOutcome(ctx, sp, p, plan, false); err != nil { // the caller's settings
			return err
		}
		if res.Released > 0 {
			return s.notify(ctx, sp, eventCreated, p.TaskID)
		}
		return nil
	})
	return res, unstorable(err)
}

func callerTx(tx store.Tx) (pgx.Tx, error) {
	ptx, ok := tx.(pgx.Tx)
	if !ok || ptx == nil {
		return nil, fmt.Errorf("%w: store/postgres joins a pgx.Tx, not %T", store.ErrNotTransactional, tx)
	}
	return ptx, nil
}

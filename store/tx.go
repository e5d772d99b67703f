package store

import (
	"context"
	"errors"
)

// Tx is a caller's transaction, passed through tasker's …Tx calls to a store that can join it
// (a pgx.Tx for store/postgres).
type Tx any

// ErrNotTransactional is returned by a …Tx call on a store that cannot join a caller's
// transaction (store/memory), or given a transaction of a kind it does not know.
var ErrNotTransactional = errors.New("store: this store cannot join the caller's transaction")

// Transactional is implemented by stores that can run a change inside a caller's transaction:
// the change commits, and is seen, only when that transaction commits. A failure rolls back to a
// savepoint, so the caller's transaction stays usable. What the change announces (a
// cancellation, the steps it enqueued) is announced on commit.
type Transactional interface {
	CancelTaskTx(ctx context.Context, tx Tx, p CancelTaskParams) (*OutcomeResult, error)
	OperatorActionTx(ctx context.Context, tx Tx, p OperatorParams) (*OutcomeResult, error)
	// RecordOutcomeTx records an attempt's outcome inside tx (a handler's Step.CompleteTx), as
	// RecordOutcome does in a transaction of its own; the steps it releases are announced
	// (EventTaskCreated) on commit, so that a queue outside the database gets their messages.
	RecordOutcomeTx(ctx context.Context, tx Tx, p OutcomeParams) (*OutcomeResult, error)
}

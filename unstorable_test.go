package tasker_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/store"
	"github.com/tasker-systems/tasker/store/postgres"
)

// refusingStore is the PostgreSQL store whose success outcomes the database "refuses for good", as PostgreSQL does a value or a name that passed the engine's own checks but not its
// (store.ErrUnstorable). Embedding the concrete store keeps every capability the engine looks for.
type refusingStore struct {
	*postgres.Store
	refused atomic.Int32
}

func (s *refusingStore) RecordOutcome(ctx context.Context, p store.OutcomeParams) (*store.OutcomeResult, error) {
	if p.Kind == store.OutcomeSuccess {
		s.refused.Add(1)
		return nil, fmt.Errorf("%w: index row size 3240 exceeds btree version 4 maximum 2704", store.ErrUnstorable)
	}
	return s.Store.RecordOutcome(ctx, p)
}

// RecordOutcomes refuses a batch holding a success, as the database refuses a whole transaction.
func (s *refusingStore) RecordOutcomes(ctx context.Context, p store.RecordOutcomesParams) (*store.RecordOutcomesResult, error) {
	for _, o := range p.Outcomes {
		if o.Plan.KeepsResult {
			s.refused.Add(1)
			return nil, fmt.Errorf("%w: index row size 3240 exceeds btree version 4 maximum 2704", store.ErrUnstorable)
		}
	}
	return s.Store.RecordOutcomes(ctx, p)
}

// TestUnstorableOutcomeFailsTheStepAtOnce: an outcome the database refuses for good fails its step
// at once, with the database's reason, instead of being tried again until its lease runs out and
// the handler runs again.
func TestUnstorableOutcomeFailsTheStepAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rs := &refusingStore{Store: b.store}
	b = b.sibling(t, func(c *tasker.Config) { c.Store = rs })
	b.register(t, `
name: refused
namespace_name: refused
version: 1.0.0
steps:
  - name: only
    handler: {callable: only}
    retry: {retryable: true, max_attempts: 3}
`)
	var runs atomic.Int32
	b.engine.HandleFunc("only", func(context.Context, *tasker.Step) (any, error) {
		runs.Add(1)
		return map[string]string{"big": strings.Repeat("x", 10)}, nil
	})
	b.start(t)
	task := b.wait(t, b.create(t, "refused", "refused", nil).ID)
	require.Equal(t, tasker.TaskBlockedByFailures, task.State)
	st, _ := task.Step("only")
	require.Equal(t, 1, st.Attempts)
	require.EqualValues(t, 1, runs.Load(), "the handler ran once")
	require.Equal(t, "invalid_result", st.LastError.Kind)
	require.Contains(t, st.LastError.Message, "index row size")
	require.EqualValues(t, 1, rs.refused.Load(), "the refused outcome was not tried again")
}

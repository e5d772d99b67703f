package tasker

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/engine"
	"github.com/tasker-systems/tasker/internal/pgname"
)

// TestConstantsMatchTheEngine pins the root's documented limits to the values the engine and
// internal/pgname apply; the root spells them out so that its godoc shows numbers, not internal
// names.
func TestConstantsMatchTheEngine(t *testing.T) {
	t.Parallel()
	require.Equal(t, float64(engine.BackoffJitter), float64(BackoffJitter))
	require.Equal(t, engine.MaxErrorMessageBytes, MaxErrorMessageBytes)
	require.Equal(t, engine.MaxErrorStackBytes, MaxErrorStackBytes)
	require.Equal(t, pgname.MaxNameBytes, MaxNameBytes)
}

// TestAdaptSortsErrors checks that the adapter hands the handler the attempt as a *Step and sorts
// its error into the engine's classes, wrapped or not.
func TestAdaptSortsErrors(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	tests := []struct {
		name  string
		err   error
		class engine.Class
		cause error
		delay time.Duration
	}{
		{name: "ok", class: engine.ClassOK},
		{name: "retryable", err: boom, class: engine.ClassRetryable, cause: boom},
		{name: "permanent", err: Permanent(boom), class: engine.ClassPermanent, cause: boom},
		{name: "wrapped permanent", err: fmt.Errorf("step: %w", Permanent(boom)), class: engine.ClassPermanent, cause: boom},
		{name: "retry after", err: RetryAfter(time.Minute, boom), class: engine.ClassRetryAfter, delay: time.Minute},
		{name: "permanent wins over retry after", err: Permanent(RetryAfter(time.Minute, boom)), class: engine.ClassPermanent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := &engine.Attempt{TaskID: uuid.New(), StepID: uuid.New(), Name: "s", Number: 2, MaxAttempts: 3}
			var seen *Step
			h := adapt(HandlerFunc(func(_ context.Context, s *Step) (any, error) {
				seen = s
				return "done", tt.err
			}))
			r := h.Handle(context.Background(), a)
			require.Equal(t, a.StepID, seen.ID)
			require.Equal(t, a.TaskID, seen.TaskID)
			require.Equal(t, 2, seen.Attempt)
			require.Equal(t, tt.class, r.Class)
			require.Equal(t, tt.delay, r.RetryAfter)
			switch {
			case tt.err == nil:
				require.NoError(t, r.Err)
				require.Equal(t, "done", r.Result)
			case tt.cause != nil:
				require.Equal(t, tt.cause, r.Err)
			default:
				require.Error(t, r.Err)
			}
		})
	}
}

package tasker_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
)

// A 30-day approval step: its timeout and backoff are past what a 32-bit count of milliseconds
// holds (24.8 days).
const longStepsYAML = `
name: approval
namespace_name: durations
version: 1.0.0
steps:
  - name: approve
    handler: {callable: approve}
    timeout_seconds: 2592000
    retry: {max_attempts: 5, backoff_base_ms: 2592000000, max_backoff_ms: 2592000000}
  - name: remind
    handler: {callable: remind}
    timeout_seconds: 2592000
    retry: {max_attempts: 5, backoff: linear, backoff_base_ms: 2592000000, max_backoff_ms: 2592000000}
`

func TestThirtyDayStepRuns(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		b := setup(t)
		b.register(t, longStepsYAML)
		var mu sync.Mutex
		var deadline time.Duration
		b.engine.HandleFunc("approve", func(ctx context.Context, s *tasker.Step) (any, error) {
			dl, ok := ctx.Deadline()
			if !ok {
				return nil, tasker.Permanent(errors.New("no deadline"))
			}
			mu.Lock()
			deadline = time.Until(dl)
			mu.Unlock()
			return map[string]any{"approved": true}, nil
		})
		b.engine.HandleFunc("remind", func(ctx context.Context, s *tasker.Step) (any, error) {
			return nil, errors.New("not yet")
		})
		b.start(t)

		task := b.create(t, "durations", "approval", map[string]any{})
		require.Eventually(t, func() bool {
			got, err := b.engine.GetTask(context.Background(), task.ID)
			require.NoError(t, err)
			a, _ := got.Step("approve")
			r, _ := got.Step("remind")
			return a != nil && a.State == tasker.StepComplete && r != nil && r.State == tasker.StepWaitingForRetry
		}, 30*time.Second, 20*time.Millisecond)
		mu.Lock()
		require.Greater(t, deadline, 29*24*time.Hour, "the handler runs under the 30-day timeout, read back from the store")
		mu.Unlock()
		got, err := b.engine.GetTask(context.Background(), task.ID)
		require.NoError(t, err)
		r, _ := got.Step("remind")
		require.NotNil(t, r.NextRetryAt)
		require.Greater(t, time.Until(*r.NextRetryAt), 20*24*time.Hour, "the retry waits the 30-day backoff (less jitter)")
	})
}

func TestRegisterRefusesAttemptsPastTheLimit(t *testing.T) {
	t.Parallel()
	b := setupOn(t, backendMemory)
	tmpl := &tasker.Template{Namespace: "durations", Name: "many", Steps: []tasker.StepTemplate{
		{Name: "s", Handler: tasker.HandlerSpec{Callable: "h"}, Retry: tasker.RetryPolicy{MaxAttempts: 1<<32 + 1}},
	}}
	err := b.engine.Register(tmpl)
	require.ErrorIs(t, err, tasker.ErrInvalidTemplate)
	var verr *tasker.ValidationError
	require.ErrorAs(t, err, &verr)
	require.True(t, verr.Has(tasker.CodeInvalidRetry))
	require.Equal(t, "steps[0].retry.max_attempts", verr.Problems[0].Field)
	require.Equal(t, "s", verr.Problems[0].Step)
}

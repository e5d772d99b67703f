package taskertest

import (
	"context"

	"github.com/tasker-systems/tasker"
)

// Return returns a stub handler that succeeds with v every time.
func Return(v any) func(ctx context.Context, s *tasker.Step) (any, error) {
	return func(context.Context, *tasker.Step) (any, error) { return v, nil }
}

// Fail returns a stub handler that fails every attempt with err: the step is retried under its
// policy, or fails for good at once when err is a tasker.Permanent error.
func Fail(err error) func(ctx context.Context, s *tasker.Step) (any, error) {
	return func(context.Context, *tasker.Step) (any, error) { return nil, err }
}

// FailTimes returns a stub handler whose first n attempts of each step fail with err and whose
// later attempts succeed with v, as a flaky dependency would.
func FailTimes(n int, err error, v any) func(ctx context.Context, s *tasker.Step) (any, error) {
	return func(_ context.Context, s *tasker.Step) (any, error) {
		if s.Attempt <= n {
			return nil, err
		}
		return v, nil
	}
}

// Block returns a stub handler that runs until its context ends — the task is cancelled, the
// step's timeout passes, or the engine stops — and returns the context's error, for tests of
// cancellation and timeouts. started, when not nil, receives the step as the handler starts.
func Block(started chan<- *tasker.Step) func(ctx context.Context, s *tasker.Step) (any, error) {
	return func(ctx context.Context, s *tasker.Step) (any, error) {
		if started != nil {
			select {
			case started <- s:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		<-ctx.Done()
		return nil, ctx.Err()
	}
}

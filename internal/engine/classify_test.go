package engine

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/store"
)

// TestBackoffDelayHoldsTheCap draws many delays for every attempt of exponential and linear
// policies whose waits reach their cap: each is positive and never past the cap (the jitter once
// took a 30s cap up to 36s), the waits below the cap keep their ±BackoffJitter spread, and the
// waits at the cap are still spread out rather than all equal to it.
func TestBackoffDelayHoldsTheCap(t *testing.T) {
	t.Parallel()
	const samples = 2000
	policies := []struct {
		kind      string
		base, cap time.Duration
	}{
		{"exponential", time.Second, 30 * time.Second},
		{"exponential", 100 * time.Millisecond, 5 * time.Second},
		{backoffLinear, time.Second, 10 * time.Second},
		{"exponential", time.Millisecond, time.Millisecond}, // base = cap
	}
	for _, p := range policies {
		for attempt := 1; attempt <= 70; attempt++ { // far past the cap, and past 2^63 ns
			nominal := float64(p.base) * float64(attempt)
			if p.kind == "exponential" {
				nominal = float64(p.base) * float64(uint64(1)<<min(attempt-1, 62))
			}
			seen := map[time.Duration]bool{}
			lo, hi := time.Duration(1<<62), time.Duration(0)
			for range samples {
				d := backoffDelay(p.kind, p.base, p.cap, attempt)
				if d <= 0 || d > p.cap {
					t.Fatalf("%s base %s cap %s attempt %d: delay %s is not in (0, cap]", p.kind, p.base, p.cap, attempt, d)
				}
				seen[d] = true
				lo, hi = min(lo, d), max(hi, d)
			}
			require.Greater(t, len(seen), samples/2, "%s attempt %d: the delays are jittered (%d distinct of %d)", p.kind, attempt, len(seen), samples)
			if nominal*(1+BackoffJitter) < float64(p.cap) {
				require.GreaterOrEqual(t, float64(lo), nominal*(1-BackoffJitter)-1, "%s attempt %d", p.kind, attempt)
				require.LessOrEqual(t, float64(hi), nominal*(1+BackoffJitter)+1, "%s attempt %d", p.kind, attempt)
			} else {
				capped := min(nominal, float64(p.cap))
				require.GreaterOrEqual(t, float64(lo), capped*(1-BackoffJitter)-1, "%s attempt %d: near the cap, within the jitter below it", p.kind, attempt)
				require.Greater(t, float64(hi), capped*(1-BackoffJitter/2), "%s attempt %d: the spread reaches up towards the cap", p.kind, attempt)
			}
		}
	}
}

// TestBackoffDelayNone checks that the none policy does not wait, and that an uncapped policy
// saturates instead of overflowing.
func TestBackoffDelayNone(t *testing.T) {
	t.Parallel()
	require.Zero(t, backoffDelay(backoffNone, time.Second, 30*time.Second, 3))
	for range 100 {
		d := backoffDelay("exponential", time.Second, 0, 200)
		require.Positive(t, d)
	}
}

// TestClassify sorts each kind of handler call into the outcome recorded for it.
func TestClassify(t *testing.T) {
	t.Parallel()
	step := func(attempt int) *store.Step {
		return &store.Step{Attempts: attempt, MaxAttempts: 3, Retryable: true, Backoff: "exponential",
			BackoffBase: time.Second, MaxBackoff: 30 * time.Second, Timeout: 5 * time.Second}
	}
	failure := func(t *testing.T, p store.OutcomeParams) Failure {
		t.Helper()
		var f Failure
		require.NoError(t, json.Unmarshal(p.Error, &f))
		return f
	}
	boom := errors.New("boom")
	tests := []struct {
		name    string
		attempt int
		out     Called
		cause   error
		kind    store.OutcomeKind
		failure string // the Failure's kind; "" for a success
		message string
	}{
		{name: "ok", attempt: 1, out: Called{Return: Return{Result: map[string]int{"n": 1}}}, kind: store.OutcomeSuccess},
		{name: "panic", attempt: 1, out: Called{Return: Return{Err: errors.New("panic: x")}, Panicked: true, Stack: "stack"},
			kind: store.OutcomePermanent, failure: "panic", message: "panic: x"},
		{name: "no handler", attempt: 1, out: Called{Return: Return{Err: &NoHandlerError{Name: "h"}}},
			kind: store.OutcomePermanent, failure: "no_handler"},
		{name: "unencodable result", attempt: 1, out: Called{Return: Return{Result: make(chan int)}},
			kind: store.OutcomePermanent, failure: "invalid_result"},
		{name: "result over the limit", attempt: 1, out: Called{Return: Return{Result: string(make([]byte, 100))}},
			kind: store.OutcomePermanent, failure: "invalid_result"},
		{name: "permanent", attempt: 1, out: Called{Return: Return{Err: boom, Class: ClassPermanent}},
			kind: store.OutcomePermanent, failure: "permanent", message: "boom"},
		{name: "permanent without a cause", attempt: 1, out: Called{Return: Return{Class: ClassPermanent}},
			kind: store.OutcomePermanent, failure: "permanent"},
		{name: "retryable", attempt: 1, out: Called{Return: Return{Err: boom, Class: ClassRetryable}},
			kind: store.OutcomeRetry, failure: "retryable", message: "boom"},
		{name: "retry after", attempt: 1, out: Called{Return: Return{Err: boom, Class: ClassRetryAfter, RetryAfter: time.Minute}},
			kind: store.OutcomeRetry, failure: "retryable", message: "boom"},
		{name: "timeout", attempt: 1, out: Called{Return: Return{Err: context.DeadlineExceeded}, Abandoned: true}, cause: ErrStepTimeout,
			kind: store.OutcomeRetry, failure: "timeout"},
		{name: "exhausted", attempt: 3, out: Called{Return: Return{Err: boom, Class: ClassRetryable}},
			kind: store.OutcomePermanent, failure: "exhausted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := Classify(step(tt.attempt), tt.out, tt.cause, 64)
			require.Equal(t, tt.kind, p.Kind)
			if tt.failure == "" {
				require.JSONEq(t, `{"n":1}`, string(p.Result))
				return
			}
			f := failure(t, p)
			require.Equal(t, tt.failure, f.Kind)
			require.Equal(t, tt.attempt, f.Attempt)
			if tt.message != "" {
				require.Equal(t, tt.message, f.Message)
			}
			switch tt.name {
			case "retry after":
				require.Equal(t, time.Minute, p.RetryDelay)
			case "retryable", "timeout":
				require.Positive(t, p.RetryDelay)
			}
		})
	}
}

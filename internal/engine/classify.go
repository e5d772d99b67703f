package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/tasker-systems/tasker/internal/jsonsafe"
	"github.com/tasker-systems/tasker/store"
)

// BackoffJitter is the randomization factor applied to every backoff: a wait d becomes a random
// value in [d*(1-BackoffJitter), d*(1+BackoffJitter)], so that steps failing together do not
// retry together. The jitter never takes a wait past the step's cap (MaxBackoff): a wait at the
// cap is drawn from [cap*(1-BackoffJitter), cap]. The root exports it as tasker.BackoffJitter.
const BackoffJitter = 0.2

// Backoff kinds, as tasker.BackoffKind spells them; any other is exponential.
const (
	backoffNone   = "none"
	backoffLinear = "linear"
)

// backoffDelay is the wait before the attempt after `attempt` (1-based) under a step's policy:
// the policy's wait, capped at maxWait (when positive), then jittered within the cap.
func backoffDelay(kind string, base, maxWait time.Duration, attempt int) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	var d float64
	switch kind {
	case backoffNone:
		return 0
	case backoffLinear:
		d = float64(base) * float64(attempt)
	default:
		// In floating point, so that a late attempt saturates instead of overflowing.
		d = float64(base) * math.Pow(2, float64(attempt-1))
	}
	limit := float64(math.MaxInt64)
	if maxWait > 0 {
		limit = float64(maxWait)
	}
	return jitterWithin(min(d, limit), limit)
}

// jitterWithin spreads d over [d*(1-BackoffJitter), d*(1+BackoffJitter)], clipped to limit.
func jitterWithin(d, limit float64) time.Duration {
	if d <= 0 {
		return 0
	}
	lo, hi := d*(1-BackoffJitter), min(d*(1+BackoffJitter), limit)
	v := lo + rand.Float64()*(hi-lo)
	if v >= limit {
		// float64(math.MaxInt64) rounds up past the largest Duration.
		v = math.Nextafter(limit, 0)
	}
	return max(time.Duration(v), 1)
}

// ErrStepTimeout is the cause of a handler context that reached the step's timeout.
var ErrStepTimeout = errors.New("step timed out")

// Bounds of an attempt's error record (Failure); the root exports them as
// tasker.MaxErrorMessageBytes and tasker.MaxErrorStackBytes.
const (
	// MaxErrorMessageBytes bounds Failure.Message.
	MaxErrorMessageBytes = 16 << 10
	// MaxErrorStackBytes bounds Failure.Stack.
	MaxErrorStackBytes = 64 << 10
)

// Failure is the error record of a failed attempt, as stored with the step and in its
// transition's metadata; tasker.StepFailure decodes it.
type Failure struct {
	Message string `json:"message"`
	Kind    string `json:"kind"`
	Attempt int    `json:"attempt"`
	Stack   string `json:"stack,omitempty"`
	// Until is, for a parked step (kind "parked"), the time it waits for.
	Until *time.Time `json:"until,omitempty"`
	// Parks counts the step's attempts that parked it so far (park.go), which its retry policy
	// does not count.
	Parks int `json:"parks,omitempty"`
}

// ErrorText is err's text made storable: sanitized and cut to MaxErrorMessageBytes, less some
// room for what classify adds around it ("timed out after ...", "no retry left").
func ErrorText(err error) string {
	if err == nil {
		return ""
	}
	return storableText(err.Error(), MaxErrorMessageBytes-256)
}

// storableText cuts s to max bytes and replaces what the database cannot store (NUL, bytes that
// are not UTF-8). It cuts first, so that a huge text is not copied whole.
func storableText(s string, max int) string {
	s = jsonsafe.Sanitize(jsonsafe.Truncate(s, max))
	if len(s) > max { // each replaced byte grew to the three of U+FFFD
		s = jsonsafe.Truncate(s, max)
	}
	return s
}

// FailureJSON encodes an attempt's error record with its texts made storable.
func FailureJSON(se Failure) json.RawMessage {
	se.Message = storableText(se.Message, MaxErrorMessageBytes)
	se.Stack = storableText(se.Stack, MaxErrorStackBytes)
	raw, _ := json.Marshal(se)
	return raw
}

// Classify turns a handler call into the outcome to record; cause is the cause of the handler's
// context, and a result may hold maxPayload bytes. A result the database cannot store fails the
// step for good at once (kind invalid_result), and error texts are made storable (FailureJSON), so
// that no outcome is refused inside the transaction that records it.
func Classify(st *store.Step, out Called, cause error, maxPayload int) store.OutcomeParams {
	fail := func(kind store.OutcomeKind, se Failure) store.OutcomeParams {
		se.Attempt, se.Parks = st.Attempts, parksOf(st)
		return store.OutcomeParams{Kind: kind, Error: FailureJSON(se)}
	}
	var nh *NoHandlerError
	switch {
	case out.Panicked:
		return fail(store.OutcomePermanent, Failure{Message: ErrorText(out.Err), Kind: "panic", Stack: out.Stack})
	case errors.As(out.Err, &nh):
		return fail(store.OutcomePermanent, Failure{Message: nh.Error(), Kind: "no_handler"})
	case out.Class == ClassOK && out.Err == nil && !out.Abandoned:
		raw, err := json.Marshal(out.Result)
		if err != nil {
			return fail(store.OutcomePermanent, Failure{Message: "result is not JSON-encodable: " + ErrorText(err), Kind: "invalid_result"})
		}
		if len(raw) > maxPayload {
			return fail(store.OutcomePermanent, Failure{Message: fmt.Sprintf("result of %d bytes is over the %d-byte limit", len(raw), maxPayload), Kind: "invalid_result"})
		}
		if err := checkResult(raw); err != nil {
			return fail(store.OutcomePermanent, Failure{Message: err.Error(), Kind: "invalid_result"})
		}
		return store.OutcomeParams{Kind: store.OutcomeSuccess, Result: raw}
	}
	if out.Class == ClassPermanent {
		return fail(store.OutcomePermanent, Failure{Message: ErrorText(out.Err), Kind: "permanent"})
	}
	if out.Class == ClassPark {
		return park(st, out)
	}
	se := Failure{Message: ErrorText(out.Err), Kind: "retryable"}
	if errors.Is(cause, ErrStepTimeout) {
		se = Failure{Message: fmt.Sprintf("timed out after %s: %s", st.Timeout, ErrorText(out.Err)), Kind: "timeout"}
	}
	if !st.Retryable || st.Attempts-parksOf(st) >= st.MaxAttempts {
		se.Message = fmt.Sprintf("%s (attempt %d of %d, no retry left)", se.Message, st.Attempts, st.MaxAttempts)
		if se.Kind == "retryable" {
			se.Kind = "exhausted"
		}
		return fail(store.OutcomePermanent, se)
	}
	p := fail(store.OutcomeRetry, se)
	if out.Class == ClassRetryAfter {
		p.RetryDelay = out.RetryAfter
	} else {
		p.RetryDelay = backoffDelay(st.Backoff, st.BackoffBase, st.MaxBackoff, st.Attempts)
	}
	return p
}

// checkResult returns the error tasker.ValueError describes when the database cannot store raw as
// a step's result.
func checkResult(raw []byte) error {
	var je *jsonsafe.Error
	if err := jsonsafe.Check(raw); errors.As(err, &je) {
		if je.Path != "" {
			return fmt.Errorf("tasker: result cannot be stored: at %s (byte %d): %s", je.Path, je.Offset, je.Reason)
		}
		return fmt.Errorf("tasker: result cannot be stored: %s", je.Reason)
	}
	return nil
}

// ApplyStepType adds what a step's type asks of its outcome: the steps a decision or a batchable
// step creates, and a batch worker's failure strategy. t is the task's template, nil when it is
// not registered here (the outcome is then left as it is).
func ApplyStepType(ctx context.Context, names StepNamer, t *Template, st *store.Step, p *store.OutcomeParams, maxDecisionSteps int) {
	if t == nil {
		return
	}
	if p.Kind == store.OutcomeSuccess {
		plan, err := SpawnPlan(ctx, names, t, st, p.Result, maxDecisionSteps)
		var inv *InvalidOutcomeError
		switch {
		case errors.As(err, &inv):
			raw := FailureJSON(Failure{Message: inv.Msg, Kind: "invalid_outcome", Attempt: st.Attempts})
			*p = store.OutcomeParams{Kind: store.OutcomePermanent, Error: raw}
		case err != nil:
			raw := FailureJSON(Failure{Message: "plan the steps to create: " + err.Error(), Kind: "retryable", Attempt: st.Attempts})
			*p = store.OutcomeParams{Kind: store.OutcomeRetry, Error: raw, RetryDelay: time.Second}
		default:
			p.Spawn = plan
		}
		return
	}
	if p.Kind != store.OutcomePermanent || st.BatchGroup == nil {
		return
	}
	switch st.FailureStrategy {
	case batchContinueOnFailure, "":
		// The worker completes with its failure as its result, so the convergence step still runs
		// and sees it; the error stays in the audit trail.
		var se Failure
		_ = json.Unmarshal(p.Error, &se)
		raw, _ := json.Marshal(map[string]any{"failed": true, "error": se})
		p.Kind, p.Result = store.OutcomeSuccess, raw
	case batchIsolate:
		p.Isolated = true
	}
}

// Batch failure strategies, as tasker.BatchFailureStrategy spells them.
const (
	batchContinueOnFailure = "continue_on_failure"
	batchIsolate           = "isolate"
)

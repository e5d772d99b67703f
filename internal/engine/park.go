package engine

import (
	"encoding/json"
	"time"

	"github.com/tasker-systems/tasker/store"
)

// A parked step waits in waiting_for_retry, as a retry waits for its backoff, for a time or for
// an outside event to make it due sooner (a signal): the database holds the wait, so it survives
// restarts, and its retry timer wakes it. Parking is recorded as a retry whose error record has
// kind "parked" and the time it waits for (Failure.Until); the step's retry policy does not count
// it (neither retryable nor max_attempts stops a park, and the parks so far, Failure.Parks, are
// taken off the attempts a later failure is measured by), although each wake-up is an attempt in
// the step's counter and trail.

// park is the outcome of a ClassPark return: a retry after out.RetryAfter.
func park(st *store.Step, out Called) store.OutcomeParams {
	until := out.Until.UTC()
	if out.Until.IsZero() {
		until = time.Now().Add(out.RetryAfter).UTC()
	}
	se := Failure{Message: ErrorText(out.Err), Kind: "parked", Attempt: st.Attempts, Until: &until, Parks: parksOf(st) + 1}
	return store.OutcomeParams{Kind: store.OutcomeRetry, Error: FailureJSON(se), RetryDelay: max(out.RetryAfter, 0)}
}

// parksOf is how many of the step's attempts parked it, as its latest error record says.
func parksOf(st *store.Step) int {
	var f Failure
	if len(st.LastError) == 0 || json.Unmarshal(st.LastError, &f) != nil {
		return 0
	}
	return f.Parks
}

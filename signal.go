package tasker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-systems/tasker/internal/engine"
	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

// Durable sleep and signals are steps whose handler the engine provides: a template names
// SleepCallable or WaitForSignalCallable as a step's handler.callable, and Register binds it
// unless the engine has a handler of that name already. Such a step parks: it waits in
// waiting_for_retry, as a retry waits for its backoff, until its time comes or a signal makes it
// due at once (its error record has kind "parked" and says until when; the step's retry policy
// does not count parks, though each wake-up is an attempt in its trail). The database holds the
// wait, so it survives restarts; a signal is kept in the step's checkpoint, so a signal that
// arrives before the step waits, or while its handler runs, is found when it runs next.
//
//	steps:
//	  - name: approval
//	    handler:
//	      callable: tasker.wait_for_signal
//	      initialization: {timeout_seconds: 3600, on_timeout: default, default_result: {approved: false}}
//	  - name: cool_down
//	    handler: {callable: tasker.sleep, initialization: {seconds: 30}}
//	    dependencies: [approval]
const (
	// SleepCallable is the engine's durable sleep: the step completes, with {"slept_until": time},
	// once initialization.seconds (a number) have passed since it first ran.
	SleepCallable = "tasker.sleep"
	// WaitForSignalCallable is the engine's wait for Engine.Signal: the step completes with the
	// signal's payload as its result. After initialization.timeout_seconds (default
	// WaitForSignalTimeoutDefault) without one, on_timeout "fail" (the default) fails it for good,
	// and "default" completes it with initialization.default_result (default {"timed_out": true}),
	// for a decision downstream to take another branch.
	WaitForSignalCallable = "tasker.wait_for_signal"
)

// WaitForSignalTimeoutDefault is how long a WaitForSignalCallable step waits when its
// initialization sets no timeout_seconds.
const WaitForSignalTimeoutDefault = 24 * time.Hour

// ErrSignalTimeout is the cause of a WaitForSignalCallable step's failure when no signal came
// before its timeout (on_timeout: fail).
var ErrSignalTimeout = errors.New("tasker: no signal before the timeout")

// parkError asks the engine to park the step for a while (engine.ClassPark).
type parkError struct {
	until time.Time
	why   string
}

func (e *parkError) Error() string {
	return fmt.Sprintf("%s until %s", e.why, e.until.UTC().Format(time.RFC3339Nano))
}

// parkedUntil is the time the step's latest attempt parked it for, if it parked.
func (s *Step) parkedUntil() (time.Time, bool) {
	var f engine.Failure
	if len(s.lastError) == 0 || json.Unmarshal(s.lastError, &f) != nil || f.Kind != "parked" || f.Until == nil {
		return time.Time{}, false
	}
	return *f.Until, true
}

// signal is the signal stored in the step's checkpoint, if any.
func (s *Step) signal() (json.RawMessage, bool) {
	var doc map[string]json.RawMessage
	if len(s.checkpoint) == 0 || json.Unmarshal(s.checkpoint, &doc) != nil {
		return nil, false
	}
	raw, ok := doc[store.SignalKey]
	return raw, ok
}

// configSeconds reads a number of seconds from the step's initialization.
func (s *Step) configSeconds(key string, def time.Duration) (time.Duration, error) {
	v, ok := s.config[key]
	if !ok || v == nil {
		return def, nil
	}
	var f float64
	switch n := v.(type) {
	case float64:
		f = n
	case int:
		f = float64(n)
	case int64:
		f = float64(n)
	case uint64:
		f = float64(n)
	case json.Number:
		var err error
		if f, err = n.Float64(); err != nil {
			return 0, Permanent(fmt.Errorf("initialization.%s: %w", key, err))
		}
	default:
		return 0, Permanent(fmt.Errorf("initialization.%s is %T, want a number of seconds", key, v))
	}
	if f < 0 || f > MaxRunAtAhead.Seconds() {
		return 0, Permanent(fmt.Errorf("initialization.%s = %v is out of range", key, f))
	}
	return time.Duration(f * float64(time.Second)), nil
}

// waitUntil parks the step until the end of a wait of d that started when it first parked,
// or reports that the wait is over.
func (s *Step) waitUntil(d time.Duration, why string) (until time.Time, over bool, err error) {
	now := s.now()
	if u, ok := s.parkedUntil(); ok {
		if !now.Before(u) {
			return u, true, nil
		}
		return u, false, &parkError{until: u, why: why}
	}
	u := now.Add(d)
	if d <= 0 {
		return u, true, nil
	}
	return u, false, &parkError{until: u, why: why}
}

// sleepHandler is SleepCallable's handler.
func sleepHandler(_ context.Context, s *Step) (any, error) {
	d, err := s.configSeconds("seconds", 0)
	if err != nil {
		return nil, err
	}
	until, over, err := s.waitUntil(d, "sleeping")
	if !over {
		return nil, err
	}
	return map[string]any{"slept_until": until.UTC()}, nil
}

// waitForSignalHandler is WaitForSignalCallable's handler.
func waitForSignalHandler(_ context.Context, s *Step) (any, error) {
	if sig, ok := s.signal(); ok {
		return sig, nil
	}
	d, err := s.configSeconds("timeout_seconds", WaitForSignalTimeoutDefault)
	if err != nil {
		return nil, err
	}
	_, over, err := s.waitUntil(d, "waiting for a signal")
	if !over {
		return nil, err
	}
	switch s.config["on_timeout"] {
	case nil, "", "fail":
		return nil, Permanent(fmt.Errorf("step %q: %w (%s)", s.Name, ErrSignalTimeout, d))
	case "default":
		if def, ok := s.config["default_result"]; ok {
			return def, nil
		}
		return map[string]any{"timed_out": true}, nil
	default:
		return nil, Permanent(fmt.Errorf("step %q: initialization.on_timeout is %v, want fail or default", s.Name, s.config["on_timeout"]))
	}
}

// handleBuiltins binds the engine's own handlers that t's steps name, unless a handler has the
// name already.
func (e *Engine) handleBuiltins(t *Template) {
	for _, st := range t.Steps {
		var h HandlerFunc
		switch st.Handler.Callable {
		case SleepCallable:
			h = sleepHandler
		case WaitForSignalCallable:
			h = waitForSignalHandler
		default:
			continue
		}
		if !e.core.HasHandler(st.Handler.Callable) {
			e.Handle(st.Handler.Callable, h)
		}
	}
}

// Signal delivers payload (any JSON-encodable value) to the named step of a task, for a step
// whose handler is WaitForSignalCallable: the step completes with it as its result. A step parked
// waiting is made due at once and its wake-up sent (with NOTIFY on PostgreSQL, so a worker runs it
// within milliseconds); a step not waiting yet keeps the signal and finds it when it runs, and a
// step whose handler is running is woken as soon as it has parked. The first signal wins: another
// one for the same step is kept out and returns nil. Signal waits for a running handler to park
// for at most Config.Lease. It returns ErrTaskNotFound or ErrStepNotFound
// for what does not exist, ErrNotAllowed for a step that has finished, and a *ValueError for a
// payload that cannot be stored.
func (e *Engine) Signal(ctx context.Context, taskID uuid.UUID, step string, payload any) error {
	sg, ok := e.store.(store.Signaler)
	if !ok {
		return fmt.Errorf("signal step %q of task %s: the store (%T) cannot deliver signals", step, taskID, e.store)
	}
	raw, err := e.operatorResult(taskID, payload)
	if err != nil {
		return err
	}
	task, err := e.store.GetTask(ctx, taskID)
	if err != nil {
		return mapStoreErr(err, taskID)
	}
	delay := time.Millisecond
	// The engine's own wait parks at once; a handler of another kind may run long: wait for it a
	// lease at most (the signal is stored either way).
	giveUp := time.Now().Add(e.cfg.Lease)
	for {
		enq := e.core.NewEnqueuer()
		res, err := sg.SignalStep(ctx, store.SignalStepParams{TaskID: taskID, Step: step, Signal: raw, Namespace: task.Namespace, Enqueuer: enq})
		switch {
		case errors.Is(err, store.ErrNotFound):
			return fmt.Errorf("%w: %q in task %s", ErrStepNotFound, step, taskID)
		case errors.Is(err, store.ErrConflict):
			return fmt.Errorf("%w: %v", ErrNotAllowed, err)
		case err != nil:
			return err
		}
		enq.Flush(ctx)
		// A handler running now read the step before the signal: wake the step once it parks.
		if res.State != statemachine.StepInProgress || time.Now().After(giveUp) {
			return nil
		}
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil // the signal is stored; the step finds it at its next run at the latest
		case <-timer.C:
		}
		delay = min(delay*2, 100*time.Millisecond)
	}
}

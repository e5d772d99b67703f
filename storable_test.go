package tasker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
)

// The tests of this file give the engine values that PostgreSQL's jsonb cannot store — \u0000,
// bytes that are not UTF-8, a lone surrogate, a number outside numeric's range — and huge error
// texts, on every backend: each outcome is recorded at once, as a clear failure or with its text
// made storable, instead of being refused inside its transaction until its lease runs out.

const storableYAML = `
name: storable
namespace_name: values
version: 1.0.0
steps:
  - name: first
    handler: {callable: %s}
    retry: {retryable: true, max_attempts: 3, backoff: none}
  - {name: after, handler: {callable: ok}, dependencies: [first]}
`

// waitSoon waits for a task to settle within limit: an outcome the store refuses would keep it
// unsettled for at least a lease per attempt.
func waitSoon(t *testing.T, b *bundle, id uuid.UUID, limit time.Duration) *tasker.Task {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	task, err := b.engine.WaitTask(ctx, id)
	if err != nil {
		got, gerr := b.engine.GetTask(context.Background(), id)
		require.NoError(t, gerr)
		var steps []string
		for _, s := range got.Steps {
			steps = append(steps, sprintf("%s=%s(attempts %d, error %+v)", s.Name, s.State, s.Attempts, s.LastError))
		}
		t.Fatalf("task %s did not settle within %s: %s %v", id, limit, got.State, steps)
	}
	return task
}

// storableSetup is an engine whose step "first" runs the handler h, with retries allowed.
func storableSetup(t *testing.T, setup setupFunc, h tasker.HandlerFunc, opts ...setupOpt) *bundle {
	t.Helper()
	b := setup(t, opts...)
	b.register(t, sprintf(storableYAML, "first"))
	b.engine.HandleFunc("first", h)
	b.engine.HandleFunc("ok", func(context.Context, *tasker.Step) (any, error) { return "ok", nil })
	b.start(t)
	return b
}

// unstorableResults are results that encode to JSON which jsonb refuses, as JSON bytes and as Go
// values, with the location and a piece of the reason the failure must name.
var unstorableResults = []struct {
	name   string
	result any
	want   []string
}{
	{"raw \\u0000", json.RawMessage(`{"a": ["x", "\u0000"]}`), []string{"/a/1", `\u0000`}},
	{"raw invalid UTF-8", json.RawMessage("{\"a\": \"\xff\"}"), []string{"/a", "not UTF-8"}},
	{"raw CESU-8 surrogate", json.RawMessage("{\"a\": \"\xed\xa0\x80\"}"), []string{"/a", "not UTF-8"}},
	{"raw lone high surrogate", json.RawMessage(`{"s": "\ud800"}`), []string{"/s", "surrogate"}},
	{"raw lone low surrogate", json.RawMessage(`["\udc00"]`), []string{"/0", "surrogate"}},
	{"raw huge number", json.RawMessage(`{"n": 1e1000000}`), []string{"/n", "numeric"}},
	{"raw tiny number", json.RawMessage(`{"n": 1e-16384}`), []string{"/n", "numeric"}},
	{"Go string with NUL", map[string]any{"note": "a\x00b"}, []string{"/note", `\u0000`}},
	{"Go key with NUL", map[string]any{"k\x00": 1}, []string{"object key", `\u0000`}},
	{"Go json.Number out of range", map[string]any{"n": json.Number("1e1000000")}, []string{"/n", "numeric"}},
}

// TestUnstorableResultFailsAtOnce: a result the database cannot store fails its step for good at
// once, as invalid_result naming the problem, after one attempt although retries are allowed; no
// result is stored, and the dependent never runs. Before, each attempt's outcome was refused until
// its lease expired, and the step ended as lease_expired with the cause lost.
func TestUnstorableResultFailsAtOnce(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		var runs = make(map[int]int)
		runsCh := make(chan int, 100)
		b := storableSetup(t, setup, func(_ context.Context, s *tasker.Step) (any, error) {
			var in struct{ Case int }
			if err := s.Input(&in); err != nil {
				return nil, tasker.Permanent(err)
			}
			runsCh <- in.Case
			return unstorableResults[in.Case].result, nil
		})
		ids := make([]uuid.UUID, len(unstorableResults))
		for i := range unstorableResults {
			ids[i] = b.create(t, "values", "storable", map[string]any{"case": i}).ID
		}
		for i, tc := range unstorableResults {
			got := waitSoon(t, b, ids[i], 15*time.Second)
			require.Equal(t, tasker.TaskBlockedByFailures, got.State, tc.name)
			first, _ := got.Step("first")
			require.Equal(t, tasker.StepError, first.State, tc.name)
			require.Equal(t, 1, first.Attempts, "%s: no retry of a result that cannot be stored", tc.name)
			require.Nil(t, first.Result, tc.name)
			require.NotNil(t, first.LastError, tc.name)
			require.Equal(t, "invalid_result", first.LastError.Kind, "%s: %s", tc.name, first.LastError.Message)
			for _, w := range tc.want {
				require.Contains(t, first.LastError.Message, w, tc.name)
			}
			after, _ := got.Step("after")
			require.Equal(t, tasker.StepPending, after.State, tc.name)
			requireLegalTransitions(t, b.engine, ids[i])
		}
		close(runsCh)
		for c := range runsCh {
			runs[c]++
		}
		for i, tc := range unstorableResults {
			require.Equal(t, 1, runs[i], "%s: the handler ran once", tc.name)
		}

		// An operator's result that cannot be stored is refused with a typed error, and the step
		// stays in error; a good one completes the task.
		step, _ := waitSoon(t, b, ids[0], time.Second).Step("first")
		op := tasker.OperatorRequest{Operator: "test", Reason: "fix"}
		for _, bad := range []any{json.RawMessage(`{"a": "\u0000"}`), json.RawMessage(`["\ud800"]`),
			map[string]any{"n": json.Number("1e1000000")}, json.RawMessage("\"\xff\"")} {
			err := b.engine.CompleteStep(context.Background(), step.ID, bad, op)
			require.ErrorIs(t, err, tasker.ErrInvalidValue, "%s", bad)
			var ve *tasker.ValueError
			require.ErrorAs(t, err, &ve)
			require.Equal(t, "result", ve.Field)
			require.NotEmpty(t, ve.Reason)
		}
		err := b.engine.CompleteStep(context.Background(), step.ID, map[string]any{"ch": make(chan int)}, op)
		require.ErrorIs(t, err, tasker.ErrInvalidValue, "a result that is not JSON-encodable")
		got, err := b.engine.GetTask(context.Background(), ids[0])
		require.NoError(t, err)
		first, _ := got.Step("first")
		require.Equal(t, tasker.StepError, first.State, "a refused operator result changes nothing")
		require.NoError(t, b.engine.CompleteStep(context.Background(), step.ID, map[string]any{"fixed": true}, op))
		require.Equal(t, tasker.TaskComplete, waitSoon(t, b, ids[0], 15*time.Second).State)
	})
}

// TestGoStringResultIsCoercedToUTF8: a Go string holding bytes that are not UTF-8 is encoded by
// encoding/json with U+FFFD in their place, so the result is stored as encoding/json encodes it.
func TestGoStringResultIsCoercedToUTF8(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		b := storableSetup(t, setup, func(context.Context, *tasker.Step) (any, error) {
			return map[string]any{"s": "a\xffb"}, nil
		})
		task := b.create(t, "values", "storable", nil)
		got := waitSoon(t, b, task.ID, 15*time.Second)
		require.Equal(t, tasker.TaskComplete, got.State)
		var res map[string]string
		require.NoError(t, got.Result("first", &res))
		require.Equal(t, "a\uFFFDb", res["s"])
	})
}

// TestUnstorableErrorTextIsSanitized: a handler error or a panic whose text holds NUL or bytes
// that are not UTF-8 is recorded with those replaced by U+FFFD — and retried as its policy says —
// instead of being refused by the database until the lease runs out.
func TestUnstorableErrorTextIsSanitized(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		for _, tc := range []struct {
			name      string
			handler   tasker.HandlerFunc
			kind      string
			attempts  int
			message   string
			withStack bool
		}{
			{name: "error", handler: func(context.Context, *tasker.Step) (any, error) {
				return nil, errors.New("bad\x00thing \xff\xfe end")
			}, kind: "exhausted", attempts: 3, message: "bad\uFFFDthing \uFFFD end"},
			{name: "permanent error", handler: func(context.Context, *tasker.Step) (any, error) {
				return nil, tasker.Permanent(errors.New("no\x00"))
			}, kind: "permanent", attempts: 1, message: "no\uFFFD"},
			{name: "panic", handler: func(context.Context, *tasker.Step) (any, error) {
				panic("boom\x00\xc3")
			}, kind: "panic", attempts: 1, message: "panic: boom\uFFFD\uFFFD", withStack: true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				b := storableSetup(t, setup, tc.handler)
				task := b.create(t, "values", "storable", nil)
				got := waitSoon(t, b, task.ID, 20*time.Second)
				require.Equal(t, tasker.TaskBlockedByFailures, got.State)
				first, _ := got.Step("first")
				require.Equal(t, tc.attempts, first.Attempts)
				require.NotNil(t, first.LastError)
				require.Equal(t, tc.kind, first.LastError.Kind, first.LastError.Message)
				require.Contains(t, first.LastError.Message, tc.message)
				if tc.withStack {
					require.Contains(t, first.LastError.Stack, "goroutine")
				}
				trs := requireLegalTransitions(t, b.engine, task.ID)
				failures := 0
				for _, tr := range trs {
					if f := tr.Failure(); f != nil && tr.StepName == "first" {
						failures++
						require.Contains(t, f.Message, tc.message, "the transition keeps the sanitized text")
					}
				}
				require.Equal(t, tc.attempts, failures, "every attempt's failure is in the audit trail")
			})
		}
	})
}

// TestHugeErrorMessageIsTruncated: a 20 MB error message is stored cut to MaxErrorMessageBytes,
// with a note of its length, in the step and in its transition, and no log line carries it whole.
func TestHugeErrorMessageIsTruncated(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		const size = 20 << 20
		huge := strings.Repeat("é", size/2) // 20 MB of two-byte characters
		logs := newLogCapture()
		b := storableSetup(t, setup, func(context.Context, *tasker.Step) (any, error) {
			return nil, tasker.Permanent(errors.New(huge))
		}, func(c *tasker.Config) { c.Logger = logs.logger() })
		task := b.create(t, "values", "storable", nil)
		got := waitSoon(t, b, task.ID, 20*time.Second)
		require.Equal(t, tasker.TaskBlockedByFailures, got.State)
		first, _ := got.Step("first")
		require.Equal(t, 1, first.Attempts)
		msg := first.LastError.Message
		require.LessOrEqual(t, len(msg), tasker.MaxErrorMessageBytes)
		require.Greater(t, len(msg), tasker.MaxErrorMessageBytes/2, "the message keeps its start")
		require.True(t, strings.HasPrefix(msg, "éééé"))
		require.Contains(t, msg, sprintf("truncated: %d bytes in all", size))
		for _, tr := range requireLegalTransitions(t, b.engine, task.ID) {
			if f := tr.Failure(); f != nil {
				require.Equal(t, msg, f.Message, "the transition holds the same cut message")
				require.Less(t, len(tr.Metadata), 2*tasker.MaxErrorMessageBytes)
			}
		}
		logs.mu.Lock()
		defer logs.mu.Unlock()
		for _, l := range logs.lines {
			require.Less(t, len(l), 64<<10, "a log line of %d bytes", len(l))
		}
	})
}

// TestUnstorableCheckpointIsRefused: a checkpoint the database cannot store returns a typed error
// to the handler at once and saves nothing; a good checkpoint afterwards is saved.
func TestUnstorableCheckpointIsRefused(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		errs := make(chan error, 10)
		b := storableSetup(t, setup, func(ctx context.Context, s *tasker.Step) (any, error) {
			if s.Attempt > 1 {
				var cp map[string]any
				ok, err := s.LoadCheckpoint(&cp)
				if err != nil || !ok {
					return nil, tasker.Permanent(errors.New("the good checkpoint was not saved"))
				}
				return cp, nil
			}
			for _, v := range []any{map[string]any{"a": "x\x00"}, json.RawMessage(`{"b": "\udc00"}`),
				json.RawMessage(`{"c": 1e-20000}`), json.RawMessage("{\"d\": \"\xff\"}"), make(chan int)} {
				errs <- s.Checkpoint(ctx, v)
			}
			if err := s.Checkpoint(ctx, strings.Repeat("c", 2<<20)); !errors.Is(err, tasker.ErrPayloadTooLarge) {
				return nil, tasker.Permanent(fmt.Errorf("a checkpoint over MaxPayloadBytes: %v", err))
			}
			if err := s.Checkpoint(ctx, map[string]any{"good": 1}); err != nil {
				return nil, tasker.Permanent(err)
			}
			return nil, errors.New("try again from the checkpoint")
		})
		task := b.create(t, "values", "storable", nil)
		got := waitSoon(t, b, task.ID, 20*time.Second)
		close(errs)
		paths := []string{"/a", "/b", "/c", "/d", ""}
		i := 0
		for err := range errs {
			require.ErrorIs(t, err, tasker.ErrInvalidValue, "checkpoint %d", i)
			var ve *tasker.ValueError
			require.ErrorAs(t, err, &ve)
			require.Equal(t, "checkpoint", ve.Field)
			require.Equal(t, paths[i], ve.Path, "checkpoint %d: %v", i, err)
			i++
		}
		require.Equal(t, len(paths), i)
		require.Equal(t, tasker.TaskComplete, got.State)
		var res map[string]int
		require.NoError(t, got.Result("first", &res))
		require.Equal(t, map[string]int{"good": 1}, res)
	})
}

// TestUnstorableOperatorTextIsRefused: an operator's name or reason that the database cannot store
// (it goes into the audit trail's jsonb) is refused with a typed error and changes nothing.
// Before, PostgreSQL refused it with a raw error, and the memory store panicked.
func TestUnstorableOperatorTextIsRefused(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		b := storableSetup(t, setup, func(context.Context, *tasker.Step) (any, error) {
			return nil, tasker.Permanent(errors.New("declined"))
		})
		task := b.create(t, "values", "storable", nil)
		got := waitSoon(t, b, task.ID, 15*time.Second)
		require.Equal(t, tasker.TaskBlockedByFailures, got.State)
		first, _ := got.Step("first")
		ctx := context.Background()
		for _, err := range []error{
			b.engine.RetryStep(ctx, first.ID, tasker.OperatorRequest{Operator: "ops", Reason: "try\x00again"}),
			b.engine.ResolveStep(ctx, first.ID, tasker.OperatorRequest{Operator: "o\xffps", Reason: "done"}),
			b.engine.CompleteStep(ctx, first.ID, 1, tasker.OperatorRequest{Operator: "ops", Reason: "\xc3"}),
			b.engine.CancelTask(ctx, task.ID, "give up\x00"),
			b.engine.RetryStep(ctx, first.ID, tasker.OperatorRequest{Operator: "ops", Reason: strings.Repeat("r", tasker.MaxOperatorTextBytes+1)}),
			b.engine.CancelTask(ctx, task.ID, strings.Repeat("r", 20<<20)),
		} {
			require.ErrorIs(t, err, tasker.ErrInvalidValue)
			var ve *tasker.ValueError
			require.ErrorAs(t, err, &ve)
			require.Contains(t, []string{"operator", "reason"}, ve.Field)
		}
		got, err := b.engine.GetTask(ctx, task.ID)
		require.NoError(t, err)
		require.Equal(t, tasker.TaskBlockedByFailures, got.State, "nothing changed")
		require.NoError(t, b.engine.CancelTask(ctx, task.ID, "give up"))
		require.Equal(t, tasker.TaskCancelled, waitSoon(t, b, task.ID, 15*time.Second).State)
	})
}

package tasker_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/store"
)

const approvalYAML = `
name: approval
namespace_name: dyn
version: 1.0.0
steps:
  - {name: validate, handler: {callable: pass}}
  - {name: route, type: decision, handler: {callable: route}, dependencies: [validate]}
  - {name: auto_approve, handler: {callable: approve}, dependencies: [route]}
  - {name: manager_approval, handler: {callable: approve}, dependencies: [route]}
  - {name: finance_review, handler: {callable: approve}, dependencies: [route]}
  - name: finalize
    type: deferred_convergence
    handler: {callable: finalize}
    dependencies: [auto_approve, manager_approval, finance_review]
  - {name: notify, handler: {callable: pass}, dependencies: [finalize]}
`

func approvalBundle(t *testing.T, setup setupFunc, route func(amount float64) any) *bundle {
	b := setup(t)
	b.register(t, approvalYAML)
	b.engine.HandleFunc("pass", func(context.Context, *tasker.Step) (any, error) { return "ok", nil })
	b.engine.HandleFunc("approve", func(_ context.Context, s *tasker.Step) (any, error) { return s.Name, nil })
	b.engine.HandleFunc("route", func(_ context.Context, s *tasker.Step) (any, error) {
		var in struct{ Amount float64 }
		if err := s.Input(&in); err != nil {
			return nil, tasker.Permanent(err)
		}
		return route(in.Amount), nil
	})
	b.engine.HandleFunc("finalize", func(_ context.Context, s *tasker.Step) (any, error) {
		return s.DependencyNames(), nil
	})
	b.start(t)
	return b
}

func stepNames(task *tasker.Task) []string {
	var out []string
	for _, s := range task.Steps {
		out = append(out, s.Name)
	}
	return out
}

func TestDecisionCreatesOnlyTheChosenBranches(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		b := approvalBundle(t, setup, func(amount float64) any {
			if amount < 1000 {
				return tasker.CreateSteps("auto_approve")
			}
			// Tasker Core's JSON shape works as well as the typed value.
			return json.RawMessage(`{"decision_point_outcome": {"type": "create_steps", "step_names": ["manager_approval", "finance_review"]}}`)
		})
		small := b.wait(t, b.create(t, "dyn", "approval", map[string]any{"amount": 10}).ID)
		require.Equal(t, tasker.TaskComplete, small.State)
		require.ElementsMatch(t, []string{"validate", "route", "auto_approve", "finalize", "notify"}, stepNames(small))
		var saw []string
		require.NoError(t, small.Result("finalize", &saw))
		require.Contains(t, saw, "auto_approve")
		require.NotContains(t, saw, "manager_approval")

		large := b.wait(t, b.create(t, "dyn", "approval", map[string]any{"amount": 5000}).ID)
		require.Equal(t, tasker.TaskComplete, large.State)
		require.ElementsMatch(t, []string{"validate", "route", "manager_approval", "finance_review", "finalize", "notify"}, stepNames(large))
		require.NoError(t, large.Result("finalize", &saw))
		require.Subset(t, saw, []string{"manager_approval", "finance_review"})
		requireLegalTransitions(t, b.engine, small.ID)
		requireLegalTransitions(t, b.engine, large.ID)
	})
}

func TestDecisionWithNoBranchesCompletes(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		b := approvalBundle(t, setup, func(float64) any { return tasker.NoBranches() })
		task := b.wait(t, b.create(t, "dyn", "approval", map[string]any{"amount": 1}).ID)
		require.Equal(t, tasker.TaskComplete, task.State)
		require.ElementsMatch(t, []string{"validate", "route"}, stepNames(task), "steps never chosen are never created")
	})
}

func TestInvalidDecisionOutcomes(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		for name, outcome := range map[string]any{
			"not a descendant": tasker.CreateSteps("validate"),
			"unknown step":     tasker.CreateSteps("nope"),
			"convergence step": tasker.CreateSteps("finalize"),
			"not an outcome":   map[string]any{"approved": true},
		} {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				b := approvalBundle(t, setup, func(float64) any { return outcome })
				task := b.wait(t, b.create(t, "dyn", "approval", map[string]any{"amount": 1}).ID)
				require.Equal(t, tasker.TaskBlockedByFailures, task.State)
				route, _ := task.Step("route")
				require.Equal(t, "invalid_outcome", route.LastError.Kind)
				require.Contains(t, route.LastError.Message, `"route"`)
				require.ElementsMatch(t, []string{"validate", "route"}, stepNames(task), "nothing was created")
			})
		}
	})
}

// TestDecisionReplayedAfterACrashCreatesStepsOnce: the decision's first attempt dies between its
// handler and its commit (its worker vanishes holding the step, nothing of its outcome written);
// the rescued retry creates the branches, once.
func TestDecisionReplayedAfterACrashCreatesStepsOnce(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		b := setup(t, func(c *tasker.Config) { c.Lease = time.Second; c.RescueInterval = 100 * time.Millisecond })
		b.register(t, approvalYAML)
		var decisions atomic.Int32
		b.engine.HandleFunc("pass", func(context.Context, *tasker.Step) (any, error) { return "ok", nil })
		b.engine.HandleFunc("approve", func(_ context.Context, s *tasker.Step) (any, error) { return s.Name, nil })
		b.engine.HandleFunc("finalize", func(context.Context, *tasker.Step) (any, error) { return "done", nil })
		b.engine.HandleFunc("route", func(context.Context, *tasker.Step) (any, error) {
			decisions.Add(1)
			return tasker.CreateSteps("manager_approval", "finance_review"), nil
		})
		ctx := context.Background()
		task := b.create(t, "dyn", "approval", map[string]any{"amount": 5000})
		got, err := b.engine.GetTask(ctx, task.ID)
		require.NoError(t, err)
		validate, _ := got.Step("validate")
		// A first process completes validate, then claims route and dies after running its handler.
		claimed, err := b.st.ClaimStep(ctx, store.ClaimStepParams{StepID: validate.ID, WorkerID: "first", Lease: time.Minute})
		require.NoError(t, err)
		_, err = b.st.RecordOutcome(ctx, store.OutcomeParams{TaskID: task.ID, StepID: validate.ID, WorkerID: "first",
			Attempt: claimed.Step.Attempts, Kind: store.OutcomeSuccess, Result: json.RawMessage(`"ok"`), Namespace: "dyn"})
		require.NoError(t, err)
		got, err = b.engine.GetTask(ctx, task.ID)
		require.NoError(t, err)
		route, _ := got.Step("route")
		require.Equal(t, tasker.StepEnqueued, route.State)
		_, err = b.st.ClaimStep(ctx, store.ClaimStepParams{StepID: route.ID, WorkerID: "dies-before-commit", Lease: 50 * time.Millisecond})
		require.NoError(t, err)

		b.start(t)
		got = b.wait(t, task.ID)
		require.Equal(t, tasker.TaskComplete, got.State)
		require.Equal(t, int32(1), decisions.Load(), "the rescued attempt ran the decision")
		route, _ = got.Step("route")
		require.Equal(t, 2, route.Attempts)
		counts := map[string]int{}
		for _, s := range got.Steps {
			counts[s.Name]++
		}
		require.Equal(t, map[string]int{"validate": 1, "route": 1, "manager_approval": 1, "finance_review": 1, "finalize": 1, "notify": 1}, counts)
		requireLegalTransitions(t, b.engine, task.ID)
	})
}

const batchYAML = `
name: batch
namespace_name: dyn
version: 1.0.0
steps:
  - {name: analyze, type: batchable, handler: {callable: analyze}}
  - name: work
    type: batch_worker
    dependencies: [analyze]
    handler: {callable: work}
    retry: {max_attempts: 3, backoff: none}
    batch_config: {batch_size: 200, parallelism: 2, cursor_field: row, worker_template: work, failure_strategy: %s}
  - {name: total, type: deferred_convergence, dependencies: [work], handler: {callable: total}}
`

type batchBundle struct {
	*bundle
	mu      sync.Mutex
	cur     int
	peak    int
	workRun func(s *tasker.Step, in tasker.BatchInputs) (any, error)
}

func newBatchBundle(t *testing.T, setup setupFunc, strategy string, items int64, work func(s *tasker.Step, in tasker.BatchInputs) (any, error)) *batchBundle {
	bb := &batchBundle{bundle: setup(t), workRun: work}
	bb.register(t, fmtBatch(strategy))
	bb.engine.HandleFunc("analyze", func(context.Context, *tasker.Step) (any, error) {
		if items == 0 {
			return tasker.NoBatches(), nil
		}
		return tasker.CreateBatches("work", tasker.Cursors(0, items, 200)...), nil
	})
	bb.engine.HandleFunc("work", func(_ context.Context, s *tasker.Step) (any, error) {
		in, ok := s.Batch()
		if !ok {
			return nil, tasker.Permanent(errors.New("no cursor"))
		}
		bb.mu.Lock()
		bb.cur++
		bb.peak = max(bb.peak, bb.cur)
		bb.mu.Unlock()
		defer func() { bb.mu.Lock(); bb.cur--; bb.mu.Unlock() }()
		time.Sleep(20 * time.Millisecond)
		if _, ok := s.Config()["cursor"]; !ok {
			return nil, tasker.Permanent(errors.New("the cursor is missing from the worker's initialization"))
		}
		return bb.workRun(s, in)
	})
	bb.engine.HandleFunc("total", func(_ context.Context, s *tasker.Step) (any, error) {
		var sum int64
		failed, workers := 0, 0
		for name, raw := range s.DependencyResults() {
			if !strings.HasPrefix(name, "work_") {
				continue // the batchable step's outcome is an ancestor's result too
			}
			workers++
			var r struct {
				Count  int64 `json:"count"`
				Failed bool  `json:"failed"`
			}
			if err := json.Unmarshal(raw, &r); err != nil {
				return nil, err
			}
			sum += r.Count
			if r.Failed {
				failed++
			}
		}
		return map[string]any{"count": sum, "failed": failed, "workers": workers}, nil
	})
	bb.start(t)
	return bb
}

func fmtBatch(strategy string) string {
	return sprintf(batchYAML, strategy)
}

type batchTotal struct {
	Count   int64 `json:"count"`
	Failed  int   `json:"failed"`
	Workers int   `json:"workers"`
}

func countItems(_ *tasker.Step, in tasker.BatchInputs) (any, error) {
	return map[string]any{"count": in.Cursor.End - in.Cursor.Start}, nil
}

func TestBatchWorkersFanOutAndConverge(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		bb := newBatchBundle(t, setup, "fail_fast", 1000, countItems)
		task := bb.wait(t, bb.create(t, "dyn", "batch", nil).ID)
		require.Equal(t, tasker.TaskComplete, task.State)
		require.ElementsMatch(t, []string{"analyze", "work_001", "work_002", "work_003", "work_004", "work_005", "total"}, stepNames(task))
		var total batchTotal
		require.NoError(t, task.Result("total", &total))
		require.Equal(t, batchTotal{Count: 1000, Workers: 5}, total)
		bb.mu.Lock()
		require.LessOrEqual(t, bb.peak, 2, "parallelism: at most 2 workers of the batch at once")
		require.Positive(t, bb.peak)
		bb.mu.Unlock()
		requireLegalTransitions(t, bb.engine, task.ID)
	})
}

func TestBatchWithNoBatchesKeepsItsShape(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		bb := newBatchBundle(t, setup, "fail_fast", 0, countItems)
		task := bb.wait(t, bb.create(t, "dyn", "batch", nil).ID)
		require.Equal(t, tasker.TaskComplete, task.State)
		require.ElementsMatch(t, []string{"analyze", "work_000", "total"}, stepNames(task))
		noop, _ := task.Step("work_000")
		require.JSONEq(t, `{"no_op": true}`, string(noop.Result))
		bb.mu.Lock()
		require.Zero(t, bb.peak, "the no-op worker's handler never runs")
		bb.mu.Unlock()
	})
}

func TestBatchWorkerResumesFromItsCheckpoint(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		var mu sync.Mutex
		starts := map[string][]int64{}
		bb := newBatchBundle(t, setup, "fail_fast", 400, func(s *tasker.Step, in tasker.BatchInputs) (any, error) {
			var cp struct{ Next int64 }
			from := in.Cursor.Start
			if ok, err := s.LoadCheckpoint(&cp); err != nil {
				return nil, err
			} else if ok {
				from = cp.Next
			}
			mu.Lock()
			starts[s.Name] = append(starts[s.Name], from)
			mu.Unlock()
			mid := in.Cursor.Start + (in.Cursor.End-in.Cursor.Start)/2
			if s.Attempt == 1 && s.Name == "work_002" {
				// Half the batch done: save the position, then fail.
				if err := s.Checkpoint(context.Background(), map[string]int64{"Next": mid}); err != nil {
					return nil, err
				}
				return nil, errors.New("connection reset halfway")
			}
			return map[string]any{"count": in.Cursor.End - from + (from - in.Cursor.Start)}, nil
		})
		task := bb.wait(t, bb.create(t, "dyn", "batch", nil).ID)
		require.Equal(t, tasker.TaskComplete, task.State)
		mu.Lock()
		require.Equal(t, []int64{200, 300}, starts["work_002"], "the retry resumed at the checkpoint")
		require.Equal(t, []int64{0}, starts["work_001"])
		mu.Unlock()
		w2, _ := task.Step("work_002")
		require.Equal(t, 2, w2.Attempts)
		var total batchTotal
		require.NoError(t, task.Result("total", &total))
		require.Equal(t, int64(400), total.Count)
	})
}

func failSecond(_ *tasker.Step, in tasker.BatchInputs) (any, error) {
	if in.Cursor.BatchID == "002" {
		return nil, tasker.Permanent(errors.New("corrupt rows"))
	}
	return map[string]any{"count": in.Cursor.End - in.Cursor.Start}, nil
}

func TestBatchFailureStrategies(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		t.Run("continue_on_failure", func(t *testing.T) {
			t.Parallel()
			bb := newBatchBundle(t, setup, "continue_on_failure", 600, failSecond)
			task := bb.wait(t, bb.create(t, "dyn", "batch", nil).ID)
			require.Equal(t, tasker.TaskComplete, task.State)
			var total batchTotal
			require.NoError(t, task.Result("total", &total))
			require.Equal(t, batchTotal{Count: 400, Failed: 1, Workers: 3}, total, "the convergence sees the failure")
			w2, _ := task.Step("work_002")
			require.Equal(t, tasker.StepComplete, w2.State)
			require.Contains(t, string(w2.Result), "corrupt rows")
			requireLegalTransitions(t, bb.engine, task.ID)
		})
		t.Run("fail_fast", func(t *testing.T) {
			t.Parallel()
			bb := newBatchBundle(t, setup, "fail_fast", 600, failSecond)
			task := bb.wait(t, bb.create(t, "dyn", "batch", nil).ID)
			require.Equal(t, tasker.TaskBlockedByFailures, task.State)
			w2, _ := task.Step("work_002")
			require.Equal(t, tasker.StepError, w2.State)
			total, _ := task.Step("total")
			require.Equal(t, tasker.StepPending, total.State)
		})
		t.Run("isolate", func(t *testing.T) {
			t.Parallel()
			bb := newBatchBundle(t, setup, "isolate", 600, failSecond)
			task := bb.wait(t, bb.create(t, "dyn", "batch", nil).ID)
			require.Equal(t, tasker.TaskBlockedByFailures, task.State)
			for _, name := range []string{"work_001", "work_003"} {
				w, _ := task.Step(name)
				require.Equal(t, tasker.StepComplete, w.State, "%s still ran: the failure is isolated", name)
			}
			w2, _ := task.Step("work_002")
			require.Equal(t, tasker.StepError, w2.State)
			// The operator resolves the isolated worker; the convergence runs and the task completes.
			require.NoError(t, bb.engine.ResolveStep(context.Background(), w2.ID, tasker.OperatorRequest{Operator: "ops", Reason: "rows skipped"}))
			task = bb.wait(t, task.ID)
			require.Equal(t, tasker.TaskComplete, task.State)
			var total batchTotal
			require.NoError(t, task.Result("total", &total))
			require.Equal(t, int64(400), total.Count)
			requireLegalTransitions(t, bb.engine, task.ID)
		})
	})
}

// TestBatchIDTooLongForAStepName: a batch id chosen by the handler names a worker step; one that
// makes the name longer than the database indexes (or not storable) fails the batchable step at
// once as invalid_outcome. Before, PostgreSQL refused the outcome (index row size), the worker
// retried it until its lease ran out, and the rescuer ran the handler again, attempt after attempt.
func TestBatchIDTooLongForAStepName(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		b := setup(t)
		b.register(t, fmtBatch("continue_on_failure"))
		var runs atomic.Int32
		b.engine.HandleFunc("analyze", func(context.Context, *tasker.Step) (any, error) {
			runs.Add(1)
			return tasker.CreateBatches("work", tasker.BatchCursor{BatchID: strings.Repeat("b", 3000), End: 10, BatchSize: 10}), nil
		})
		b.engine.HandleFunc("work", func(context.Context, *tasker.Step) (any, error) { return 1, nil })
		b.engine.HandleFunc("total", func(context.Context, *tasker.Step) (any, error) { return 1, nil })
		b.start(t)
		task := b.wait(t, b.create(t, "dyn", "batch", nil).ID)
		require.Equal(t, tasker.TaskBlockedByFailures, task.State)
		analyze, _ := task.Step("analyze")
		require.Equal(t, "invalid_outcome", analyze.LastError.Kind)
		require.Contains(t, analyze.LastError.Message, "MaxNameBytes")
		require.Equal(t, 1, analyze.Attempts)
		require.EqualValues(t, 1, runs.Load(), "the handler ran once")
		require.ElementsMatch(t, []string{"analyze"}, stepNames(task), "nothing was created")
	})
}

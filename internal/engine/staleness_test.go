package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/queue"
	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
	"github.com/tasker-systems/tasker/store/memory"
	"github.com/tasker-systems/tasker/store/postgres"
)

// TestJudgeBands measures tasks against limits by hand: the bands' edges are Tasker Core's (80 %
// and 100 %), the threshold with the highest ratio is the verdict's, a state without a limit has
// none, and a blocked task is not held to the maximum duration.
func TestJudgeBands(t *testing.T) {
	t.Parallel()
	l := StalenessLimits{MaxDuration: 10 * time.Second, InProcess: time.Second, WaitingForRetry: 2 * time.Second, Action: StalenessDeadLetter}
	for _, c := range []struct {
		name      string
		state     statemachine.TaskState
		age, in   time.Duration
		limits    StalenessLimits
		threshold Threshold
		ratio     float64
		band      Band
	}{
		{"healthy", statemachine.TaskStepsInProcess, time.Second, 500 * time.Millisecond, l, ThresholdInProcess, 0.5, BandHealthy},
		{"warning at 80 %", statemachine.TaskStepsInProcess, time.Second, 800 * time.Millisecond, l, ThresholdInProcess, 0.8, BandWarning},
		{"warning below 100 %", statemachine.TaskStepsInProcess, time.Second, 990 * time.Millisecond, l, ThresholdInProcess, 0.99, BandWarning},
		{"stale at 100 %", statemachine.TaskStepsInProcess, time.Second, time.Second, l, ThresholdInProcess, 1, BandStale},
		{"passing states count as in process", statemachine.TaskEvaluatingResults, 3 * time.Second, 3 * time.Second, l, ThresholdInProcess, 3, BandStale},
		{"waiting for retry", statemachine.TaskWaitingForRetry, 2 * time.Second, time.Second, l, ThresholdWaitingForRetry, 0.5, BandHealthy},
		{"max duration beats the state's", statemachine.TaskWaitingForRetry, 12 * time.Second, time.Second, l, ThresholdMaxDuration, 1.2, BandStale},
		{"no limit for the state", statemachine.TaskWaitingForDependencies, time.Second, time.Second, StalenessLimits{InProcess: time.Second}, "", 0, BandHealthy},
		{"blocked: no max duration", statemachine.TaskBlockedByFailures, time.Hour, time.Hour, l, "", 0, BandHealthy},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := Judge(store.ActiveTask{State: c.state, Age: c.age, StateAge: c.in}, c.limits)
			require.Equal(t, c.threshold, v.Threshold)
			require.InDelta(t, c.ratio, v.Ratio, 1e-9)
			require.Equal(t, c.band, v.Band)
			require.Equal(t, c.limits.Action, v.Action)
		})
	}
}

// createNamed creates a task of template ns/name@1.0.0 with one enqueued root step (handler "h")
// that no worker takes: the task stays in steps_in_process.
func createNamed(t *testing.T, e *Engine, name string) uuid.UUID {
	t.Helper()
	taskID := uuid.Must(uuid.NewV7())
	_, err := e.store.CreateTask(context.Background(), nil, store.CreateTaskParams{
		TaskID: taskID, Namespace: "ns", Name: name, Version: "1.0.0", Context: json.RawMessage(`{}`),
		IdentityHash: taskID.String(), Enqueuer: e.NewEnqueuer(),
		Template: &store.RegisterTemplateParams{Namespace: "ns", Name: name, Version: "1.0.0",
			Definition: json.RawMessage(`{"name":"` + name + `"}`), Checksum: "test-" + name},
		Steps: []store.NewStep{{StepID: uuid.Must(uuid.NewV7()), Name: "a", TemplateStep: "a", Handler: "h", Type: "standard",
			MaxAttempts: 3, Retryable: true, Backoff: "exponential", BackoffBase: 10 * time.Millisecond,
			MaxBackoff: time.Second, Timeout: time.Minute}},
	})
	require.NoError(t, err)
	return taskID
}

// staleEngine is a test engine whose templates ns/dlq, ns/err, ns/report and ns/fresh have the
// actions their names say; all but fresh go stale after 100ms in process. Reads take two tasks.
func staleEngine(t *testing.T, dry bool) *Engine {
	e, _, _ := testEngine(t, nil, func(c *Config) {
		short := StalenessLimits{InProcess: 100 * time.Millisecond}
		with := func(a StalenessAction) StalenessLimits { l := short; l.Action = a; return l }
		c.Staleness = StalenessConfig{Interval: time.Second, BatchSize: 2, DryRun: dry,
			Defaults: StalenessLimits{InProcess: time.Hour, Action: StalenessReport},
			ByName: map[string]StalenessLimits{"ns/dlq": with(StalenessDeadLetter), "ns/err": with(StalenessError),
				"ns/report": with(StalenessReport), "ns/fresh": {InProcess: time.Hour, Action: StalenessDeadLetter}}}
	})
	return e
}

func taskState(t *testing.T, e *Engine, id uuid.UUID) statemachine.TaskState {
	t.Helper()
	task, err := e.store.GetTask(context.Background(), id)
	require.NoError(t, err)
	return task.State
}

// entries lists the task's dead-letter entries.
func entries(t *testing.T, e *Engine, id uuid.UUID) []store.DeadLetter {
	t.Helper()
	all, err := e.store.ListDeadLetters(context.Background(), store.ListDeadLettersParams{Limit: 1000})
	require.NoError(t, err)
	var out []store.DeadLetter
	for _, d := range all {
		if d.TaskID == id {
			out = append(out, d)
		}
	}
	return out
}

// TestStalenessPassMovesEachStaleTaskOnce: past their threshold, the dlq task gets one entry and
// goes to error, the error task goes to error without one, the report task is only counted, and
// the fresh task is not touched. The transition into error records the threshold that fired. A
// second pass moves nothing again.
func TestStalenessPassMovesEachStaleTaskOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := staleEngine(t, false)
	dlq, errT, report, fresh := createNamed(t, e, "dlq"), createNamed(t, e, "err"), createNamed(t, e, "report"), createNamed(t, e, "fresh")
	res, err := e.StalenessPass(ctx)
	require.NoError(t, err)
	require.Equal(t, StalenessPass{}, res, "nothing is stale yet")
	time.Sleep(150 * time.Millisecond)

	res, err = e.StalenessPass(ctx)
	require.NoError(t, err)
	require.Equal(t, StalenessPass{Stale: 3, DeadLettered: 1, Failed: 1, Reported: 1}, res)

	require.Equal(t, statemachine.TaskError, taskState(t, e, dlq))
	es := entries(t, e, dlq)
	require.Len(t, es, 1)
	require.Equal(t, store.ReasonStalenessTimeout, es[0].Reason)
	require.Equal(t, statemachine.TaskStepsInProcess, es[0].OriginalState)
	var snap store.Snapshot
	require.NoError(t, json.Unmarshal(es[0].Snapshot, &snap))
	require.Equal(t, string(ThresholdInProcess), snap.Detail["threshold"])
	require.Equal(t, "100ms", snap.Detail["limit"])
	require.Len(t, snap.Steps, 1)

	require.Equal(t, statemachine.TaskError, taskState(t, e, errT))
	require.Empty(t, entries(t, e, errT), "action error writes no entry")
	for _, id := range []uuid.UUID{dlq, errT} {
		trs, err := e.store.Transitions(ctx, id)
		require.NoError(t, err)
		var into []store.Transition
		for _, tr := range trs {
			if tr.StepID == uuid.Nil && tr.To == string(statemachine.TaskError) {
				into = append(into, tr)
			}
		}
		require.Len(t, into, 1)
		var meta map[string]any
		require.NoError(t, json.Unmarshal(into[0].Metadata, &meta))
		require.Equal(t, "staleness_timeout", meta["reason"])
		require.Equal(t, string(ThresholdInProcess), meta["threshold"])
		require.Equal(t, "test-worker", meta["worker_id"])
		steps, err := e.store.GetSteps(ctx, id)
		require.NoError(t, err)
		require.Equal(t, statemachine.StepCancelled, steps[0].State, "the step that could still run is cancelled")
	}

	require.Equal(t, statemachine.TaskStepsInProcess, taskState(t, e, report), "report only")
	require.Empty(t, entries(t, e, report))
	require.Equal(t, statemachine.TaskStepsInProcess, taskState(t, e, fresh))
	require.Empty(t, entries(t, e, fresh))

	res, err = e.StalenessPass(ctx)
	require.NoError(t, err)
	require.Equal(t, StalenessPass{Stale: 1, Reported: 1}, res, "the moved tasks are terminal: not seen again")
	require.Len(t, entries(t, e, dlq), 1)
}

// TestStalenessDryRunChangesNothing: a dry pass counts the tasks it would move and moves none;
// the view shows them stale.
func TestStalenessDryRunChangesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := staleEngine(t, true)
	ids := []uuid.UUID{createNamed(t, e, "dlq"), createNamed(t, e, "err"), createNamed(t, e, "fresh")}
	time.Sleep(150 * time.Millisecond)
	before := map[uuid.UUID]int{}
	for _, id := range ids {
		trs, err := e.store.Transitions(ctx, id)
		require.NoError(t, err)
		before[id] = len(trs)
	}

	res, err := e.StalenessPass(ctx)
	require.NoError(t, err)
	require.Equal(t, StalenessPass{Stale: 2, WouldMove: 2}, res)
	for _, id := range ids {
		require.Equal(t, statemachine.TaskStepsInProcess, taskState(t, e, id))
		require.Empty(t, entries(t, e, id))
		trs, err := e.store.Transitions(ctx, id)
		require.NoError(t, err)
		require.Len(t, trs, before[id], "no transition written")
	}

	vs, err := e.Staleness(ctx, StalenessParams{})
	require.NoError(t, err)
	bands := map[uuid.UUID]Band{}
	for _, v := range vs {
		bands[v.Task.ID] = v.Band
	}
	require.Equal(t, map[uuid.UUID]Band{ids[0]: BandStale, ids[1]: BandStale, ids[2]: BandHealthy}, bands)
}

// TestStalenessSkipsATaskThatMoved: a verdict taken before the task moved is not applied (the
// compare-and-set fails), so neither a task that finished meanwhile nor one another engine moved
// first is moved twice, and only one entry is ever written.
func TestStalenessSkipsATaskThatMoved(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := staleEngine(t, false)
	cancelled, twice := createNamed(t, e, "dlq"), createNamed(t, e, "dlq")
	time.Sleep(150 * time.Millisecond)
	vs, err := e.Staleness(ctx, StalenessParams{MinBand: BandStale})
	require.NoError(t, err)
	require.Len(t, vs, 2)
	verdict := map[uuid.UUID]Verdict{vs[0].Task.ID: vs[0], vs[1].Task.ID: vs[1]}

	_, err = e.store.CancelTask(ctx, store.CancelTaskParams{TaskID: cancelled, Reason: "user"})
	require.NoError(t, err)
	var res StalenessPass
	require.NoError(t, e.actOnStale(ctx, verdict[cancelled], false, &res))
	require.Equal(t, StalenessPass{Skipped: 1}, res)
	require.Equal(t, statemachine.TaskCancelled, taskState(t, e, cancelled))
	require.Empty(t, entries(t, e, cancelled))

	// Two engines measured the same task; the second one's move finds it moved.
	res = StalenessPass{}
	require.NoError(t, e.actOnStale(ctx, verdict[twice], false, &res))
	require.NoError(t, e.actOnStale(ctx, verdict[twice], false, &res))
	require.Equal(t, StalenessPass{DeadLettered: 1, Skipped: 1}, res)
	require.Len(t, entries(t, e, twice), 1)
}

// TestStalenessViewFiltersAndPages: the view pages by task ID (Limit, AfterID) and keeps the
// tasks of a band or worse.
func TestStalenessViewFiltersAndPages(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := staleEngine(t, false)
	var stale []uuid.UUID
	for range 3 {
		stale = append(stale, createNamed(t, e, "report"))
	}
	time.Sleep(150 * time.Millisecond)
	fresh := createNamed(t, e, "fresh")

	all, err := e.Staleness(ctx, StalenessParams{})
	require.NoError(t, err)
	require.Len(t, all, 4)
	page1, err := e.Staleness(ctx, StalenessParams{MinBand: BandWarning, Limit: 2})
	require.NoError(t, err)
	require.Len(t, page1, 2)
	page2, err := e.Staleness(ctx, StalenessParams{MinBand: BandWarning, Limit: 2, AfterID: page1[1].Task.ID})
	require.NoError(t, err)
	var got []uuid.UUID
	for _, v := range append(page1, page2...) {
		require.Equal(t, BandStale, v.Band)
		require.Equal(t, ThresholdInProcess, v.Threshold)
		require.GreaterOrEqual(t, v.Ratio, 1.0)
		got = append(got, v.Task.ID)
	}
	require.Equal(t, stale, got, "in task ID order, without the fresh task")
	for _, v := range all {
		if v.Task.ID == fresh {
			require.Equal(t, BandHealthy, v.Band)
		}
	}
}

// TestStalenessConcurrentPassesMoveEachTaskOnce runs the passes of three engines at the same
// time, without an election, over the same stale tasks, on store/memory and on PostgreSQL (each
// engine with a store of its own, as processes have): the compare-and-set lets exactly one move
// each task, so every task gets one entry and one transition into error.
func TestStalenessConcurrentPassesMoveEachTaskOnce(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"memory", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			mem := memory.New()
			var db *testdb.DB
			if backend == "postgres" {
				db = testdb.New(t)
			}
			var engines []*Engine
			for i := range 3 {
				var st store.Store = mem
				if db != nil {
					st = postgres.New(db.Pool, postgres.WithSchema(db.Schema))
				}
				engines = append(engines, New(Config{Store: st, Queue: st.(interface{ DefaultQueue() queue.Queue }).DefaultQueue(),
					WorkerID: fmt.Sprintf("engine-%d", i), Lease: time.Minute, MaxPayloadBytes: 1 << 20,
					Staleness: StalenessConfig{Interval: time.Second, BatchSize: 3,
						Defaults: StalenessLimits{InProcess: 100 * time.Millisecond, Action: StalenessDeadLetter}}}))
			}
			var ids []uuid.UUID
			for range 10 {
				ids = append(ids, createNamed(t, engines[0], "dlq"))
			}
			time.Sleep(150 * time.Millisecond)

			results := make([]StalenessPass, len(engines))
			var wg sync.WaitGroup
			for i, e := range engines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var err error
					results[i], err = e.StalenessPass(ctx)
					require.NoError(t, err)
				}()
			}
			wg.Wait()
			t.Logf("passes: %+v", results)
			moved := 0
			for _, r := range results {
				moved += r.DeadLettered
				require.Equal(t, r.Stale, r.DeadLettered+r.Skipped, "a stale task is moved or skipped: %+v", r)
			}
			require.Equal(t, len(ids), moved, "each task moved once in all: %+v", results)
			for _, id := range ids {
				require.Equal(t, statemachine.TaskError, taskState(t, engines[1], id))
				require.Len(t, entries(t, engines[1], id), 1)
				trs, err := engines[2].store.Transitions(ctx, id)
				require.NoError(t, err)
				n := 0
				for _, tr := range trs {
					if tr.StepID == uuid.Nil && tr.To == string(statemachine.TaskError) {
						n++
					}
				}
				require.Equal(t, 1, n)
			}
		})
	}
}

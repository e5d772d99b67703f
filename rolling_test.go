package tasker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/store/postgres"
)

// The two releases of one template in a rolling deploy: 1.1.0 adds step c, whose handler only the
// new release's engines have.
const (
	rollingV100 = `
name: rolling
namespace_name: rolling
version: 1.0.0
steps:
  - {name: a, handler: {callable: step_a}}
  - {name: b, handler: {callable: step_b}, dependencies: [a]}
`
	rollingV110 = `
name: rolling
namespace_name: rolling
version: 1.1.0
steps:
  - {name: a, handler: {callable: step_a}}
  - {name: b, handler: {callable: step_b}, dependencies: [a]}
  - {name: c, handler: {callable: step_c}, dependencies: [b]}
`
)

// rollingRuns records which engine ran which step, and how often.
type rollingRuns struct {
	mu   sync.Mutex
	by   map[uuid.UUID][]string // step ID -> workers that ran it
	per  map[string]int         // worker -> steps run
	cRan map[uuid.UUID]string   // c's step ID -> worker
}

func newRollingRuns() *rollingRuns {
	return &rollingRuns{by: map[uuid.UUID][]string{}, per: map[string]int{}, cRan: map[uuid.UUID]string{}}
}

// otherProcess makes an engine with worker ID id on b's database and queue, with a store and a
// broker connection of its own, as another process would have.
func otherProcess(t *testing.T, b *bundle, id string, concurrency int) *bundle {
	t.Helper()
	return b.sibling(t, func(c *tasker.Config) {
		c.WorkerID, c.Concurrency = id, concurrency
		switch b.backend {
		case backendPostgres, backendRabbitMQ:
			c.Store = postgres.New(b.db.Pool, postgres.WithSchema(b.db.Schema))
			if rq, ok := c.Queue.(*testRabbitMQ); ok {
				c.Queue = rq.peer(t)
			}
		}
	})
}

// rollingEngine makes an engine of one release on b's database and queue, as another process
// would have: OLD registers 1.0.0 with the handlers of a and b; NEW registers 1.0.0 and 1.1.0 and
// also has c's handler.
func rollingEngine(t *testing.T, b *bundle, id string, isNew bool, runs *rollingRuns) *bundle {
	t.Helper()
	eb := otherProcess(t, b, id, 4)
	eb.register(t, rollingV100)
	handler := func(ctx context.Context, s *tasker.Step) (any, error) {
		runs.mu.Lock()
		runs.by[s.ID] = append(runs.by[s.ID], id)
		runs.per[id]++
		if s.Name == "c" {
			runs.cRan[s.ID] = id
		}
		runs.mu.Unlock()
		return map[string]any{"by": id}, nil
	}
	eb.engine.HandleFunc("step_a", handler)
	eb.engine.HandleFunc("step_b", handler)
	if isNew {
		eb.register(t, rollingV110)
		eb.engine.HandleFunc("step_c", handler)
	}
	return eb
}

// requireNoNoHandler fails when any transition of the task records an error of kind no_handler.
func requireNoNoHandler(t *testing.T, eng *tasker.Engine, id uuid.UUID) []tasker.Transition {
	t.Helper()
	trs := requireLegalTransitions(t, eng, id)
	for _, tr := range trs {
		var meta struct {
			Error *struct {
				Kind string `json:"kind"`
			} `json:"error"`
		}
		if len(tr.Metadata) == 0 {
			continue
		}
		require.NoError(t, json.Unmarshal(tr.Metadata, &meta))
		if meta.Error != nil {
			require.NotEqual(t, "no_handler", meta.Error.Kind, "step %s: %s", tr.StepName, tr.Metadata)
		}
	}
	return trs
}

// requireClaimedOnceBy fails unless the step was claimed exactly once, by worker, and never given
// back: an engine without its handler declined its messages without claiming it.
func requireClaimedOnceBy(t *testing.T, trs []tasker.Transition, stepID uuid.UUID, worker string) {
	t.Helper()
	var starts []string
	for _, tr := range trs {
		if tr.StepID != stepID {
			continue
		}
		require.NotEqual(t, "release", tr.Event, "the step was claimed and given back: %s", tr.Metadata)
		if tr.Event == "start" {
			var meta struct {
				WorkerID string `json:"worker_id"`
			}
			require.NoError(t, json.Unmarshal(tr.Metadata, &meta))
			starts = append(starts, meta.WorkerID)
		}
	}
	require.Equal(t, []string{worker}, starts)
}

// queueWaits collects, by step name, how long steps waited between their enqueue and their
// start: what declines add shows as c's waits against b's (logged, not asserted).
type queueWaits map[string][]time.Duration

func (q queueWaits) add(trs []tasker.Transition) {
	enq := map[uuid.UUID]time.Time{}
	for _, tr := range trs {
		switch {
		case tr.StepID == uuid.Nil:
		case tr.Event == "enqueue":
			enq[tr.StepID] = tr.At
		case tr.Event == "start" && !enq[tr.StepID].IsZero():
			q[tr.StepName] = append(q[tr.StepName], tr.At.Sub(enq[tr.StepID]))
		}
	}
}

// waitStats summarises waits as mean, 90th percentile and max.
func waitStats(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	slices.Sort(ds)
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	r := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	return fmt.Sprintf("mean %v, p90 %v, max %v (n=%d)", r(sum/time.Duration(len(ds))), r(ds[len(ds)*9/10]), r(ds[len(ds)-1]), len(ds))
}

// TestRollingDeployRunsNewStepsOnNewWorkers: old engines (template 1.0.0) and a new one (1.0.0
// and 1.1.0, which adds step c with a handler only the new one has) share a namespace. No old
// engine claims c: every task completes, every c runs once, in the new engine, and no step fails
// with no_handler. Several old engines compete with the one new engine, so a decline that starved
// it would show as tasks that do not finish.
func TestRollingDeployRunsNewStepsOnNewWorkers(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		b := setup(t)
		const olds, newTasks, oldTasks = 3, 60, 12
		runs := newRollingRuns()
		var oldEngines []*bundle
		for i := range olds {
			oldEngines = append(oldEngines, rollingEngine(t, b, fmt.Sprintf("old-%d", i), false, runs))
		}
		newEngine := rollingEngine(t, b, "new", true, runs)
		for _, eb := range append(oldEngines, newEngine) {
			eb.start(t)
		}

		start := time.Now()
		var created []*tasker.Task
		for i := range newTasks {
			created = append(created, newEngine.create(t, "rolling", "rolling", map[string]any{"i": i}))
			if i%5 == 0 {
				old := oldEngines[(i/5)%olds]
				created = append(created, old.create(t, "rolling", "rolling", map[string]any{"old": i}))
			}
		}
		require.Len(t, created, newTasks+oldTasks)
		for _, task := range created {
			got := newEngine.wait(t, task.ID)
			require.Equal(t, tasker.TaskComplete, got.State, "task %s (template %s)", task.ID, task.Version)
		}
		t.Logf("%s: %d tasks complete in %v with %d old engines declining", b.backend, len(created), time.Since(start), olds)

		runs.mu.Lock()
		defer runs.mu.Unlock()
		var cs, bByOld int
		waits := queueWaits{}
		for _, task := range created {
			got := newEngine.wait(t, task.ID)
			trs := requireNoNoHandler(t, newEngine.engine, task.ID)
			if task.Version == "1.1.0" {
				waits.add(trs)
			}
			c, ok := got.Step("c")
			if task.Version == "1.0.0" {
				require.False(t, ok)
				continue
			}
			require.True(t, ok)
			cs++
			if bs, _ := got.Step("b"); runs.by[bs.ID][0] != "new" {
				bByOld++
			}
			require.Equal(t, tasker.StepComplete, c.State)
			require.Equal(t, 1, c.Attempts, "c spent no attempt on an engine without its handler")
			require.Equal(t, []string{"new"}, runs.by[c.ID], "c ran once, in the new engine")
			requireClaimedOnceBy(t, trs, c.ID, "new")
		}
		require.Equal(t, newTasks, cs)
		t.Logf("%s: queue wait (enqueue to start) of b: %s; of c: %s", b.backend, waitStats(waits["b"]), waitStats(waits["c"]))
		require.Positive(t, bByOld, "old engines completed b of 1.1.0 tasks, so they released c (on postgres+pgqueue "+
			"through ClaimNext, whose Accept must not hand c to them)")
		var byOld int
		for i := range olds {
			byOld += runs.per[fmt.Sprintf("old-%d", i)]
		}
		require.Positive(t, byOld, "the old engines took work, so the fleet was mixed: %v", runs.per)
	})
}

// TestStepWaitsForAnEngineWithItsHandler: with only old engines running, a 1.1.0 task's step c
// waits enqueued (not failed, no attempt spent) and the old engine's Health lists it as waiting
// for handler step_c; once a new engine starts, the task completes, with c run there.
func TestStepWaitsForAnEngineWithItsHandler(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		b := setup(t)
		runs := newRollingRuns()
		old := rollingEngine(t, b, "old", false, runs)
		newEngine := rollingEngine(t, b, "new", true, runs)
		old.start(t)
		ctx := context.Background()

		task := newEngine.create(t, "rolling", "rolling", map[string]any{"wait": true})
		var waiting tasker.WaitingSteps
		require.Eventually(t, func() bool {
			h, err := old.engine.Health(ctx)
			require.NoError(t, err)
			for _, w := range h.WaitingForHandler {
				if w.Namespace == "rolling" && w.Callable == "step_c" {
					waiting = w
					return true
				}
			}
			return false
		}, 30*time.Second, 20*time.Millisecond, "Health lists c as waiting for its handler")
		require.Equal(t, 1, waiting.Steps)
		require.Equal(t, tasker.WaitNoHandler, waiting.Reason)
		require.False(t, waiting.Since.IsZero())

		got, err := old.engine.GetTask(ctx, task.ID)
		require.NoError(t, err)
		c, _ := got.Step("c")
		require.Equal(t, tasker.StepEnqueued, c.State)
		require.Zero(t, c.Attempts, "no attempt spent")
		require.Nil(t, c.LastError)
		for _, name := range []string{"a", "b"} {
			s, _ := got.Step(name)
			require.Equal(t, tasker.StepComplete, s.State, "the old engine runs the steps whose handlers it has")
		}
		time.Sleep(300 * time.Millisecond) // several declines
		got, err = old.engine.GetTask(ctx, task.ID)
		require.NoError(t, err)
		c, _ = got.Step("c")
		require.Equal(t, tasker.StepEnqueued, c.State)
		require.Zero(t, c.Attempts, "declines spend no attempt")

		newEngine.start(t)
		got = newEngine.wait(t, task.ID)
		require.Equal(t, tasker.TaskComplete, got.State)
		trs := requireNoNoHandler(t, newEngine.engine, task.ID)
		c, _ = got.Step("c")
		require.Equal(t, 1, c.Attempts)
		requireClaimedOnceBy(t, trs, c.ID, "new")
		runs.mu.Lock()
		require.Equal(t, "new", runs.cRan[c.ID])
		runs.mu.Unlock()
		require.Eventually(t, func() bool {
			h, err := old.engine.Health(ctx)
			require.NoError(t, err)
			return len(h.WaitingForHandler) == 0
		}, 10*time.Second, 20*time.Millisecond, "once c has run, nothing is listed as waiting")
	})
}

// Two releases of a template whose 1.1.0 makes its second step a decision point: an engine that
// has the decision's handler but not 1.1.0 claims the step from the queue (the message's handler
// is one it has), then declines it, since a decision step needs its template version.
const (
	declineV100 = `
name: decline
namespace_name: decline
version: 1.0.0
steps:
  - {name: start, handler: {callable: start}}
  - {name: route, handler: {callable: route}, dependencies: [start]}
`
	declineV110 = `
name: decline
namespace_name: decline
version: 1.1.0
steps:
  - {name: start, handler: {callable: start}}
  - {name: route, type: decision, handler: {callable: route}, dependencies: [start]}
  - {name: chosen, handler: {callable: chosen}, dependencies: [route]}
`
)

// TestStepDeclinedAfterItsClaimRunsElsewhere: a step an engine claims and then declines (it lacks
// the template version a decision step needs) is given back with a message of its own, so another
// engine runs it. On PostgreSQL's own queue the claim deletes the delivering message; giving back
// only that message (as before) left the step enqueued with no message, never to run.
func TestStepDeclinedAfterItsClaimRunsElsewhere(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		b := setup(t)
		ctx := context.Background()
		var mu sync.Mutex
		ran := map[string]string{} // step name -> worker
		engine := func(id string, full bool) *bundle {
			eb := otherProcess(t, b, id, 2)
			eb.register(t, declineV100)
			note := func(s *tasker.Step) {
				mu.Lock()
				defer mu.Unlock()
				ran[s.Name] = id
			}
			eb.engine.HandleFunc("start", func(_ context.Context, s *tasker.Step) (any, error) {
				note(s)
				return "started", nil
			})
			eb.engine.HandleFunc("route", func(_ context.Context, s *tasker.Step) (any, error) {
				note(s)
				if s.Version == "1.1.0" { // the decision point
					return tasker.CreateSteps("chosen"), nil
				}
				return "routed", nil
			})
			if full {
				eb.register(t, declineV110)
				eb.engine.HandleFunc("chosen", func(_ context.Context, s *tasker.Step) (any, error) {
					note(s)
					return "ok", nil
				})
			}
			return eb
		}
		partial, full := engine("partial", false), engine("full", true)
		partial.start(t)
		task := full.create(t, "decline", "decline", map[string]any{})
		require.Equal(t, "1.1.0", task.Version)
		require.Eventually(t, func() bool {
			h, err := partial.engine.Health(ctx)
			require.NoError(t, err)
			for _, w := range h.WaitingForHandler {
				if w.Namespace == "decline" && w.Reason == tasker.WaitNoTemplate {
					return true
				}
			}
			return false
		}, 30*time.Second, 10*time.Millisecond, "the partial engine claimed the decision step and declined it")
		got, err := partial.engine.GetTask(ctx, task.ID)
		require.NoError(t, err)
		route, _ := got.Step("route")
		require.Equal(t, tasker.StepEnqueued, route.State, "given back, not failed")
		require.Zero(t, route.Attempts, "a decline spends no attempt")

		full.start(t)
		done := full.wait(t, task.ID)
		require.Equal(t, tasker.TaskComplete, done.State)
		route, _ = done.Step("route")
		require.Equal(t, 1, route.Attempts)
		mu.Lock()
		defer mu.Unlock()
		require.Equal(t, "full", ran["route"], "the decision ran where its template is")
		require.Equal(t, "full", ran["chosen"])
	})
}

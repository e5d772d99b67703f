package tasker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/store"
	"github.com/tasker-systems/tasker/store/memory"
	"github.com/tasker-systems/tasker/store/postgres"
)

// staleYAML is a one-step template of namespace "stale" whose step calls callable, with a retry
// backoff of a minute: a failed attempt leaves the task waiting_for_retry for that long.
const staleYAML = `
name: %s
namespace_name: stale
version: 1.0.0
steps:
  - name: a
    handler: {callable: %s}
    retry: {retryable: true, max_attempts: 3, backoff: exponential, backoff_base_ms: 60000, max_backoff_ms: 60000}
`

// staleness sets thresholds of a second or so on the stale templates, with a detector that looks
// every 100ms and a leader that hands over quickly.
func staleness(dry bool) setupOpt {
	return func(c *tasker.Config) {
		c.LeaderTTL, c.RescueInterval = 300*time.Millisecond, 100*time.Millisecond
		c.Staleness = tasker.StalenessConfig{Interval: 100 * time.Millisecond, BatchSize: 2, DryRun: dry,
			Templates: map[string]tasker.StalenessThresholds{
				"stale/orphan": {MaxInProcess: time.Second, Action: tasker.StalenessDeadLetter},
				"stale/flaky":  {MaxWaitingForRetry: time.Second, Action: tasker.StalenessDeadLetter},
				"stale/quick":  {MaxInProcess: 1500 * time.Millisecond, MaxDuration: 2 * time.Second, Action: tasker.StalenessDeadLetter},
			}}
	}
}

// staleEngines starts n engines on one store (on PostgreSQL each with a store of its own, as
// separate processes have), each with the stale templates and the handlers flaky and quick; no
// engine has a handler for orphan.
func staleEngines(t *testing.T, backend string, n int, dry bool, flakyRuns *atomic.Int32, opts ...setupOpt) []*bundle {
	b := setupOn(t, backend, append([]setupOpt{staleness(dry)}, opts...)...)
	var all []*bundle
	for i := range n {
		eb := b.sibling(t, func(c *tasker.Config) {
			c.WorkerID = fmt.Sprintf("engine-%d", i)
			if b.db != nil {
				c.Store = postgres.New(b.db.Pool, postgres.WithSchema(b.db.Schema))
			}
		})
		for _, name := range []string{"orphan", "flaky", "quick"} {
			eb.register(t, fmt.Sprintf(staleYAML, name, name))
		}
		eb.engine.HandleFunc("flaky", func(context.Context, *tasker.Step) (any, error) {
			flakyRuns.Add(1)
			return nil, errors.New("upstream unavailable")
		})
		eb.engine.HandleFunc("quick", func(context.Context, *tasker.Step) (any, error) {
			time.Sleep(100 * time.Millisecond)
			return map[string]any{"ok": true}, nil
		})
		eb.start(t)
		all = append(all, eb)
	}
	return all
}

// deadLetters lists a task's dead-letter entries.
func deadLetters(t *testing.T, st store.Store, id uuid.UUID) []store.DeadLetter {
	t.Helper()
	all, err := st.ListDeadLetters(context.Background(), store.ListDeadLettersParams{Limit: 1000})
	require.NoError(t, err)
	var out []store.DeadLetter
	for _, d := range all {
		if d.TaskID == id {
			out = append(out, d)
		}
	}
	return out
}

// intoError returns the metadata of the task's own transitions into error.
func intoError(t *testing.T, eng *tasker.Engine, id uuid.UUID) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, tr := range requireLegalTransitions(t, eng, id) {
		if tr.StepID == uuid.Nil && tr.To == string(tasker.TaskError) {
			var m map[string]any
			require.NoError(t, json.Unmarshal(tr.Metadata, &m))
			out = append(out, m)
		}
	}
	return out
}

// leader returns the index of the engine among all that holds the maintenance leadership,
// waiting for one.
func leader(t *testing.T, all []*bundle) int {
	t.Helper()
	found := -1
	require.Eventually(t, func() bool {
		l, ok, err := all[0].st.Leader(context.Background(), "maintenance")
		require.NoError(t, err)
		for i, b := range all {
			if ok && l.LeaderID == b.engine.WorkerID() {
				found = i
			}
		}
		return found >= 0
	}, 10*time.Second, 20*time.Millisecond)
	return found
}

// TestStalenessMovesStuckTasksOnce runs three engines on one store with thresholds of a second or
// so. A task whose step's handler no engine has (it never arrives) and a task whose step waits
// for a retry a minute away are each moved, past their threshold, to the dead-letter queue and
// to error exactly once, by whichever engine leads then (the first leader is stopped before the
// thresholds pass, so another takes over). A task that completes in time is never touched.
func TestStalenessMovesStuckTasksOnce(t *testing.T) {
	t.Parallel()
	for _, be := range []string{backendPostgres, backendMemory} {
		t.Run(be, func(t *testing.T) {
			t.Parallel()
			testStalenessMovesStuckTasksOnce(t, be)
		})
	}
}

func testStalenessMovesStuckTasksOnce(t *testing.T, backend string) {
	var flakyRuns atomic.Int32
	all := staleEngines(t, backend, 3, false, &flakyRuns)
	i := leader(t, all)
	first, other := all[i], all[(i+1)%len(all)]
	start := time.Now()
	orphan := all[0].create(t, "stale", "orphan", map[string]any{})
	flaky := all[1].create(t, "stale", "flaky", map[string]any{})
	quick := all[2].create(t, "stale", "quick", map[string]any{})
	first.stop() // the leader goes; another engine takes its services over

	for _, c := range []struct {
		id        uuid.UUID
		threshold string
		state     tasker.TaskState
	}{{orphan.ID, "max_steps_in_process", tasker.TaskStepsInProcess}, {flaky.ID, "max_waiting_for_retry", tasker.TaskWaitingForRetry}} {
		got := other.waitWithin(t, c.id, 15*time.Second)
		require.Equal(t, tasker.TaskError, got.State, c.threshold)
		require.GreaterOrEqual(t, time.Since(start), time.Second, "not before the threshold")
		for _, s := range got.Steps {
			require.Equal(t, tasker.StepCancelled, s.State, "its step can no longer run")
		}
	}
	require.Equal(t, tasker.TaskComplete, other.wait(t, quick.ID).State)
	time.Sleep(500 * time.Millisecond) // five more passes: none may move anything again

	for _, c := range []struct {
		id               uuid.UUID
		threshold, state string
	}{{orphan.ID, "max_steps_in_process", "steps_in_process"}, {flaky.ID, "max_waiting_for_retry", "waiting_for_retry"}} {
		es := deadLetters(t, all[0].st, c.id)
		require.Len(t, es, 1, "one entry for %s", c.threshold)
		require.Equal(t, store.ReasonStalenessTimeout, es[0].Reason)
		require.Equal(t, tasker.TaskState(c.state), es[0].OriginalState)
		var snap store.Snapshot
		require.NoError(t, json.Unmarshal(es[0].Snapshot, &snap))
		require.Equal(t, c.threshold, snap.Detail["threshold"])

		moves := intoError(t, all[0].engine, c.id)
		require.Len(t, moves, 1, "one transition into error for %s", c.threshold)
		require.Equal(t, "staleness_timeout", moves[0]["reason"])
		require.Equal(t, c.threshold, moves[0]["threshold"])
		require.Equal(t, "dlq", moves[0]["action"])
		require.NotEqual(t, first.engine.WorkerID(), moves[0]["worker_id"], "moved by the engine that took over")
	}
	require.Equal(t, int32(1), flakyRuns.Load(), "the flaky step ran once and then waited for its retry")

	require.Empty(t, deadLetters(t, all[0].st, quick.ID), "a task that finished in time is never touched")
	require.Empty(t, intoError(t, all[0].engine, quick.ID))
	for _, tr := range requireLegalTransitions(t, all[0].engine, quick.ID) {
		require.NotContains(t, string(tr.Metadata), "staleness")
	}
}

// TestStalenessDryRunReportsWithoutChanging: with DryRun, passes run and the view shows the
// stuck task stale, but nothing moves: no entry, no transition, the task stays in process.
func TestStalenessDryRunReportsWithoutChanging(t *testing.T) {
	t.Parallel()
	for _, be := range []string{backendPostgres, backendMemory} {
		t.Run(be, func(t *testing.T) {
			t.Parallel()
			var flakyRuns, dryReports atomic.Int32
			all := staleEngines(t, be, 3, true, &flakyRuns, func(c *tasker.Config) {
				c.Logger = funcr.New(func(_, args string) {
					if strings.Contains(args, "would be moved (dry run)") && strings.Contains(args, "max_steps_in_process") {
						dryReports.Add(1)
					}
				}, funcr.Options{})
			})
			eng := all[0].engine
			orphan := all[0].create(t, "stale", "orphan", map[string]any{})
			before := requireLegalTransitions(t, eng, orphan.ID)

			var rep tasker.StaleTaskReport
			require.Eventually(t, func() bool {
				rs, err := eng.Staleness(context.Background(), tasker.StalenessOptions{Namespace: "stale", MinBand: tasker.BandStale})
				require.NoError(t, err)
				if len(rs) == 1 {
					rep = rs[0]
				}
				return len(rs) == 1
			}, 10*time.Second, 50*time.Millisecond)
			require.Equal(t, orphan.ID, rep.TaskID)
			require.Equal(t, "max_steps_in_process", rep.Threshold)
			require.Equal(t, time.Second, rep.Limit)
			require.GreaterOrEqual(t, rep.Ratio, 1.0)
			require.Equal(t, tasker.StalenessDeadLetter, rep.Action)

			require.Eventually(t, func() bool { return dryReports.Load() >= 3 }, 10*time.Second, 20*time.Millisecond,
				"passes run, and report the task they would move")

			got, err := eng.GetTask(context.Background(), orphan.ID)
			require.NoError(t, err)
			require.Equal(t, tasker.TaskStepsInProcess, got.State)
			require.Empty(t, deadLetters(t, all[0].st, orphan.ID))
			require.Len(t, requireLegalTransitions(t, eng, orphan.ID), len(before), "no transition written")
		})
	}
}

// TestStalenessThresholdsFromLifecycle: a template's lifecycle (minutes) gives its thresholds and
// action, Config.Staleness.Templates overrides them field by field, and a template without a
// lifecycle gets the engine's defaults, report only.
func TestStalenessThresholdsFromLifecycle(t *testing.T) {
	t.Parallel()
	b := setupOn(t, backendMemory, func(c *tasker.Config) {
		c.Staleness.Templates = map[string]tasker.StalenessThresholds{"life/overridden": {MaxInProcess: 5 * time.Second, MaxDuration: tasker.StalenessNoLimit}}
	})
	const withLifecycle = `
name: %s
namespace_name: life
version: 1.0.0
lifecycle: {max_steps_in_process_minutes: 2, max_duration_minutes: 30, staleness_action: error}
steps:
  - {name: a, handler: {callable: nobody}}
`
	b.register(t, fmt.Sprintf(withLifecycle, "lifecycle"))
	b.register(t, fmt.Sprintf(withLifecycle, "overridden"))
	b.register(t, "name: plain\nnamespace_name: life\nversion: 1.0.0\nsteps:\n  - {name: a, handler: {callable: nobody}}\n")
	ids := map[string]uuid.UUID{}
	for _, name := range []string{"lifecycle", "overridden", "plain"} {
		ids[name] = b.create(t, "life", name, map[string]any{}).ID
	}
	rs, err := b.engine.Staleness(context.Background(), tasker.StalenessOptions{})
	require.NoError(t, err)
	require.Len(t, rs, 3)
	byName := map[string]tasker.StaleTaskReport{}
	for _, r := range rs {
		byName[r.Name] = r
		require.Equal(t, tasker.BandHealthy, r.Band)
		require.Equal(t, ids[r.Name], r.TaskID)
	}
	require.Equal(t, "max_steps_in_process", byName["lifecycle"].Threshold, "the state's threshold is nearer than the duration's")
	require.Equal(t, 2*time.Minute, byName["lifecycle"].Limit)
	require.Equal(t, tasker.StalenessError, byName["lifecycle"].Action)
	require.Equal(t, 5*time.Second, byName["overridden"].Limit)
	require.Equal(t, tasker.StalenessError, byName["overridden"].Action, "the lifecycle's action stays")
	require.Equal(t, tasker.MaxInProcessDefault, byName["plain"].Limit)
	require.Equal(t, tasker.StalenessReport, byName["plain"].Action, "no lifecycle: report only")

	// An engine with only version 2.0.0 of a template judges version 1.0.0's tasks by it; one
	// without the template at all, by the defaults.
	v2 := b.sibling(t)
	v2.register(t, strings.Replace(strings.Replace(fmt.Sprintf(withLifecycle, "lifecycle"), "1.0.0", "2.0.0", 1), "minutes: 2,", "minutes: 3,", 1))
	none := b.sibling(t)
	for _, c := range []struct {
		eng   *tasker.Engine
		limit time.Duration
	}{{v2.engine, 3 * time.Minute}, {none.engine, tasker.MaxInProcessDefault}} {
		rs, err := c.eng.Staleness(context.Background(), tasker.StalenessOptions{})
		require.NoError(t, err)
		found := false
		for _, r := range rs {
			if r.TaskID == ids["lifecycle"] {
				require.Equal(t, c.limit, r.Limit)
				found = true
			}
		}
		require.True(t, found)
	}
}

// TestStalenessConfigIsChecked: NewEngine refuses a StalenessConfig it cannot run.
func TestStalenessConfigIsChecked(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		field string
		s     tasker.StalenessConfig
	}{
		{"Staleness.Interval", tasker.StalenessConfig{Interval: time.Microsecond}},
		{"Staleness.BatchSize", tasker.StalenessConfig{BatchSize: -1}},
		{"Staleness.Defaults.Action", tasker.StalenessConfig{Defaults: tasker.StalenessThresholds{Action: "retry"}}},
		{`Staleness.Templates["orphan"]`, tasker.StalenessConfig{Templates: map[string]tasker.StalenessThresholds{"orphan": {}}}},
	} {
		_, err := tasker.NewEngine(tasker.Config{Store: memory.New(), Staleness: c.s})
		var ce *tasker.ConfigError
		require.ErrorAs(t, err, &ce, c.field)
		require.Equal(t, c.field, ce.Field)
		require.ErrorIs(t, err, tasker.ErrInvalidConfig)
	}
}

package tasker_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
)

const cronYAML = `
name: tick
namespace_name: cron
version: 1.0.0
steps:
  - name: tick
    handler: {callable: cron_tick}
`

// TestCronRunsExactlyOnceAcrossEngines: three engines share a database and a schedule firing
// every second; over several ticks, and a leader that stops midway, each scheduled time gets
// exactly one task.
func TestCronRunsExactlyOnceAcrossEngines(t *testing.T) {
	t.Parallel()
	for _, be := range []string{backendPostgres, backendMemory} {
		t.Run(be, func(t *testing.T) {
			t.Parallel()
			opt := func(c *tasker.Config) { c.LeaderTTL = time.Second }
			first := setupOn(t, be, opt)
			engines := []*bundle{first, first.sibling(t), first.sibling(t)}
			for _, b := range engines {
				b.register(t, cronYAML)
				b.engine.HandleFunc("cron_tick", func(context.Context, *tasker.Step) (any, error) { return "ok", nil })
				require.NoError(t, b.engine.AddSchedule(tasker.Schedule{Name: "every-second", Namespace: "cron", TaskName: "tick",
					Cron: "* * * * * *", Context: func(at time.Time) (any, error) { return map[string]any{"at": at.UTC()}, nil }}))
				b.start(t)
			}
			start := time.Now()
			time.Sleep(2500 * time.Millisecond)
			leader := leaderOf(t, engines)
			leader.stop() // another engine takes over
			time.Sleep(3 * time.Second)
			end := time.Now()
			for _, b := range engines {
				b.stop()
			}

			tasks, err := first.engine.ListTasks(context.Background(), tasker.ListOptions{Namespace: "cron", Limit: 1000})
			require.NoError(t, err)
			seen := map[time.Time]int{}
			for _, task := range tasks {
				var in struct{ At time.Time }
				require.NoError(t, json.Unmarshal(task.Context, &in))
				seen[in.At]++
				require.Equal(t, tasker.ScheduleRunKey("every-second", in.At), task.IdempotencyKey)
			}
			for at, n := range seen {
				require.Equal(t, 1, n, "the run at %s was created %d times", at, n)
			}
			// Every second in the window has its run, the handover's included (MissedSkip keeps the
			// latest missed run; a handover within one LeaderTTL misses at most a second or two).
			ticks := int(end.Sub(start) / time.Second)
			t.Logf("%s: %d runs over %d seconds, each once", be, len(seen), ticks)
			require.GreaterOrEqual(t, len(seen), ticks-3)
		})
	}
}

// leaderOf returns the engine that runs the scheduler now.
func leaderOf(t *testing.T, engines []*bundle) *bundle {
	t.Helper()
	for _, b := range engines {
		h, err := b.engine.Health(context.Background())
		require.NoError(t, err)
		for _, s := range h.Services {
			if s.Name == "scheduler" && s.Active {
				return b
			}
		}
	}
	t.Fatal("no engine runs the scheduler")
	return nil
}

// TestCronCatchUp: a schedule with MissedCatchUp creates, on its first pass, every run of its
// window, once; MissedSkip creates only the latest.
func TestCronCatchUp(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		b := setup(t)
		b.register(t, cronYAML)
		b.engine.HandleFunc("cron_tick", func(context.Context, *tasker.Step) (any, error) { return "ok", nil })
		// A task per minute of the last 10 for catch-up; one for skip. Both fire next in a minute at
		// the soonest, so the test sees only the look-back.
		require.NoError(t, b.engine.AddSchedule(tasker.Schedule{Name: "catch-up", Namespace: "cron", TaskName: "tick",
			Cron: "* * * * *", Missed: tasker.MissedCatchUp, CatchUpWindow: 10 * time.Minute,
			Context: func(at time.Time) (any, error) { return map[string]any{"at": at, "s": "catch-up"}, nil }}))
		require.NoError(t, b.engine.AddSchedule(tasker.Schedule{Name: "skip", Namespace: "cron", TaskName: "tick",
			Cron: "* * * * *", Context: func(at time.Time) (any, error) { return map[string]any{"at": at, "s": "skip"}, nil }}))
		require.Error(t, b.engine.AddSchedule(tasker.Schedule{Name: "bad", Namespace: "cron", TaskName: "tick", Cron: "not cron"}))
		b.start(t)
		var tasks []tasker.Task
		require.Eventually(t, func() bool {
			var err error
			tasks, err = b.engine.ListTasks(context.Background(), tasker.ListOptions{Namespace: "cron"})
			require.NoError(t, err)
			return len(tasks) >= 11
		}, 20*time.Second, 50*time.Millisecond)
		time.Sleep(SchedulePause)
		tasks, err := b.engine.ListTasks(context.Background(), tasker.ListOptions{Namespace: "cron"})
		require.NoError(t, err)
		count := map[string]int{}
		for _, task := range tasks {
			var in struct{ S string }
			require.NoError(t, json.Unmarshal(task.Context, &in))
			count[in.S]++
		}
		// The minute may turn during the test: one more run each.
		require.Contains(t, []int{10, 11}, count["catch-up"], "the runs of the last 10 minutes")
		require.Contains(t, []int{1, 2}, count["skip"], "only the latest missed run")
	})
}

// SchedulePause lets a few more scheduler passes run.
const SchedulePause = 2 * tasker.SchedulePassInterval

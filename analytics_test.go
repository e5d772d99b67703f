package tasker_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
)

const analyticsYAML = `
name: report
namespace_name: stats
version: 1.0.0
steps:
  - {name: quick, handler: {callable: quick}}
  - {name: slow, handler: {callable: slow}, dependencies: [quick]}
  - {name: flaky, handler: {callable: flaky}, dependencies: [quick], retry: {max_attempts: 3, backoff: none}}
`

// TestPerformanceAndBottlenecks runs tasks whose steps take known minimum times, and one that
// fails the first attempt of each task, on PostgreSQL and in memory: the counts are exact, and the
// slowest and most retried steps come first.
func TestPerformanceAndBottlenecks(t *testing.T) {
	t.Parallel()
	for _, be := range []string{backendPostgres, backendMemory} {
		t.Run(be, func(t *testing.T) {
			t.Parallel()
			b := setupOn(t, be)
			b.register(t, analyticsYAML)
			b.engine.HandleFunc("quick", func(context.Context, *tasker.Step) (any, error) { return 1, nil })
			b.engine.HandleFunc("slow", func(context.Context, *tasker.Step) (any, error) {
				time.Sleep(50 * time.Millisecond)
				return 2, nil
			})
			var calls atomic.Int32
			b.engine.HandleFunc("flaky", func(_ context.Context, s *tasker.Step) (any, error) {
				calls.Add(1)
				if s.Attempt == 1 {
					return nil, errors.New("first attempt fails")
				}
				return 3, nil
			})
			b.start(t)
			since := time.Now().Add(-time.Minute)
			const n = 4
			for i := range n {
				task := b.create(t, "stats", "report", map[string]any{"i": i})
				require.Equal(t, tasker.TaskComplete, b.wait(t, task.ID).State)
			}
			ctx := context.Background()
			w := tasker.AnalyticsWindow{Since: since, Namespace: "stats"}
			p, err := b.engine.Performance(ctx, w)
			require.NoError(t, err)
			require.Len(t, p.Templates, 1)
			tp := p.Templates[0]
			require.Equal(t, "stats/report/1.0.0", tp.Namespace+"/"+tp.Name+"/"+tp.Version)
			require.Equal(t, [4]int{n, n, 0, 0}, [4]int{tp.Tasks, tp.Completed, tp.Failed, tp.Cancelled})
			require.Equal(t, 1.0, tp.SuccessRate)
			require.GreaterOrEqual(t, tp.DurationP50, 50*time.Millisecond, "a task lasts at least its slow step")
			require.GreaterOrEqual(t, tp.DurationP95, tp.DurationP50)

			require.Len(t, p.Steps, 3)
			steps := map[string]tasker.StepPerformance{}
			for _, s := range p.Steps {
				steps[s.Step] = s
				require.Equal(t, [3]int{n, n, 0}, [3]int{s.Steps, s.Completed, s.Failed}, s.Step)
				require.Equal(t, 1.0, s.SuccessRate, s.Step)
			}
			require.Equal(t, []string{"flaky", "quick", "slow"}, []string{p.Steps[0].Step, p.Steps[1].Step, p.Steps[2].Step})
			require.Equal(t, [2]int{2 * n, n}, [2]int{steps["flaky"].Attempts, steps["flaky"].Retries})
			require.Equal(t, [2]int{n, 0}, [2]int{steps["slow"].Attempts, steps["slow"].Retries})
			require.GreaterOrEqual(t, steps["slow"].DurationP50, 50*time.Millisecond)
			require.Greater(t, steps["slow"].DurationP50, steps["quick"].DurationP95)

			bn, err := b.engine.Bottlenecks(ctx, w, 2)
			require.NoError(t, err)
			require.Len(t, bn.Slowest, 2)
			require.Equal(t, "slow", bn.Slowest[0].Step)
			require.GreaterOrEqual(t, bn.Slowest[0].DurationP95, bn.Slowest[1].DurationP95)
			require.Len(t, bn.MostRetried, 1)
			require.Equal(t, "stats/report/flaky", bn.MostRetried[0].String())

			empty, err := b.engine.Performance(ctx, tasker.AnalyticsWindow{Since: time.Now().Add(time.Hour)})
			require.NoError(t, err)
			require.Empty(t, empty.Templates)
			require.Empty(t, empty.Steps)
		})
	}
}

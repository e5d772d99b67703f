package memory

import (
	"cmp"
	"context"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
)

// Analytics returns the statistics of the tasks created in the window, computed as
// store/postgres's SQL does (percentile_cont's linear interpolation, on microseconds).
func (s *Store) Analytics(ctx context.Context, p store.AnalyticsParams) (*store.Analytics, error) {
	type stepKey struct{ ns, task, step string }
	type acc[A any] struct {
		a         A
		durations []float64
	}
	tmpls := map[templateKey]*acc[store.TemplateAnalytics]{}
	steps := map[stepKey]*acc[store.StepAnalytics]{}
	err := s.read(ctx, func() error {
		for _, t := range s.tasks {
			c := &t.t
			if (!p.Since.IsZero() && c.CreatedAt.Before(p.Since)) || (!p.Until.IsZero() && !c.CreatedAt.Before(p.Until)) ||
				(p.Namespace != "" && c.Namespace != p.Namespace) {
				continue
			}
			k := templateKey{c.Namespace, c.Name, c.Version}
			ta := tmpls[k]
			if ta == nil {
				ta = &acc[store.TemplateAnalytics]{a: store.TemplateAnalytics{Namespace: c.Namespace, Name: c.Name, Version: c.Version}}
				tmpls[k] = ta
			}
			ta.a.Tasks++
			switch c.State {
			case statemachine.TaskComplete:
				ta.a.Completed++
				if c.CompletedAt != nil {
					ta.durations = append(ta.durations, microsOf(c.CompletedAt.Sub(c.CreatedAt)))
				}
			case statemachine.TaskError:
				ta.a.Failed++
			case statemachine.TaskCancelled:
				ta.a.Cancelled++
			}
			for _, st := range t.steps {
				sk := stepKey{c.Namespace, c.Name, st.s.TemplateStep}
				sa := steps[sk]
				if sa == nil {
					sa = &acc[store.StepAnalytics]{a: store.StepAnalytics{Namespace: c.Namespace, TaskName: c.Name, Step: st.s.TemplateStep}}
					steps[sk] = sa
				}
				sa.a.Steps++
				sa.a.Attempts += st.s.Attempts
				sa.a.Retries += max(st.s.Attempts-1, 0)
				switch st.s.State {
				case statemachine.StepComplete:
					sa.a.Completed++
					if st.s.StartedAt != nil && st.s.CompletedAt != nil && !st.s.CompletedAt.Before(*st.s.StartedAt) {
						sa.durations = append(sa.durations, microsOf(st.s.CompletedAt.Sub(*st.s.StartedAt)))
					}
				case statemachine.StepError:
					sa.a.Failed++
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := &store.Analytics{}
	for _, ta := range tmpls {
		ta.a.DurationP50, ta.a.DurationP95 = percentile(ta.durations, 0.5), percentile(ta.durations, 0.95)
		out.Templates = append(out.Templates, ta.a)
	}
	for _, sa := range steps {
		sa.a.DurationP50, sa.a.DurationP95 = percentile(sa.durations, 0.5), percentile(sa.durations, 0.95)
		out.Steps = append(out.Steps, sa.a)
	}
	slices.SortFunc(out.Templates, func(a, b store.TemplateAnalytics) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name), strings.Compare(a.Version, b.Version))
	})
	slices.SortFunc(out.Steps, func(a, b store.StepAnalytics) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.TaskName, b.TaskName), strings.Compare(a.Step, b.Step))
	})
	return out, nil
}

func microsOf(d time.Duration) float64 { return float64(d / time.Microsecond) }

// percentile is PostgreSQL's percentile_cont(q) over values in microseconds: the linear
// interpolation between the two values around position q·(n-1) of the sorted values; 0 for none.
func percentile(values []float64, q float64) time.Duration {
	if len(values) == 0 {
		return 0
	}
	slices.Sort(values)
	pos := q * float64(len(values)-1)
	lo := math.Floor(pos)
	v := values[int(lo)]
	if hi := math.Ceil(pos); hi != lo {
		v += (values[int(hi)] - v) * (pos - lo)
	}
	return time.Duration(math.Round(v)) * time.Microsecond
}

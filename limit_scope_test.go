package tasker_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/store"
	"github.com/tasker-systems/tasker/store/memory"
)

const scopedYAML = `
name: %s
namespace_name: scoped
version: 1.0.0
steps:
  - name: work
    handler: {callable: scoped_work}
`

// peaks counts the handlers running at once per group, and the most seen.
type peaks struct {
	mu      sync.Mutex
	running map[string]int
	peak    map[string]int
	total   int // running in all groups of the wide template
	wide    int // the most of total seen
}

func (p *peaks) enter(group string, wide bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.running[group]++
	p.peak[group] = max(p.peak[group], p.running[group])
	if wide {
		p.total++
		p.wide = max(p.wide, p.total)
	}
}

func (p *peaks) leave(group string, wide bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.running[group]--
	if wide {
		p.total--
	}
}

// TestTemplateAndContextKeyLimits: three engines of 10 workers share a namespace with two
// templates, a limit of 2 in progress on template narrow and a limit of 1 in progress per
// customer (a context field) on template wide. Handlers never run more than the limits allow in
// a group (nor does the store count more, sampled under the limit's lock), every group reaches
// its limit, different customers run at once, and no step spends more than one attempt. The
// tasks without a customer share one group; 7 and "7" are one customer.
func TestTemplateAndContextKeyLimits(t *testing.T) {
	t.Parallel()
	for _, be := range []string{backendPostgres, backendRabbitMQ, backendMemory} {
		t.Run(be, func(t *testing.T) {
			t.Parallel()
			const work = 30 * time.Millisecond
			opt := func(c *tasker.Config) {
				c.Concurrency = 10
				c.Limits = []tasker.Limit{
					{Namespace: "scoped", Template: "narrow", Concurrency: 2},
					{Namespace: "scoped", Template: "wide", ContextKey: "customer", Concurrency: 1},
				}
			}
			first := setupOn(t, be, opt)
			engines := []*bundle{first, first.sibling(t), first.sibling(t)}
			p := &peaks{running: map[string]int{}, peak: map[string]int{}}
			for _, b := range engines {
				b.register(t, fmt.Sprintf(scopedYAML, "narrow"))
				b.register(t, fmt.Sprintf(scopedYAML, "wide"))
				b.engine.HandleFunc("scoped_work", func(_ context.Context, s *tasker.Step) (any, error) {
					group, wide := "narrow", s.TaskName == "wide"
					if wide {
						var in struct {
							Customer any `json:"customer"`
						}
						require.NoError(t, s.Input(&in))
						group = fmt.Sprintf("wide:%v", in.Customer)
					}
					p.enter(group, wide)
					time.Sleep(work)
					p.leave(group, wide)
					return nil, nil
				})
			}
			ctx := context.Background()
			var ids []uuid.UUID
			create := func(name string, in map[string]any) {
				task, err := first.engine.CreateTask(ctx, tasker.TaskRequest{Namespace: "scoped", Name: name, Context: in})
				require.NoError(t, err)
				ids = append(ids, task.ID)
			}
			for i := range 5 {
				create("narrow", map[string]any{"i": i})
				create("narrow", map[string]any{"i": i, "customer": "a"}) // the key does not narrow narrow's limit
				for _, c := range []string{"a", "b", "c"} {
					create("wide", map[string]any{"i": i, "customer": c})
				}
				create("wide", map[string]any{"i": i}) // no customer: a group of its own
				if i%2 == 0 {
					create("wide", map[string]any{"i": i, "customer": 7})
				} else {
					create("wide", map[string]any{"i": i, "customer": "7"})
				}
			}
			// Sample the store's own count of narrow's steps in progress, under the limit's lock.
			lim, ok := first.st.(store.Limiter)
			require.True(t, ok)
			sctx, stopSampling := context.WithCancel(ctx)
			var wg sync.WaitGroup
			var samples, overs, maxSeen int
			wg.Add(1)
			go func() {
				defer wg.Done()
				for sctx.Err() == nil {
					h, err := lim.LockLimit(sctx, store.LockLimitParams{Key: "namespace:scoped", Namespace: "scoped",
						Scopes: []store.LimitScope{{Template: "narrow"}}})
					if err == nil {
						h.Unlock()
						samples++
						maxSeen = max(maxSeen, h.Counts[0].InProgress)
						if h.Counts[0].InProgress > 2 {
							overs++
						}
					}
					time.Sleep(3 * time.Millisecond)
				}
			}()
			for _, b := range engines {
				b.start(t)
			}
			for _, id := range ids {
				task := first.wait(t, id)
				require.Equal(t, tasker.TaskComplete, task.State)
				require.Equal(t, 1, task.Steps[0].Attempts, "a step held back by a limit spends no attempt")
			}
			stopSampling()
			wg.Wait()
			p.mu.Lock()
			defer p.mu.Unlock()
			t.Logf("%s: peaks by group %v; wide customers at once %d; store samples %d, most narrow in progress %d", be, p.peak, p.wide, samples, maxSeen)
			require.Zero(t, overs, "store samples of narrow over its limit of 2")
			require.Equal(t, 2, p.peak["narrow"], "narrow: at most 2 at once, and the work filled both slots")
			for _, g := range []string{"wide:a", "wide:b", "wide:c", "wide:7", "wide:<nil>"} {
				require.Equal(t, 1, p.peak[g], "%s: one at a time", g)
			}
			require.Len(t, p.peak, 6, "groups: narrow, a, b, c, 7 (7 and \"7\" alike) and no customer")
			require.GreaterOrEqual(t, p.wide, 3, "customers run at once: the limit is per customer")
		})
	}
}

const keyRateYAML = `
name: job
namespace_name: keyrated
version: 1.0.0
steps:
  - name: work
    handler: {callable: keyrated_work}
`

// TestContextKeyRateLimit: three engines share a rate limit of 10 step starts per second per
// customer; with a backlog for two customers, each customer's recorded starts land within 10 %
// of 10/s over 3 s of steady state and no second holds more than 10 of one customer's starts,
// while both customers together run at twice that.
func TestContextKeyRateLimit(t *testing.T) {
	t.Parallel()
	for _, be := range []string{backendPostgres, backendMemory} {
		t.Run(be, func(t *testing.T) {
			t.Parallel()
			const rate = 10
			opt := func(c *tasker.Config) {
				c.Concurrency = 10
				c.Limits = []tasker.Limit{{Namespace: "keyrated", ContextKey: "customer", Rate: tasker.RateLimit{N: rate, Per: time.Second}}}
			}
			first := setupOn(t, be, opt)
			engines := []*bundle{first, first.sibling(t), first.sibling(t)}
			var mu sync.Mutex
			var firstStart time.Time
			for _, b := range engines {
				b.register(t, keyRateYAML)
				b.engine.HandleFunc("keyrated_work", func(context.Context, *tasker.Step) (any, error) {
					mu.Lock()
					if firstStart.IsZero() {
						firstStart = time.Now()
					}
					mu.Unlock()
					return nil, nil
				})
			}
			ctx := context.Background()
			ids := map[string][]uuid.UUID{}
			for i := range 60 {
				for _, c := range []string{"x", "y"} {
					task, err := first.engine.CreateTask(ctx, tasker.TaskRequest{Namespace: "keyrated", Name: "job", Context: map[string]any{"i": i, "customer": c}})
					require.NoError(t, err)
					ids[c] = append(ids[c], task.ID)
				}
			}
			for _, b := range engines {
				b.start(t)
			}
			require.Eventually(t, func() bool {
				mu.Lock()
				defer mu.Unlock()
				return !firstStart.IsZero() && time.Since(firstStart) > 4200*time.Millisecond
			}, 30*time.Second, 10*time.Millisecond)
			for _, b := range engines {
				b.stop()
			}
			for _, c := range []string{"x", "y"} {
				measured, worst := startRate(recordedStarts(t, first.engine, ids[c]))
				t.Logf("%s, customer %s: %.1f starts/s over 3 s of steady state (limit %d/s per customer); at most %d in a second", be, c, measured, rate, worst)
				require.InDelta(t, rate, measured, rate*0.1, "customer %s: the measured rate lands within 10 %% of the limit", c)
				require.LessOrEqual(t, worst, rate, "customer %s: no second holds more starts than the limit", c)
			}
		})
	}
}

// TestLimitsConfig: Config.Limits refuses what could limit nothing or contradicts itself, with a
// *ConfigError naming the field.
func TestLimitsConfig(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		cfg    func(*tasker.Config)
		field  string
		reason string
	}{
		{"no namespace", func(c *tasker.Config) { c.Limits = []tasker.Limit{{Concurrency: 1}} }, "Limits[0].Namespace", "required"},
		{"nothing limited", func(c *tasker.Config) { c.Limits = []tasker.Limit{{Namespace: "n"}} }, "Limits[0]", "limits nothing"},
		{"negative", func(c *tasker.Config) { c.Limits = []tasker.Limit{{Namespace: "n", Concurrency: -1}} }, "Limits[0].Concurrency", "negative"},
		{"rate without period", func(c *tasker.Config) {
			c.Limits = []tasker.Limit{{Namespace: "n", Rate: tasker.RateLimit{N: 3}}}
		}, "Limits[0].Rate", "positive Per"},
		{"NUL in key", func(c *tasker.Config) {
			c.Limits = []tasker.Limit{{Namespace: "n", ContextKey: "a\x00b", Concurrency: 1}}
		}, "Limits[0].ContextKey", "UTF-8"},
		{"bad UTF-8 template", func(c *tasker.Config) {
			c.Limits = []tasker.Limit{{Namespace: "n", Template: "\xff", Concurrency: 1}}
		}, "Limits[0].Template", "UTF-8"},
		{"twice", func(c *tasker.Config) {
			c.Limits = []tasker.Limit{{Namespace: "n", Template: "t", Concurrency: 1}, {Namespace: "n", Template: "t", Concurrency: 2}}
		}, "Limits[1]", "same steps as Limits[0]"},
		{"also a global", func(c *tasker.Config) {
			c.GlobalConcurrency = map[string]int{"n": 2}
			c.Limits = []tasker.Limit{{Namespace: "n", Rate: tasker.RateLimit{N: 3, Per: time.Second}}}
		}, "Limits[0]", "GlobalConcurrency or GlobalRate"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := tasker.Config{Store: memory.New()}
			c.cfg(&cfg)
			_, err := tasker.NewEngine(cfg)
			require.ErrorIs(t, err, tasker.ErrInvalidConfig)
			var ce *tasker.ConfigError
			require.ErrorAs(t, err, &ce)
			require.Equal(t, c.field, ce.Field)
			require.Contains(t, ce.Reason, c.reason)
		})
	}
	// The same template limited per key and as a whole: two groups, both allowed.
	_, err := tasker.NewEngine(tasker.Config{Store: memory.New(), Limits: []tasker.Limit{
		{Namespace: "n", Template: "t", Concurrency: 4}, {Namespace: "n", Template: "t", ContextKey: "k", Concurrency: 1}}})
	require.NoError(t, err)
}

const remoteLimitYAML = `
name: job
namespace_name: remotelimited
version: 1.0.0
steps:
  - name: work
    handler: {callable: elsewhere}
`

// TestRemoteClaimHonoursLimits: a remote worker's claim (Engine.RemoteClaim, the worker API)
// takes the global limit's lock like an engine's own claim. With a limit of 1 in progress per
// customer, a second step of the same customer is not handed out while the first runs, one of
// another customer is, and once the first is reported the second comes, at its first attempt.
func TestRemoteClaimHonoursLimits(t *testing.T) {
	t.Parallel()
	for _, be := range []string{backendPostgres, backendMemory} {
		t.Run(be, func(t *testing.T) {
			t.Parallel()
			b := setupOn(t, be, func(c *tasker.Config) {
				c.Limits = []tasker.Limit{{Namespace: "remotelimited", ContextKey: "customer", Concurrency: 1}}
			})
			b.register(t, remoteLimitYAML)
			ctx := context.Background()
			a1 := b.create(t, "remotelimited", "job", map[string]any{"customer": "a"})
			a2 := b.create(t, "remotelimited", "job", map[string]any{"customer": "a", "n": 2})
			claim := func(wait time.Duration) *tasker.RemoteStep {
				s, err := b.engine.RemoteClaim(ctx, tasker.RemoteClaimParams{WorkerID: "remote", Namespace: "remotelimited",
					Callables: []string{"elsewhere"}, Lease: 10 * time.Second, Wait: wait})
				require.NoError(t, err)
				return s
			}
			first := claim(5 * time.Second)
			require.NotNil(t, first)
			require.Contains(t, []uuid.UUID{a1.ID, a2.ID}, first.TaskID)
			require.Nil(t, claim(400*time.Millisecond), "customer a has a step in progress: its other step waits")
			bTask := b.create(t, "remotelimited", "job", map[string]any{"customer": "b"})
			other := claim(5 * time.Second)
			require.NotNil(t, other, "customer b is under its limit")
			require.Equal(t, bTask.ID, other.TaskID)
			require.NoError(t, b.engine.RemoteReport(ctx, first.StepID, "remote", first.Attempt, tasker.RemoteOutcome{Result: []byte(`{}`)}))
			second := claim(5 * time.Second)
			require.NotNil(t, second, "customer a's first step is done: its second comes")
			require.NotEqual(t, first.TaskID, second.TaskID)
			require.Equal(t, 1, second.Attempt, "held back by the limit without spending an attempt")
		})
	}
}

package tasker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/store/memory"
)

// TestNewEngineRefusesBadConfig: durations whose timers would be non-positive (a panic in a
// library goroutine: "non-positive interval for NewTicker"), negative values and names the
// database cannot store are refused by NewEngine with a *ConfigError naming the field. It is not
// parallel so that goleak can tell that NewEngine started no goroutine.
func TestNewEngineRefusesBadConfig(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	cases := []struct {
		field string
		cfg   tasker.Config
	}{
		{"Lease", tasker.Config{Lease: time.Nanosecond}},
		{"Lease", tasker.Config{Lease: tasker.LeaseMin - 1}},
		{"Lease", tasker.Config{Lease: -time.Second}},
		{"LeaderTTL", tasker.Config{LeaderTTL: 2 * time.Nanosecond}},
		{"LeaderTTL", tasker.Config{LeaderTTL: -time.Second}},
		{"RescueInterval", tasker.Config{RescueInterval: time.Nanosecond}},
		{"RepublishAfter", tasker.Config{RepublishAfter: 2 * time.Nanosecond}},
		{"RepublishAfter", tasker.Config{RepublishAfter: -time.Minute}},
		{"ShutdownTimeout", tasker.Config{ShutdownTimeout: -time.Second}},
		{"Concurrency", tasker.Config{Concurrency: -1}},
		{"MaxPayloadBytes", tasker.Config{MaxPayloadBytes: -1}},
		{"MaxDecisionSteps", tasker.Config{MaxDecisionSteps: -5}},
		{`NamespaceConcurrency["shop"]`, tasker.Config{NamespaceConcurrency: map[string]int{"shop": -1}}},
		{"WorkerID", tasker.Config{WorkerID: "host\x00"}},
		{"WorkerID", tasker.Config{WorkerID: strings.Repeat("w", 3000)}},
		{"Namespaces[1]", tasker.Config{Namespaces: []string{"shop", "bad\xff"}}},
		{"Namespaces[0]", tasker.Config{Namespaces: []string{""}}},
	}
	for _, c := range cases {
		c.cfg.Store = memory.New()
		var (
			eng *tasker.Engine
			err error
		)
		require.NotPanics(t, func() { eng, err = tasker.NewEngine(c.cfg) }, "Config.%s", c.field)
		require.ErrorIs(t, err, tasker.ErrInvalidConfig, "Config.%s", c.field)
		require.Nil(t, eng)
		var ce *tasker.ConfigError
		require.True(t, errors.As(err, &ce), "%v", err)
		require.Equal(t, c.field, ce.Field)
		require.Contains(t, err.Error(), "Config."+c.field)
	}

	// The minimums themselves are accepted, and an engine with them runs.
	eng, err := tasker.NewEngine(tasker.Config{Store: memory.New(), Lease: tasker.LeaseMin, LeaderTTL: tasker.LeaderTTLMin,
		RescueInterval: tasker.RescueIntervalMin, RepublishAfter: tasker.RepublishAfterMin, Logger: testLogger()})
	require.NoError(t, err)
	tmpl, err := tasker.ParseTemplate([]byte(`
name: tiny
namespace_name: cfg
steps:
  - {name: a, handler: {callable: slow}}
`))
	require.NoError(t, err)
	require.NoError(t, eng.Register(tmpl))
	eng.HandleFunc("slow", func(ctx context.Context, s *tasker.Step) (any, error) {
		time.Sleep(2 * tasker.LeaseMin) // outlives a lease: heartbeats must run
		return "ok", nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.RunWorkers(ctx) }()
	task, err := eng.CreateTask(context.Background(), tasker.TaskRequest{Namespace: "cfg", Name: "tiny"})
	require.NoError(t, err)
	wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer wcancel()
	task, err = eng.WaitTask(wctx, task.ID)
	require.NoError(t, err)
	require.Equal(t, tasker.TaskComplete, task.State)
	cancel()
	require.NoError(t, <-done)
}

// chainTemplate is a chain of n steps, each depending on the one before.
func chainTemplate(n int) *tasker.Template {
	t := &tasker.Template{Namespace: "chain", Name: fmt.Sprintf("chain%d", n), Version: "1.0.0"}
	for i := 0; i < n; i++ {
		s := tasker.StepTemplate{Name: fmt.Sprintf("s%05d", i), Handler: tasker.HandlerSpec{Callable: "noop"}}
		if i > 0 {
			s.Dependencies = []string{fmt.Sprintf("s%05d", i-1)}
		}
		t.Steps = append(t.Steps, s)
	}
	return t
}

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestRegisterChainMemoryIsLinear: a registered 10,000-step chain keeps memory linear in its
// length (it kept about 800 MB when every step stored its full ancestor list). Not parallel, so
// that no other test allocates while the heap is measured.
func TestRegisterChainMemoryIsLinear(t *testing.T) {
	tmpl := chainTemplate(10_000)
	eng, err := tasker.NewEngine(tasker.Config{Store: memory.New()})
	require.NoError(t, err)
	before := liveHeap()
	require.NoError(t, eng.Register(tmpl))
	grown := int64(liveHeap()) - int64(before)
	runtime.KeepAlive(eng)
	t.Logf("heap kept by a registered 10,000-step chain: %.1f MB", float64(grown)/(1<<20))
	require.Less(t, grown, int64(50<<20), "a registered 10,000-step chain keeps %d bytes", grown)
}

// BenchmarkRegisterChain10000 registers a 10,000-step chain; it reports the heap each engine keeps.
func BenchmarkRegisterChain10000(b *testing.B) {
	tmpl := chainTemplate(10_000)
	var kept int64
	for i := 0; i < b.N; i++ {
		eng, err := tasker.NewEngine(tasker.Config{Store: memory.New()})
		require.NoError(b, err)
		b.StopTimer()
		before := liveHeap()
		b.StartTimer()
		require.NoError(b, eng.Register(tmpl))
		b.StopTimer()
		kept = int64(liveHeap()) - int64(before)
		runtime.KeepAlive(eng)
		b.StartTimer()
	}
	b.ReportMetric(float64(kept)/(1<<20), "MB-kept/engine")
}

// TestHandlerSeesEveryAncestor: a step's handler sees the results of all its ancestors (not only
// its parents), computed from the template at the claim, the same for every task.
func TestHandlerSeesEveryAncestor(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		b := setup(t)
		b.register(t, `
name: anc
namespace_name: anc
version: 1.0.0
steps:
  - {name: a, handler: {callable: names}}
  - {name: b, handler: {callable: names}, dependencies: [a]}
  - {name: c, handler: {callable: names}, dependencies: [b]}
  - {name: d, handler: {callable: names}}
  - {name: e, handler: {callable: names}, dependencies: [c, d]}
`)
		b.engine.HandleFunc("names", func(ctx context.Context, s *tasker.Step) (any, error) {
			return s.DependencyNames(), nil
		})
		b.start(t)
		want := map[string]string{"a": `[]`, "b": `["a"]`, "c": `["a","b"]`, "d": `[]`, "e": `["a","b","c","d"]`}
		for i := 0; i < 2; i++ { // the second task's claims find the ancestors cached
			task := b.wait(t, b.create(t, "anc", "anc", map[string]any{"i": i}).ID)
			require.Equal(t, tasker.TaskComplete, task.State)
			for _, s := range task.Steps {
				require.JSONEq(t, want[s.Name], string(s.Result), "step %s", s.Name)
			}
		}
	})
}

// TestRegisterRefusesNamesTheDatabaseCannotStore: a NUL, invalid UTF-8 or a name longer than
// MaxNameBytes, anywhere a template carries a name, is refused at Register (it used to register,
// and then every CreateTask and RunWorkers' start failed in the database).
func TestRegisterRefusesNamesTheDatabaseCannotStore(t *testing.T) {
	t.Parallel()
	b := setup(t)
	long := strings.Repeat("x", 3000)
	cases := []struct {
		name string
		code string
		edit func(*tasker.Template)
	}{
		{"nul namespace", tasker.CodeInvalidEncoding, func(t *tasker.Template) { t.Namespace = "ns\x00" }},
		{"invalid utf-8 name", tasker.CodeInvalidEncoding, func(t *tasker.Template) { t.Name = "n\xc3\x28" }},
		{"nul version", tasker.CodeInvalidEncoding, func(t *tasker.Template) { t.Version = "1.0\x00" }},
		{"long namespace", tasker.CodeNameTooLong, func(t *tasker.Template) { t.Namespace = long }},
		{"long name", tasker.CodeNameTooLong, func(t *tasker.Template) { t.Name = long }},
		{"long version", tasker.CodeNameTooLong, func(t *tasker.Template) { t.Version = long }},
		{"nul step name", tasker.CodeInvalidEncoding, func(t *tasker.Template) {
			t.Steps[0].Name = "a\x00"
			t.Steps[1].Dependencies = []string{"a\x00"}
		}},
		{"invalid utf-8 step name", tasker.CodeInvalidEncoding, func(t *tasker.Template) {
			t.Steps[1].Name = "\xff"
		}},
		{"long step name", tasker.CodeNameTooLong, func(t *tasker.Template) {
			t.Steps[0].Name = long
			t.Steps[1].Dependencies = []string{long}
		}},
		{"nul callable", tasker.CodeInvalidEncoding, func(t *tasker.Template) { t.Steps[0].Handler.Callable = "h\x00" }},
		{"long callable", tasker.CodeNameTooLong, func(t *tasker.Template) { t.Steps[1].Handler.Callable = long }},
		{"nul in a description", tasker.CodeInvalidEncoding, func(t *tasker.Template) { t.Description = "about\x00" }},
		{"nul in an initialization", tasker.CodeInvalidEncoding, func(t *tasker.Template) {
			t.Steps[0].Handler.Initialization = map[string]any{"k": "v\x00"}
		}},
		{"a number out of numeric's range in an initialization", tasker.CodeInvalidEncoding, func(t *tasker.Template) {
			t.Steps[0].Handler.Initialization = map[string]any{"k": json.Number("1e1000000")}
		}},
		{"a lone surrogate in an initialization", tasker.CodeInvalidEncoding, func(t *tasker.Template) {
			t.Steps[0].Handler.Initialization = map[string]any{"k": json.RawMessage(`"\ud800"`)}
		}},
	}
	for _, c := range cases {
		tmpl := &tasker.Template{Namespace: "names", Name: "t", Version: "1.0.0", Steps: []tasker.StepTemplate{
			{Name: "a", Handler: tasker.HandlerSpec{Callable: "noop"}},
			{Name: "b", Handler: tasker.HandlerSpec{Callable: "noop"}, Dependencies: []string{"a"}},
		}}
		c.edit(tmpl)
		err := b.engine.Register(tmpl)
		require.ErrorIs(t, err, tasker.ErrInvalidTemplate, c.name)
		var ve *tasker.ValidationError
		require.True(t, errors.As(err, &ve), "%s: %v", c.name, err)
		require.True(t, ve.Has(c.code), "%s: %v", c.name, err)
		require.Less(t, len(err.Error()), 2000, "%s: the error quotes names shortened", c.name)
	}
	// Nothing was registered: RunWorkers has no namespace to serve.
	_, err := b.engine.CreateTask(context.Background(), tasker.TaskRequest{Namespace: "names", Name: "t"})
	require.ErrorIs(t, err, tasker.ErrTemplateNotFound)

	// Names at the limit fit the database: a task of them runs.
	max := strings.Repeat("n", tasker.MaxNameBytes)
	tmpl := &tasker.Template{Namespace: max, Name: max, Version: max, Steps: []tasker.StepTemplate{
		{Name: max, Handler: tasker.HandlerSpec{Callable: max}},
		{Name: "b", Handler: tasker.HandlerSpec{Callable: max}, Dependencies: []string{max}},
	}}
	require.NoError(t, b.engine.Register(tmpl))
	b.engine.HandleFunc(max, func(ctx context.Context, s *tasker.Step) (any, error) { return s.Name == max || s.Name == "b", nil })
	b.start(t)
	task := b.wait(t, b.create(t, max, max, nil).ID)
	require.Equal(t, tasker.TaskComplete, task.State)
}

// TestRegisterRefusesANamespaceTheBrokerCannotName: with RabbitMQ, a namespace whose broker queue
// names (prefix, name and the longest delay-queue suffix) pass AMQP's 255 bytes is refused at
// Register; it used to register, and its tasks were created but never ran.
func TestRegisterRefusesANamespaceTheBrokerCannotName(t *testing.T) {
	t.Parallel()
	b := setupOn(t, backendRabbitMQ)
	ns := strings.Repeat("r", 240)
	err := b.engine.Register(&tasker.Template{Namespace: ns, Name: "t", Steps: []tasker.StepTemplate{
		{Name: "a", Handler: tasker.HandlerSpec{Callable: "noop"}}}})
	require.ErrorIs(t, err, tasker.ErrInvalidTemplate)
	var ve *tasker.ValidationError
	require.True(t, errors.As(err, &ve), "%v", err)
	require.True(t, ve.Has(tasker.CodeQueueNameRejected), "%v", err)
	_, err = b.engine.CreateTask(context.Background(), tasker.TaskRequest{Namespace: ns, Name: "t"})
	require.ErrorIs(t, err, tasker.ErrTemplateNotFound)

	// A namespace that fits is accepted, and so are the same names on PostgreSQL's queue.
	require.NoError(t, b.engine.Register(&tasker.Template{Namespace: strings.Repeat("r", 200), Name: "t", Steps: []tasker.StepTemplate{
		{Name: "a", Handler: tasker.HandlerSpec{Callable: "noop"}}}}))
	pg := setup(t)
	require.NoError(t, pg.engine.Register(&tasker.Template{Namespace: ns, Name: "t", Steps: []tasker.StepTemplate{
		{Name: "a", Handler: tasker.HandlerSpec{Callable: "noop"}}}}))

	// Config.Namespaces is checked against the broker too.
	cfg := b.cfg
	cfg.Namespaces = []string{"ok", ns}
	_, err = tasker.NewEngine(cfg)
	require.ErrorIs(t, err, tasker.ErrInvalidConfig)
}

const conflictV1 = `
name: order
namespace_name: shop
version: 1.0.0
steps:
  - {name: a, handler: {callable: noop}}
`

const conflictV1Changed = `
name: order
namespace_name: shop
version: 1.0.0
steps:
  - {name: a, handler: {callable: noop}}
  - {name: b, handler: {callable: noop}, dependencies: [a]}
`

func parse(t testing.TB, yaml string) *tasker.Template {
	t.Helper()
	tmpl, err := tasker.ParseTemplate([]byte(yaml))
	require.NoError(t, err)
	return tmpl
}

// TestRegisterSameVersionDifferentBodyIsAConflict: versions are immutable in an engine. The same
// definition again is a no-op; a changed one under the same version is refused with a
// *TemplateConflictError, and the engine keeps running the first.
func TestRegisterSameVersionDifferentBodyIsAConflict(t *testing.T) {
	t.Parallel()
	b := setupOn(t, backendMemory)
	require.NoError(t, b.engine.Register(parse(t, conflictV1)))
	require.NoError(t, b.engine.Register(parse(t, conflictV1)), "the same definition again")

	err := b.engine.Register(parse(t, conflictV1Changed))
	require.ErrorIs(t, err, tasker.ErrTemplateConflict)
	var ce *tasker.TemplateConflictError
	require.True(t, errors.As(err, &ce), "%v", err)
	require.Equal(t, []string{"shop", "order", "1.0.0"}, []string{ce.Namespace, ce.Name, ce.Version})
	require.NotEqual(t, ce.Existing, ce.Proposed)
	require.NotEmpty(t, ce.Existing)
	require.Contains(t, err.Error(), "new version")

	// The first definition stays: a task has one step.
	b.engine.HandleFunc("noop", func(context.Context, *tasker.Step) (any, error) { return nil, nil })
	b.start(t)
	task := b.wait(t, b.create(t, "shop", "order", nil).ID)
	require.Equal(t, tasker.TaskComplete, task.State)
	require.Len(t, task.Steps, 1)

	// A new version is the way to change it.
	changed := parse(t, conflictV1Changed)
	changed.Version = "1.1.0"
	require.NoError(t, b.engine.Register(changed))
}

// TestRegistryConflictWithAnotherProcess: when the database's registry holds another definition
// for a template version (another process, an earlier deploy), RunWorkers' start and CreateTask
// fail with a *TemplateConflictError instead of keeping the old row silently.
func TestRegistryConflictWithAnotherProcess(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		first := setup(t)
		require.NoError(t, first.engine.Register(parse(t, conflictV1)))
		_, err := first.engine.CreateTask(context.Background(), tasker.TaskRequest{Namespace: "shop", Name: "order"})
		require.NoError(t, err) // writes the registry row

		// A second process, deployed with a changed body under the same version.
		second := first.sibling(t)
		require.NoError(t, second.engine.Register(parse(t, conflictV1Changed)))
		_, err = second.engine.CreateTask(context.Background(), tasker.TaskRequest{Namespace: "shop", Name: "order", Context: map[string]any{"n": 2}})
		require.ErrorIs(t, err, tasker.ErrTemplateConflict)
		var ce *tasker.TemplateConflictError
		require.True(t, errors.As(err, &ce), "%v", err)

		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err = second.engine.RunWorkers(ctx)
		require.ErrorIs(t, err, tasker.ErrTemplateConflict)

		// The first definition is kept: the first engine still creates tasks, and a third process
		// with the same definition as the first starts.
		_, err = first.engine.CreateTask(context.Background(), tasker.TaskRequest{Namespace: "shop", Name: "order", Context: map[string]any{"n": 3}})
		require.NoError(t, err)
		third := first.sibling(t)
		require.NoError(t, third.engine.Register(parse(t, conflictV1)))
		third.engine.HandleFunc("noop", func(context.Context, *tasker.Step) (any, error) { return nil, nil })
		third.start(t)
	})
}

// TestRegisterWhileRunningServesTheNewNamespace: a template registered in a new namespace after
// RunWorkers started is served by the running workers (it used to be ignored until a restart) and
// written to the database's registry.
func TestRegisterWhileRunningServesTheNewNamespace(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, setup setupFunc) {
		b := setup(t)
		b.register(t, `
name: first
namespace_name: alpha
steps:
  - {name: a, handler: {callable: noop}}
`)
		b.engine.HandleFunc("noop", func(context.Context, *tasker.Step) (any, error) { return "ok", nil })
		b.start(t)
		require.Equal(t, tasker.TaskComplete, b.wait(t, b.create(t, "alpha", "first", nil).ID).State)

		b.register(t, `
name: second
namespace_name: beta
steps:
  - {name: a, handler: {callable: noop}}
  - {name: b, handler: {callable: noop}, dependencies: [a]}
`)
		if b.db != nil {
			require.Eventually(t, func() bool {
				var n int
				err := b.db.Pool.QueryRow(context.Background(),
					`SELECT count(*) FROM `+b.db.Schema+`.templates WHERE namespace = 'beta'`).Scan(&n)
				return err == nil && n == 1
			}, 10*time.Second, 20*time.Millisecond, "the new template reaches the registry")
		}
		task := b.wait(t, b.create(t, "beta", "second", nil).ID)
		require.Equal(t, tasker.TaskComplete, task.State)
		// The first namespace is still served after the listener took the new one on.
		require.Equal(t, tasker.TaskComplete, b.wait(t, b.create(t, "alpha", "first", map[string]any{"again": true}).ID).State)
	})
}

package tasker

import (
	"encoding/json"
	"maps"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/corefixture"
)

// The tests here run over two sets of templates in Tasker Core's YAML layout (corefixture.Each):
// tasker's own (testdata/corelayout, every run) and Tasker Core's own fixtures, read in place from
// the folder that TASKER_CORE_FIXTURES names (skipped when it is unset, failing when it is set but
// unreadable).

// fixtureFiles returns the *.yaml templates of a set.
func fixtureFiles(t *testing.T, s corefixture.Set) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(s.Dir, "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, files, "no *.yaml templates in %s", s.Dir)
	return files
}

func parseFixture(t *testing.T, s corefixture.Set, name string, opts ...ParseOption) *Template {
	t.Helper()
	tmpl, err := ParseTemplateFile(s.Path(name), opts...)
	require.NoError(t, err)
	return tmpl
}

func TestTemplateFixturesParse(t *testing.T) {
	t.Parallel()
	corefixture.Each(t, func(t *testing.T, set corefixture.Set) {
		for _, file := range fixtureFiles(t, set) {
			t.Run(filepath.Base(file), func(t *testing.T) {
				t.Parallel()
				tmpl, err := ParseTemplateFile(file)
				require.NoError(t, err)
				require.NoError(t, tmpl.Validate())
				require.NotEmpty(t, tmpl.Steps)
				for _, s := range tmpl.Steps {
					require.NotEmpty(t, s.Handler.Callable, "step %s", s.Name)
					require.GreaterOrEqual(t, s.Retry.MaxAttempts, 1, "step %s", s.Name)
					require.Positive(t, s.Timeout, "step %s", s.Name)
				}
				if tmpl.InputSchema != nil {
					require.True(t, json.Valid(tmpl.InputSchema))
				}

				for env := range tmpl.Environments {
					resolved, err := tmpl.ForEnvironment(env)
					require.NoError(t, err, "environment %s", env)
					require.NoError(t, resolved.Validate(), "environment %s", env)
					parsed, err := ParseTemplateFile(file, WithEnvironment(env))
					require.NoError(t, err, "environment %s", env)
					require.Equal(t, resolved, parsed, "environment %s", env)
				}
			})
		}
	})
}

func TestTemplateFixturesJSONRoundTrip(t *testing.T) {
	t.Parallel()
	corefixture.Each(t, func(t *testing.T, set corefixture.Set) {
		for _, file := range fixtureFiles(t, set) {
			t.Run(filepath.Base(file), func(t *testing.T) {
				t.Parallel()
				tmpl, err := ParseTemplateFile(file)
				require.NoError(t, err)
				data, err := json.Marshal(tmpl)
				require.NoError(t, err)
				var back Template
				require.NoError(t, json.Unmarshal(data, &back))
				require.Equal(t, tmpl, &back)
			})
		}
	})
}

// linearWant is what the linear chain of a set parses to.
type linearWant struct {
	file, key, author, schema   string
	second, secondDep, callable string
	stepNumberKey               string
	stepNumber                  float64
	retry                       RetryPolicy
	timeout, testTimeout        time.Duration
	testAttempts                int
	// env merges handler.initialization of the last step: it adds envKey and resultKeyName.
	env, envKey, resultKeyName string
	envKeyWant, resultKey      any
}

func TestTemplateFixtureMathematicalSequence(t *testing.T) {
	t.Parallel()
	corefixture.Each(t, func(t *testing.T, set corefixture.Set) {
		w := corefixture.Pick(set, linearWant{
			file: "mathematical_sequence.yaml", key: "rust_e2e_linear/mathematical_sequence@1.0.0",
			author: "TAS-41 Native Rust Implementation",
			schema: `{"type":"object","required":["even_number"],"properties":{"even_number":{"type":"integer","minimum":2,"maximum":100,"description":"Even number for mathematical sequence"}}}`,
			second: "linear_step_2", secondDep: "linear_step_1",
			callable: "tasker_example_rs::step_handlers::linear_workflow::LinearStep2Handler",
			retry:    RetryPolicy{MaxAttempts: 3, Backoff: BackoffExponential, BackoffBase: time.Second, MaxBackoff: 30 * time.Second},
			timeout:  30 * time.Second, testTimeout: 10 * time.Second, testAttempts: 2,
			env: "development", envKey: "debug_mode", envKeyWant: true,
			resultKeyName: "final_result", resultKey: "input^8",
			stepNumberKey: "step_number", stepNumber: 2,
		}, linearWant{
			file: "power_chain.yaml", key: "corelayout_linear/power_chain@2.1.0",
			author: "tasker test suite",
			schema: `{"type":"object","required":["even_number"],"properties":{"even_number":{"type":"integer","minimum":2,"maximum":50,"description":"An even starting value"}}}`,
			second: "power_two", secondDep: "power_one",
			callable: "corelayout.PowerTwo",
			retry:    RetryPolicy{MaxAttempts: 4, Backoff: BackoffExponential, BackoffBase: 250 * time.Millisecond, MaxBackoff: 5 * time.Second},
			timeout:  40 * time.Second, testTimeout: 8 * time.Second, testAttempts: 2,
			env: "staging", envKey: "verbose", envKeyWant: true,
			resultKeyName: "trace_label", resultKey: "sixteenth power",
			stepNumberKey: "position", stepNumber: 2,
		})
		tmpl := parseFixture(t, set, w.file)
		require.Equal(t, w.key, tmpl.Key())
		require.Len(t, tmpl.Steps, 4)
		require.Equal(t, IdentityStrict, tmpl.Identity)
		require.Equal(t, w.author, tmpl.Metadata["author"])
		require.JSONEq(t, w.schema, string(tmpl.InputSchema))

		s2, ok := tmpl.Step(w.second)
		require.True(t, ok)
		require.Equal(t, []string{w.secondDep}, s2.Dependencies)
		require.Equal(t, StepStandard, s2.Type)
		require.Equal(t, w.callable, s2.Handler.Callable)
		require.Equal(t, "square", s2.Handler.Initialization["operation"])
		require.Equal(t, w.stepNumber, s2.Handler.Initialization[w.stepNumberKey])
		require.Equal(t, w.retry, s2.Retry)
		require.Equal(t, w.timeout, s2.Timeout)

		testEnv, err := tmpl.ForEnvironment("test")
		require.NoError(t, err)
		for _, s := range testEnv.Steps {
			require.Equal(t, w.testTimeout, s.Timeout, s.Name)
			require.Equal(t, w.testAttempts, s.Retry.MaxAttempts, s.Name)
			require.Equal(t, w.retry.BackoffBase, s.Retry.BackoffBase, "a partial retry override keeps the other fields")
		}
		require.Equal(t, w.timeout, tmpl.Steps[0].Timeout, "ForEnvironment does not change the receiver")

		dev, err := tmpl.ForEnvironment(w.env)
		require.NoError(t, err)
		init := dev.Steps[3].Handler.Initialization
		require.Equal(t, w.envKeyWant, init[w.envKey])
		require.Equal(t, "square", init["operation"], "initialization overrides merge")
		require.Equal(t, w.resultKey, init[w.resultKeyName])
	})
}

func TestTemplateFixtureRetryBoundaries(t *testing.T) {
	t.Parallel()
	corefixture.Each(t, func(t *testing.T, set corefixture.Set) {
		core := map[string]RetryPolicy{
			"boundary_max_attempts_zero.yaml":     {MaxAttempts: 1, Backoff: BackoffExponential, BackoffBase: 100 * time.Millisecond, MaxBackoff: 30 * time.Second},
			"boundary_max_attempts_one.yaml":      {MaxAttempts: 1, Backoff: BackoffExponential, BackoffBase: 100 * time.Millisecond, MaxBackoff: 30 * time.Second},
			"boundary_max_attempts_three.yaml":    {MaxAttempts: 3, Backoff: BackoffExponential, BackoffBase: 100 * time.Millisecond, MaxBackoff: 30 * time.Second},
			"boundary_non_retryable_retries.yaml": {NoRetry: true, MaxAttempts: 1, Backoff: BackoffExponential, BackoffBase: 100 * time.Millisecond, MaxBackoff: 30 * time.Second},
			"boundary_non_retryable_first.yaml":   {NoRetry: true, MaxAttempts: 1, Backoff: BackoffExponential, BackoffBase: 100 * time.Millisecond, MaxBackoff: 30 * time.Second},
		}
		own := map[string]RetryPolicy{
			"attempts_limit_zero.yaml":          {MaxAttempts: 1, Backoff: BackoffExponential, BackoffBase: 20 * time.Millisecond, MaxBackoff: 500 * time.Millisecond},
			"attempts_limit_one.yaml":           {MaxAttempts: 1, Backoff: BackoffExponential, BackoffBase: 20 * time.Millisecond, MaxBackoff: 500 * time.Millisecond},
			"attempts_limit_three.yaml":         {MaxAttempts: 3, Backoff: BackoffExponential, BackoffBase: 20 * time.Millisecond, MaxBackoff: 500 * time.Millisecond},
			"attempts_no_retry_with_limit.yaml": {NoRetry: true, MaxAttempts: 1, Backoff: BackoffExponential, BackoffBase: 20 * time.Millisecond, MaxBackoff: 500 * time.Millisecond},
			"attempts_no_retry_single.yaml":     {NoRetry: true, MaxAttempts: 1, Backoff: BackoffExponential, BackoffBase: 20 * time.Millisecond, MaxBackoff: 500 * time.Millisecond},
		}
		timeout := corefixture.Pick(set, 5*time.Second, 4*time.Second)
		for file, want := range corefixture.Pick(set, core, own) {
			tmpl := parseFixture(t, set, file)
			require.Equal(t, want, tmpl.Steps[0].Retry, file)
			require.Equal(t, timeout, tmpl.Steps[0].Timeout, file)
		}

		file, want, wantTimeout := "retry_mechanics_test.yaml",
			RetryPolicy{MaxAttempts: 5, Backoff: BackoffExponential, BackoffBase: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}, 10*time.Second
		if !set.Core {
			file, want, wantTimeout = "retry_recovers.yaml",
				RetryPolicy{MaxAttempts: 4, Backoff: BackoffExponential, BackoffBase: 40 * time.Millisecond, MaxBackoff: 150 * time.Millisecond}, 9*time.Second
		}
		tmpl := parseFixture(t, set, file, WithEnvironment("test"))
		require.Equal(t, want, tmpl.Steps[0].Retry)
		require.Equal(t, wantTimeout, tmpl.Steps[0].Timeout)
	})
}

func TestTemplateFixtureStepTypes(t *testing.T) {
	t.Parallel()
	corefixture.Each(t, func(t *testing.T, set corefixture.Set) {
		tmpl := parseFixture(t, set, corefixture.Pick(set, "conditional_approval_rust.yaml", "spend_approval.yaml"))
		types := map[string]StepType{}
		for _, s := range tmpl.Steps {
			types[s.Name] = s.Type
		}
		require.Equal(t, StepDecision, types["routing_decision"])
		require.Equal(t, StepDeferredConvergence, types["finalize_approval"])
		require.Equal(t, StepStandard, types["auto_approve"])
		fin, _ := tmpl.Step("finalize_approval")
		require.Equal(t, []string{"auto_approve", "manager_approval", "finance_review"}, fin.Dependencies)

		csv := parseFixture(t, set, corefixture.Pick(set, "batch_processing_products_csv.yaml", "stock_count_csv.yaml"))
		analyze, _ := csv.Step("analyze_csv")
		require.Equal(t, StepBatchable, analyze.Type)
		require.Nil(t, analyze.Batch)
		worker, _ := csv.Step("process_csv_batch")
		require.Equal(t, StepBatchWorker, worker.Type)
		require.Equal(t, &BatchConfig{BatchSize: 200, Parallelism: 5, CursorField: "row_number", WorkerTemplate: "process_csv_batch", FailureStrategy: BatchContinueOnFailure}, worker.Batch)

		if !set.Core {
			ranges := parseFixture(t, set, "range_batches.yaml")
			w, _ := ranges.Step("process_batch")
			require.Equal(t, &BatchConfig{BatchSize: 1000, Parallelism: 10, CursorField: "id", WorkerTemplate: "process_batch", FailureStrategy: BatchFailFast}, w.Batch)
		}

		dispatch := parseFixture(t, set, corefixture.Pick(set, "method_dispatch_rust.yaml", "handler_methods.yaml"))
		require.Equal(t, corefixture.Pick(set, "validate", "check"), dispatch.Steps[0].Handler.Method)
		require.Empty(t, dispatch.Steps[3].Handler.Method)
	})
}

func TestTemplateFixtureLifecycle(t *testing.T) {
	t.Parallel()
	corefixture.Each(t, func(t *testing.T, set corefixture.Set) {
		tmpl := parseFixture(t, set, corefixture.Pick(set, "dlq_staleness_test.yaml", "stale_limits.yaml"))
		require.Equal(t, corefixture.Pick(set, &Lifecycle{
			MaxDurationMinutes:               30,
			MaxWaitingForDependenciesMinutes: 2,
			MaxWaitingForRetryMinutes:        2,
			MaxStepsInProcessMinutes:         2,
			StalenessAction:                  StalenessActionDefault,
		}, &Lifecycle{
			MaxDurationMinutes:               45,
			MaxWaitingForDependenciesMinutes: 3,
			MaxWaitingForRetryMinutes:        4,
			MaxStepsInProcessMinutes:         5,
			StalenessAction:                  "error",
		}), tmpl.Lifecycle)
		require.Equal(t, []string{"test"}, slices.Collect(maps.Keys(tmpl.Environments)))

		cdag := parseFixture(t, set, corefixture.Pick(set, "complex_dag.yaml", "mixed_graph.yaml"), WithEnvironment("test"))
		final := corefixture.Pick(set, "dag_finalize", "mix_sink")
		fin, _ := cdag.Step(final)
		require.Equal(t, corefixture.Pick(set, 20*time.Second, 15*time.Second), fin.Timeout)
		require.Equal(t, corefixture.Pick(set, []string{"dag_validate", "dag_transform", "dag_analyze"},
			[]string{"mix_after_meet", "mix_skip", "mix_alpha"}), fin.Dependencies)
	})
}

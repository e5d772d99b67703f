package tasker

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// taskerCoreFixtures is where Tasker Core's own templates sit, beside the
// checkout (here and in CI). They are read in place, never copied.
const taskerCoreFixtures = "../shared/fixtures/tasker-core"

// fixtureFiles returns the fixture templates, failing the test when the
// folder is missing: a silent skip would hide the compatibility check.
func fixtureFiles(t *testing.T) []string {
	t.Helper()
	info, err := os.Stat(taskerCoreFixtures)
	require.NoError(t, err, "Tasker Core's fixture templates must sit at %s, beside the checkout", taskerCoreFixtures)
	require.True(t, info.IsDir(), "%s is not a directory", taskerCoreFixtures)
	files, err := filepath.Glob(filepath.Join(taskerCoreFixtures, "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, files, "no *.yaml fixtures in %s", taskerCoreFixtures)
	return files
}

func parseFixture(t *testing.T, name string, opts ...ParseOption) *Template {
	t.Helper()
	fixtureFiles(t)
	tmpl, err := ParseTemplateFile(filepath.Join(taskerCoreFixtures, name), opts...)
	require.NoError(t, err)
	return tmpl
}

func TestTemplateFixturesParse(t *testing.T) {
	t.Parallel()
	for _, file := range fixtureFiles(t) {
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
}

func TestTemplateFixturesJSONRoundTrip(t *testing.T) {
	t.Parallel()
	for _, file := range fixtureFiles(t) {
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
}

func TestTemplateFixtureMathematicalSequence(t *testing.T) {
	t.Parallel()
	tmpl := parseFixture(t, "mathematical_sequence.yaml")
	require.Equal(t, "rust_e2e_linear/mathematical_sequence@1.0.0", tmpl.Key())
	require.Len(t, tmpl.Steps, 4)
	require.Equal(t, IdentityStrict, tmpl.Identity)
	require.Equal(t, "TAS-41 Native Rust Implementation", tmpl.Metadata["author"])
	require.JSONEq(t, `{"type":"object","required":["even_number"],"properties":{"even_number":{"type":"integer","minimum":2,"maximum":100,"description":"Even number for mathematical sequence"}}}`, string(tmpl.InputSchema))

	s2, ok := tmpl.Step("linear_step_2")
	require.True(t, ok)
	require.Equal(t, []string{"linear_step_1"}, s2.Dependencies)
	require.Equal(t, StepStandard, s2.Type)
	require.Equal(t, "tasker_example_rs::step_handlers::linear_workflow::LinearStep2Handler", s2.Handler.Callable)
	require.Equal(t, "square", s2.Handler.Initialization["operation"])
	require.Equal(t, 2.0, s2.Handler.Initialization["step_number"])
	require.Equal(t, RetryPolicy{MaxAttempts: 3, Backoff: BackoffExponential, BackoffBase: time.Second, MaxBackoff: 30 * time.Second}, s2.Retry)
	require.Equal(t, 30*time.Second, s2.Timeout)

	testEnv, err := tmpl.ForEnvironment("test")
	require.NoError(t, err)
	for _, s := range testEnv.Steps {
		require.Equal(t, 10*time.Second, s.Timeout, s.Name)
		require.Equal(t, 2, s.Retry.MaxAttempts, s.Name)
		require.Equal(t, time.Second, s.Retry.BackoffBase, "a partial retry override keeps the other fields")
	}
	require.Equal(t, 30*time.Second, tmpl.Steps[0].Timeout, "ForEnvironment does not change the receiver")

	dev, err := tmpl.ForEnvironment("development")
	require.NoError(t, err)
	init := dev.Steps[3].Handler.Initialization
	require.Equal(t, true, init["debug_mode"])
	require.Equal(t, "square", init["operation"], "initialization overrides merge")
	require.Equal(t, "input^8", init["final_result"])
}

func TestTemplateFixtureRetryBoundaries(t *testing.T) {
	t.Parallel()
	for file, want := range map[string]RetryPolicy{
		"boundary_max_attempts_zero.yaml":     {MaxAttempts: 1, Backoff: BackoffExponential, BackoffBase: 100 * time.Millisecond, MaxBackoff: 30 * time.Second},
		"boundary_max_attempts_one.yaml":      {MaxAttempts: 1, Backoff: BackoffExponential, BackoffBase: 100 * time.Millisecond, MaxBackoff: 30 * time.Second},
		"boundary_max_attempts_three.yaml":    {MaxAttempts: 3, Backoff: BackoffExponential, BackoffBase: 100 * time.Millisecond, MaxBackoff: 30 * time.Second},
		"boundary_non_retryable_retries.yaml": {NoRetry: true, MaxAttempts: 1, Backoff: BackoffExponential, BackoffBase: 100 * time.Millisecond, MaxBackoff: 30 * time.Second},
		"boundary_non_retryable_first.yaml":   {NoRetry: true, MaxAttempts: 1, Backoff: BackoffExponential, BackoffBase: 100 * time.Millisecond, MaxBackoff: 30 * time.Second},
	} {
		tmpl := parseFixture(t, file)
		require.Equal(t, want, tmpl.Steps[0].Retry, file)
		require.Equal(t, 5*time.Second, tmpl.Steps[0].Timeout, file)
	}

	tmpl := parseFixture(t, "retry_mechanics_test.yaml", WithEnvironment("test"))
	require.Equal(t, RetryPolicy{MaxAttempts: 5, Backoff: BackoffExponential, BackoffBase: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}, tmpl.Steps[0].Retry)
	require.Equal(t, 10*time.Second, tmpl.Steps[0].Timeout)
}

func TestTemplateFixtureStepTypes(t *testing.T) {
	t.Parallel()
	tmpl := parseFixture(t, "conditional_approval_rust.yaml")
	types := map[string]StepType{}
	for _, s := range tmpl.Steps {
		types[s.Name] = s.Type
	}
	require.Equal(t, StepDecision, types["routing_decision"])
	require.Equal(t, StepDeferredConvergence, types["finalize_approval"])
	require.Equal(t, StepStandard, types["auto_approve"])
	fin, _ := tmpl.Step("finalize_approval")
	require.Equal(t, []string{"auto_approve", "manager_approval", "finance_review"}, fin.Dependencies)

	csv := parseFixture(t, "batch_processing_products_csv.yaml")
	analyze, _ := csv.Step("analyze_csv")
	require.Equal(t, StepBatchable, analyze.Type)
	require.Nil(t, analyze.Batch)
	worker, _ := csv.Step("process_csv_batch")
	require.Equal(t, StepBatchWorker, worker.Type)
	require.Equal(t, &BatchConfig{BatchSize: 200, Parallelism: 5, CursorField: "row_number", WorkerTemplate: "process_csv_batch", FailureStrategy: BatchContinueOnFailure}, worker.Batch)

	dispatch := parseFixture(t, "method_dispatch_rust.yaml")
	require.Equal(t, "validate", dispatch.Steps[0].Handler.Method)
	require.Empty(t, dispatch.Steps[3].Handler.Method)
}

func TestTemplateFixtureLifecycle(t *testing.T) {
	t.Parallel()
	tmpl := parseFixture(t, "dlq_staleness_test.yaml")
	require.Equal(t, &Lifecycle{
		MaxDurationMinutes:               30,
		MaxWaitingForDependenciesMinutes: 2,
		MaxWaitingForRetryMinutes:        2,
		MaxStepsInProcessMinutes:         2,
		StalenessAction:                  StalenessActionDefault,
	}, tmpl.Lifecycle)
	require.Equal(t, []string{"test"}, slices.Collect(maps.Keys(tmpl.Environments)))

	cdag := parseFixture(t, "complex_dag.yaml", WithEnvironment("test"))
	fin, _ := cdag.Step("dag_finalize")
	require.Equal(t, 20*time.Second, fin.Timeout)
	require.Equal(t, []string{"dag_validate", "dag_transform", "dag_analyze"}, fin.Dependencies)
}

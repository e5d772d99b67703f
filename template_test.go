package tasker

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// yamlLines joins lines so that line k (from 1) of the result is lines[k-1],
// which keeps the expected line numbers of a test readable.
func yamlLines(lines ...string) string { return strings.Join(lines, "\n") + "\n" }

// header is the first three lines of a valid template.
var header = []string{"name: order", "namespace_name: shop", "version: 1.0.0"}

func withHeader(lines ...string) string {
	return yamlLines(append(append([]string{}, header...), lines...)...)
}

// requireProblem asserts that err is a *ValidationError holding a problem
// with the code, and returns that problem.
func requireProblem(t *testing.T, err error, code string) Problem {
	t.Helper()
	require.ErrorIs(t, err, ErrInvalidTemplate)
	var verr *ValidationError
	require.ErrorAs(t, err, &verr)
	for _, p := range verr.Problems {
		if p.Code == code {
			return p
		}
	}
	require.Failf(t, "problem not found", "want %s in:\n%v", code, err)
	return Problem{}
}

func TestTemplateValidationCodes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code  string
		yaml  string
		opts  []ParseOption
		step  string
		field string
		line  int // 0: not checked
		msg   string
	}{
		{code: CodeInvalidYAML, yaml: yamlLines("name: order", "steps: [", "  - name: a"), line: 2},
		{code: CodeInvalidYAML, yaml: yamlLines("name: order", "name: again"), line: 2, msg: "already defined"},
		{code: CodeInvalidYAML, yaml: "# nothing\n", msg: "empty"},
		{code: CodeUnknownKey, yaml: withHeader("steps:", "  - name: a", "    handler: {callable: a}", "    retry:", "      limit: 5"),
			step: "a", field: "steps[0].retry.limit", line: 8, msg: `"limit"`},
		{code: CodeUnknownKey, yaml: withHeader("namespace: shop", "steps:", "  - name: a", "    handler: {callable: a}"),
			field: "namespace", line: 4, msg: `did you mean "namespace_name"`},
		{code: CodeUnknownKey, yaml: withHeader("steps:", "  - name: a", "    dependancies: []", "    handler: {callable: a}"),
			step: "a", line: 6, msg: `did you mean "dependencies"`},
		{code: CodeInvalidValue, yaml: withHeader("steps:", "  - name: a", "    handler: {callable: a}", "    retry:", "      max_attempts: three"),
			step: "a", field: "steps[0].retry.max_attempts", line: 8, msg: `"three"`},
		{code: CodeInvalidValue, yaml: withHeader("steps:", "  - name: a", "    handler: {callable: a}", "    timeout_seconds: [1]"),
			step: "a", field: "steps[0].timeout_seconds", line: 7},
		{code: CodeInvalidValue, yaml: withHeader("steps: 12"), field: "steps", line: 4},
		{code: CodeMissingName, yaml: yamlLines("namespace_name: shop", "steps:", "  - name: a", "    handler: {callable: a}"), field: "name"},
		{code: CodeMissingNamespace, yaml: yamlLines("name: order", "steps:", "  - name: a", "    handler: {callable: a}"), field: "namespace_name"},
		{code: CodeInvalidName, yaml: yamlLines("name: my order", "namespace_name: shop", "steps:", "  - name: a", "    handler: {callable: a}"), field: "name", line: 1},
		{code: CodeNoSteps, yaml: withHeader("steps: []"), field: "steps", line: 4},
		{code: CodeNoSteps, yaml: withHeader(), field: "steps"},
		{code: CodeEmptyStepName, yaml: withHeader("steps:", "  - handler: {callable: a}"), field: "steps[0].name", line: 5},
		{code: CodeDuplicateStepName, yaml: withHeader("steps:", "  - name: a", "    handler: {callable: a}", "  - name: a", "    handler: {callable: b}"),
			step: "a", field: "steps[1].name", line: 7},
		{code: CodeMissingDepRef, yaml: withHeader("steps:", "  - name: a", "    handler: {callable: a}", "    dependencies:", "      - nope"),
			step: "a", field: "steps[0].dependencies[0]", line: 8, msg: `"nope"`},
		{code: CodeMissingDepRef, yaml: withHeader("steps:", "  - name: a", "    handler: {callable: a}", "    depends_on: [nope]"),
			step: "a", field: "steps[0].dependencies[0]", line: 7},
		{code: CodeSelfDependency, yaml: withHeader("steps:", "  - name: a", "    handler: {callable: a}", "    dependencies:", "      - a"),
			step: "a", field: "steps[0].dependencies[0]", line: 8},
		{code: CodeDuplicateDependency, yaml: withHeader("steps:", "  - name: a", "    handler: {callable: a}", "  - name: b", "    handler: {callable: b}", "    dependencies:", "      - a", "      - a"),
			step: "b", field: "steps[1].dependencies[1]", line: 11},
		{code: CodeCycleDetected, yaml: withHeader("steps:", "  - name: a", "    handler: {callable: a}", "    dependencies: [c]",
			"  - name: b", "    handler: {callable: b}", "    dependencies: [a]", "  - name: c", "    handler: {callable: c}", "    dependencies: [b]"),
			step: "a", field: "steps[0].dependencies", line: 7, msg: "a -> c -> b -> a"},
		{code: CodeMissingHandler, yaml: withHeader("steps:", "  - name: a", "    handler:", "      initialization: {k: 1}"),
			step: "a", field: "steps[0].handler.callable", line: 6},
		{code: CodeMissingHandler, yaml: withHeader("steps:", "  - name: a"), step: "a", field: "steps[0].handler.callable", line: 5},
		{code: CodeInvalidStepType, yaml: withHeader("steps:", "  - name: a", "    handler: {callable: a}", "    type: magic"),
			step: "a", field: "steps[0].type", line: 7, msg: `"magic"`},
		{code: CodeInvalidStepType, yaml: withHeader("steps:", "  - name: a", "    handler: {callable: a}", "    type: decision"),
			step: "a", msg: "decision step must depend"},
		{code: CodeInvalidRetry, yaml: withHeader("steps:", "  - name: a", "    handler: {callable: a}", "    retry:", "      max_attempts: -1"),
			step: "a", field: "steps[0].retry.max_attempts", line: 8},
		{code: CodeInvalidRetry, yaml: withHeader("steps:", "  - name: a", "    handler: {callable: a}", "    retry:", "      backoff: random"),
			step: "a", field: "steps[0].retry.backoff", line: 8, msg: `"random"`},
		{code: CodeInvalidRetry, yaml: withHeader("steps:", "  - name: a", "    handler: {callable: a}", "    retry:", "      backoff_base_ms: -5"),
			step: "a", field: "steps[0].retry.backoff_base_ms", line: 8},
		{code: CodeInvalidRetry, yaml: withHeader("steps:", "  - name: a", "    handler: {callable: a}", "    retry:", "      backoff_base_ms: 5000", "      max_backoff_ms: 1000"),
			step: "a", field: "steps[0].retry.max_backoff_ms", line: 9, msg: "exceeds"},
		{code: CodeInvalidTimeout, yaml: withHeader("steps:", "  - name: a", "    handler: {callable: a}", "    timeout_seconds: -1"),
			step: "a", field: "steps[0].timeout_seconds", line: 7},
		{code: CodeInvalidBatchConfig, yaml: withHeader("steps:", "  - name: a", "    type: batchable", "    handler: {callable: a}"),
			step: "a", field: "steps[0]", line: 5, msg: "no batch_worker"},
		{code: CodeInvalidBatchConfig, yaml: withHeader(batchSteps("batch_size: 0")...), step: "w", field: "steps[1].batch_config.batch_size", line: 13},
		{code: CodeInvalidBatchConfig, yaml: withHeader(batchSteps("failure_strategy: retry_forever")...), step: "w", field: "steps[1].batch_config.failure_strategy", line: 13},
		{code: CodeInvalidBatchConfig, yaml: withHeader("steps:", "  - name: a", "    handler: {callable: a}", "    batch_config: {batch_size: 5}"),
			step: "a", field: "steps[0].batch_config", line: 7, msg: "only for batchable"},
		{code: CodeUnknownWorkerTemplate, yaml: withHeader(batchSteps("worker_template: nobody")...), step: "w", field: "steps[1].batch_config.worker_template", line: 13},
		{code: CodeInvalidInputSchema, yaml: withHeader("input_schema:", "  type: objekt", "steps:", "  - name: a", "    handler: {callable: a}"),
			field: "input_schema", line: 4, msg: "type"},
		{code: CodeInvalidIdentityStrategy, yaml: withHeader("identity_strategy: sometimes", "steps:", "  - name: a", "    handler: {callable: a}"),
			field: "identity_strategy", line: 4},
		{code: CodeInvalidLifecycle, yaml: withHeader("lifecycle:", "  max_duration_minutes: -1", "steps:", "  - name: a", "    handler: {callable: a}"),
			field: "lifecycle.max_duration_minutes", line: 5},
		{code: CodeUnknownEnvironment, yaml: withHeader("steps:", "  - name: a", "    handler: {callable: a}", "environments:", "  test: {}"),
			opts: []ParseOption{WithEnvironment("prod")}, field: "environments", line: 7, msg: `"prod"`},
		{code: CodeUnknownOverrideStep, yaml: withHeader("steps:", "  - name: a", "    handler: {callable: a}", "environments:", "  test:", "    steps:", "      - name: b", "        timeout_seconds: 5"),
			step: "b", field: "environments.test.steps[0].name", line: 10},
		{code: CodeInvalidTimeout, yaml: withHeader("steps:", "  - name: a", "    handler: {callable: a}", "environments:", "  test:", "    steps:", "      - name: a", "        timeout_seconds: -5"),
			step: "a", field: "environments.test.steps[0].timeout_seconds", line: 11},
		{code: CodeInvalidRetry, yaml: withHeader("steps:", "  - name: a", "    handler: {callable: a}", "environments:", "  test:", "    steps:", "      - name: a", "        retry: {backoff_base_ms: 60000}"),
			step: "a", msg: `environment "test"`},
	}
	for _, tc := range tests {
		t.Run(tc.code, func(t *testing.T) {
			t.Parallel()
			tmpl, err := ParseTemplate([]byte(tc.yaml), tc.opts...)
			require.Nil(t, tmpl)
			p := requireProblem(t, err, tc.code)
			require.Equal(t, tc.step, p.Step, p.String())
			if tc.field != "" {
				require.Equal(t, tc.field, p.Field, p.String())
			}
			if tc.line != 0 {
				require.Equal(t, tc.line, p.Line, p.String())
			}
			require.Contains(t, p.Message, tc.msg)
			require.Contains(t, err.Error(), p.String())
		})
	}
}

// batchSteps is a batchable step and its worker, with one more line in the
// worker's batch_config (line 13 of the template).
func batchSteps(extra string) []string {
	return []string{
		"steps:",
		"  - name: b",
		"    type: batchable",
		"    handler: {callable: b}",
		"  - name: w",
		"    type: batch_worker",
		"    dependencies: [b]",
		"    handler: {callable: w}",
		"    batch_config:",
		"      " + extra,
	}
}

func TestTemplateManyProblems(t *testing.T) {
	t.Parallel()
	_, err := ParseTemplateFile("testdata/templates/many_problems.yaml")
	var verr *ValidationError
	require.ErrorAs(t, err, &verr)
	require.Contains(t, err.Error(), "testdata/templates/many_problems.yaml")
	got := map[string]int{}
	for _, p := range verr.Problems {
		got[p.Code]++
	}
	require.Equal(t, map[string]int{
		CodeMissingNamespace:    1,
		CodeUnknownKey:          2,
		CodeInvalidValue:        1,
		CodeMissingDepRef:       1,
		CodeCycleDetected:       1,
		CodeMissingHandler:      1,
		CodeInvalidRetry:        1,
		CodeInvalidTimeout:      1,
		CodeUnknownOverrideStep: 1,
	}, got, err.Error())
	require.Len(t, strings.Split(err.Error(), "\n"), len(verr.Problems)+1, "one line per problem after the heading")
	for i := 1; i < len(verr.Problems); i++ {
		require.LessOrEqual(t, verr.Problems[i-1].Line, verr.Problems[i].Line, "problems are in source order")
	}
}

func TestTemplateLegacyAndExtensionKeys(t *testing.T) {
	t.Parallel()
	tmpl, err := ParseTemplateFile("testdata/templates/anchors.yaml")
	require.NoError(t, err)
	require.Len(t, tmpl.Steps, 3)
	for _, s := range tmpl.Steps {
		require.Equal(t, RetryPolicy{MaxAttempts: 5, Backoff: BackoffLinear, BackoffBase: 200 * time.Millisecond, MaxBackoff: 30 * time.Second}, s.Retry, s.Name)
	}
	ship, _ := tmpl.Step("ship")
	require.Equal(t, []string{"charge", "reserve"}, ship.Dependencies, "depends_on is an alias of dependencies")
	require.Equal(t, map[string]any{"carrier": "post", "region": "eu", "limits": map[string]any{"kg": 30.0}}, ship.Handler.Initialization)
	require.Equal(t, StepDecision, tmpl.Steps[1].Type, "step_type is an alias of type")
	require.Equal(t, IdentityCallerProvided, tmpl.Identity)

	prod, err := tmpl.ForEnvironment("production")
	require.NoError(t, err)
	for _, s := range prod.Steps {
		require.Equal(t, time.Minute, s.Timeout, "the ALL override reaches %s", s.Name)
	}
	ship, _ = prod.Step("ship")
	require.Equal(t, map[string]any{"carrier": "post", "region": "eu", "limits": map[string]any{"kg": 30.0, "m3": 2.0}}, ship.Handler.Initialization)
}

func TestTemplateGoZeroValueDefaults(t *testing.T) {
	t.Parallel()
	tmpl := &Template{
		Namespace: "shop",
		Name:      "order",
		Steps: []StepTemplate{
			{Name: "reserve", Handler: HandlerSpec{Callable: "reserve"}},
			{Name: "charge", Handler: HandlerSpec{Callable: "charge"}, Dependencies: []string{"reserve"},
				Retry: RetryPolicy{NoRetry: true, MaxAttempts: 7}},
			{Name: "notify", Handler: HandlerSpec{Callable: "notify"}, Dependencies: []string{"charge"},
				Retry: RetryPolicy{BackoffBase: time.Minute}, Timeout: 5 * time.Second},
		},
	}
	require.NoError(t, tmpl.Validate())
	require.Equal(t, "shop/order@0.0.0", tmpl.Key())

	d := tmpl.WithDefaults()
	require.Equal(t, TemplateVersionDefault, d.Version)
	require.Equal(t, IdentityStrict, d.Identity)
	require.Equal(t, RetryPolicy{MaxAttempts: MaxAttemptsDefault, Backoff: BackoffExponential, BackoffBase: BackoffBaseDefault, MaxBackoff: MaxBackoffDefault}, d.Steps[0].Retry)
	require.Equal(t, StepTimeoutDefault, d.Steps[0].Timeout)
	require.Equal(t, StepStandard, d.Steps[0].Type)
	require.Equal(t, 1, d.Steps[1].Retry.MaxAttempts, "NoRetry means one attempt")
	require.Equal(t, time.Minute, d.Steps[2].Retry.MaxBackoff, "the cap rises to a larger base")
	require.Equal(t, 5*time.Second, d.Steps[2].Timeout)

	require.Empty(t, tmpl.Version, "WithDefaults and Validate leave the receiver alone")
	require.Zero(t, tmpl.Steps[0].Retry)
	require.Equal(t, d, d.WithDefaults(), "WithDefaults is idempotent")
}

func TestTemplateGoValidate(t *testing.T) {
	t.Parallel()
	tmpl := &Template{
		Name: "order",
		Steps: []StepTemplate{
			{Name: "a", Handler: HandlerSpec{Callable: "a"}, Dependencies: []string{"b"}, Timeout: -time.Second},
			{Name: "b", Handler: HandlerSpec{Callable: "b"}, Dependencies: []string{"a"}, Retry: RetryPolicy{MaxAttempts: -2}},
		},
		Environments: map[string]Environment{"test": {Steps: []StepOverride{{Name: "c", Timeout: time.Second}}}},
	}
	err := tmpl.Validate()
	require.True(t, errors.Is(err, ErrInvalidTemplate))
	require.Equal(t, "steps[0].timeout_seconds", requireProblem(t, err, CodeInvalidTimeout).Field)
	require.Equal(t, "b", requireProblem(t, err, CodeInvalidRetry).Step)
	require.Contains(t, requireProblem(t, err, CodeCycleDetected).Message, "a -> b -> a")
	requireProblem(t, err, CodeMissingNamespace)
	requireProblem(t, err, CodeUnknownOverrideStep)
	for _, p := range err.(*ValidationError).Problems {
		require.Zero(t, p.Line, "Go-built templates have no lines")
	}

	_, err = tmpl.ForEnvironment("test")
	requireProblem(t, err, CodeUnknownOverrideStep)
	_, err = tmpl.ForEnvironment("staging")
	requireProblem(t, err, CodeUnknownEnvironment)
	same, err := tmpl.ForEnvironment("")
	require.NoError(t, err)
	require.Equal(t, tmpl.WithDefaults(), same)
}

func TestTemplateJSONRoundTripGo(t *testing.T) {
	t.Parallel()
	no := false
	tmpl := &Template{
		Namespace:   "shop",
		Name:        "order",
		Version:     "2.1.0",
		InputSchema: json.RawMessage(`{"type":"object"}`),
		Identity:    IdentityAlwaysUnique,
		Lifecycle:   &Lifecycle{MaxDurationMinutes: 5, StalenessAction: "error", AutoDLQOnTimeout: true},
		Steps: []StepTemplate{
			{Name: "split", Type: StepBatchable, Handler: HandlerSpec{Callable: "split", Method: "plan"}},
			{Name: "work", Type: StepBatchWorker, Handler: HandlerSpec{Callable: "work"}, Dependencies: []string{"split"},
				Retry:   RetryPolicy{NoRetry: true, BackoffBase: 1500 * time.Microsecond, Backoff: BackoffNone},
				Timeout: 2500 * time.Millisecond, Batch: &BatchConfig{BatchSize: 10, FailureStrategy: BatchIsolate, MaxWorkers: 4}},
		},
		Environments: map[string]Environment{"test": {Steps: []StepOverride{
			{Name: StepOverrideAll, Timeout: time.Second, Retry: RetryOverride{Retryable: &no, MaxBackoff: time.Minute},
				Initialization: map[string]any{"fast": true}},
		}}},
	}
	require.NoError(t, tmpl.Validate())
	data, err := json.Marshal(tmpl)
	require.NoError(t, err)
	require.Contains(t, string(data), `"timeout_seconds":2.5`)
	require.Contains(t, string(data), `"retryable":false`)
	var back Template
	require.NoError(t, json.Unmarshal(data, &back))
	require.Equal(t, tmpl, &back)
}

func TestTemplateStepLookup(t *testing.T) {
	t.Parallel()
	tmpl := &Template{Steps: []StepTemplate{{Name: "a"}, {Name: "b"}}}
	s, ok := tmpl.Step("b")
	require.True(t, ok)
	s.Description = "changed"
	require.Equal(t, "changed", tmpl.Steps[1].Description, "Step points into the template")
	_, ok = tmpl.Step("c")
	require.False(t, ok)
}

func TestTemplateUnknownEnvironmentAmongOtherProblems(t *testing.T) {
	t.Parallel()
	_, err := ParseTemplate([]byte(withHeader("steps:", "  - name: a", "    handler: {callable: a}", "    timeout_seconds: -1")), WithEnvironment("prod"))
	requireProblem(t, err, CodeInvalidTimeout)
	requireProblem(t, err, CodeUnknownEnvironment)
}

func TestTemplateOverrideTurnsRetriesOn(t *testing.T) {
	t.Parallel()
	tmpl, err := ParseTemplate([]byte(withHeader("steps:", "  - name: a", "    handler: {callable: a}", "    retry: {retryable: false}",
		"environments:", "  lenient:", "    steps:", "      - name: a", "        retry: {retryable: true}")))
	require.NoError(t, err)
	require.Equal(t, 1, tmpl.Steps[0].Retry.MaxAttempts)
	lenient, err := tmpl.ForEnvironment("lenient")
	require.NoError(t, err)
	require.False(t, lenient.Steps[0].Retry.NoRetry)
	require.Equal(t, MaxAttemptsDefault, lenient.Steps[0].Retry.MaxAttempts)
}

func TestTemplateFreeFormMustBeMapping(t *testing.T) {
	t.Parallel()
	_, err := ParseTemplate([]byte(withHeader("metadata: [1, 2]", "steps:", "  - name: a", "    handler:", "      callable: a", "      initialization: fast")))
	var verr *ValidationError
	require.ErrorAs(t, err, &verr)
	require.Len(t, verr.Problems, 2, err.Error())
	require.Equal(t, Problem{Code: CodeInvalidValue, Field: "metadata", Line: 4, Message: "metadata: expected a mapping, got a list"}, verr.Problems[0])
	require.Equal(t, Problem{Code: CodeInvalidValue, Step: "a", Field: "steps[0].handler.initialization", Line: 9,
		Message: `initialization: expected a mapping, got string "fast"`}, verr.Problems[1])
}

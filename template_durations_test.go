package tasker

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// problemAt asserts that err is a *ValidationError with a problem of the code at the field.
func problemAt(t *testing.T, err error, code, field string) Problem {
	t.Helper()
	requireProblem(t, err, code)
	var verr *ValidationError
	require.ErrorAs(t, err, &verr)
	for _, p := range verr.Problems {
		if p.Code == code && p.Field == field {
			return p
		}
	}
	require.Failf(t, "problem not found", "want %s at %s in:\n%v", code, field, err)
	return Problem{}
}

// oneStep is a Go template of one step s with the given settings.
func oneStep(s StepTemplate) *Template {
	s.Name, s.Handler = "s", HandlerSpec{Callable: "h"}
	return &Template{Namespace: "n", Name: "t", Steps: []StepTemplate{s}}
}

func TestTemplateDurationAndAttemptLimits(t *testing.T) {
	t.Parallel()
	const day = 24 * time.Hour
	bad := []struct {
		name  string
		step  StepTemplate
		code  string
		field string
		msg   string
	}{
		{"attempts past int32", StepTemplate{Retry: RetryPolicy{MaxAttempts: 1<<32 + 1}}, CodeInvalidRetry, "steps[0].retry.max_attempts", "exceeds the maximum"},
		{"attempts past the maximum", StepTemplate{Retry: RetryPolicy{MaxAttempts: MaxAttemptsMax + 1}}, CodeInvalidRetry, "steps[0].retry.max_attempts", "1000000"},
		{"timeout past the maximum", StepTemplate{Timeout: StepDurationMax + time.Millisecond}, CodeInvalidTimeout, "steps[0].timeout_seconds", "365 days"},
		{"backoff base past the maximum", StepTemplate{Retry: RetryPolicy{BackoffBase: 400 * day, MaxBackoff: 400 * day}}, CodeInvalidRetry, "steps[0].retry.backoff_base_ms", "exceeds the maximum"},
		{"backoff cap past the maximum", StepTemplate{Retry: RetryPolicy{MaxBackoff: 400 * day}}, CodeInvalidRetry, "steps[0].retry.max_backoff_ms", "exceeds the maximum"},
		{"sub-millisecond timeout", StepTemplate{Timeout: 500 * time.Microsecond}, CodeInvalidTimeout, "steps[0].timeout_seconds", "shorter than 1ms"},
		{"sub-millisecond backoff base", StepTemplate{Retry: RetryPolicy{BackoffBase: time.Microsecond}}, CodeInvalidRetry, "steps[0].retry.backoff_base_ms", "shorter than 1ms"},
		{"sub-millisecond backoff cap", StepTemplate{Retry: RetryPolicy{BackoffBase: time.Microsecond, MaxBackoff: 2 * time.Microsecond}}, CodeInvalidRetry, "steps[0].retry.max_backoff_ms", "shorter than 1ms"},
	}
	for _, tt := range bad {
		err := oneStep(tt.step).Validate()
		p := problemAt(t, err, tt.code, tt.field)
		require.Equal(t, "s", p.Step, tt.name)
		require.Contains(t, p.Message, tt.msg, tt.name)
	}
	for _, s := range []StepTemplate{
		{Timeout: 30 * day, Retry: RetryPolicy{BackoffBase: 30 * day, MaxBackoff: 30 * day, MaxAttempts: MaxAttemptsMax}},
		{Timeout: StepDurationMax, Retry: RetryPolicy{BackoffBase: StepDurationMax, MaxBackoff: StepDurationMax}},
		{Timeout: StepDurationMin, Retry: RetryPolicy{BackoffBase: StepDurationMin, MaxBackoff: StepDurationMin}},
		{Retry: RetryPolicy{NoRetry: true, MaxAttempts: 1<<32 + 1}}, // NoRetry: one attempt, whatever MaxAttempts says
	} {
		require.NoError(t, oneStep(s).Validate())
	}
}

func TestTemplateYAMLDurationLimits(t *testing.T) {
	t.Parallel()
	step := func(lines ...string) string {
		return withHeader(append([]string{"steps:", "  - name: s", "    handler: {callable: h}"}, lines...)...)
	}
	bad := []struct {
		yaml  string
		code  string
		field string
		line  int
		msg   string
	}{
		{step("    timeout_seconds: 0.0005"), CodeInvalidTimeout, "steps[0].timeout_seconds", 7, "shorter than 1ms"},
		{step("    timeout_seconds: 0.000000000001"), CodeInvalidTimeout, "steps[0].timeout_seconds", 7, "shorter than 1ms"},
		{step("    timeout_seconds: 1.0e+300"), CodeInvalidTimeout, "steps[0].timeout_seconds", 7, "exceeds the maximum"},
		{step("    timeout_seconds: 31622400"), CodeInvalidTimeout, "steps[0].timeout_seconds", 7, "exceeds the maximum"}, // 366 days
		{step("    retry: {backoff_base_ms: 0.5}"), CodeInvalidRetry, "steps[0].retry.backoff_base_ms", 7, "shorter than 1ms"},
		{step("    retry: {backoff_base_ms: 1, max_backoff_ms: 0.25}"), CodeInvalidRetry, "steps[0].retry.max_backoff_ms", 7, "shorter than 1ms"},
		{step("    retry: {max_backoff_ms: 40000000000}"), CodeInvalidRetry, "steps[0].retry.max_backoff_ms", 7, "exceeds the maximum"},
		{step("    retry: {max_attempts: 2000000}"), CodeInvalidRetry, "steps[0].retry.max_attempts", 7, "exceeds the maximum"},
		{step("environments:", "  test:", "    steps:", "      - {name: s, timeout_seconds: 0.0005}"),
			CodeInvalidTimeout, "environments.test.steps[0].timeout_seconds", 10, "shorter than 1ms"},
		{step("environments:", "  test:", "    steps:", "      - {name: s, retry: {max_attempts: 2000000}}"),
			CodeInvalidRetry, "environments.test.steps[0].retry.max_attempts", 10, "exceeds the maximum"},
	}
	for _, tt := range bad {
		_, err := ParseTemplate([]byte(tt.yaml))
		p := problemAt(t, err, tt.code, tt.field)
		require.Equal(t, "s", p.Step, tt.yaml)
		require.Equal(t, tt.line, p.Line, tt.yaml)
		require.Contains(t, p.Message, tt.msg, tt.yaml)
	}

	tmpl, err := ParseTemplate([]byte(step("    timeout_seconds: 2592000", "    retry: {backoff_base_ms: 2592000000, max_backoff_ms: 2592000000}")))
	require.NoError(t, err)
	s := tmpl.Steps[0]
	require.Equal(t, 30*24*time.Hour, s.Timeout)
	require.Equal(t, 30*24*time.Hour, s.Retry.BackoffBase)
	require.Equal(t, 30*24*time.Hour, s.Retry.MaxBackoff)
}

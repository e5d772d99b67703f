package tasker

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tasker-systems/tasker/dag"
)

// ErrInvalidTemplate is matched (errors.Is) by every *ValidationError.
var ErrInvalidTemplate = errors.New("tasker: invalid template")

// Problem codes: the Code of a Problem. They are stable strings.
const (
	// CodeInvalidYAML: the YAML does not parse; Line says where.
	CodeInvalidYAML = "INVALID_YAML"
	// CodeUnknownKey: a key that the template format does not define, such
	// as a misspelt one (retry.limit). Tasker Core ignores these silently.
	CodeUnknownKey = "UNKNOWN_KEY"
	// CodeInvalidValue: a value of the wrong type (max_attempts: "three").
	CodeInvalidValue = "INVALID_VALUE"
	// CodeMissingName: the template has no name.
	CodeMissingName = "MISSING_NAME"
	// CodeMissingNamespace: the template has no namespace_name.
	CodeMissingNamespace = "MISSING_NAMESPACE"
	// CodeInvalidName: the namespace, name or version contains "/", "@" or
	// white space, which would make the template key ambiguous.
	CodeInvalidName = "INVALID_NAME"
	// CodeNoSteps: the template has no steps.
	CodeNoSteps = "NO_STEPS"
	// CodeEmptyStepName: a step has no name.
	CodeEmptyStepName = "EMPTY_STEP_NAME"
	// CodeDuplicateStepName: two steps have the same name.
	CodeDuplicateStepName = "DUPLICATE_STEP_NAME"
	// CodeMissingDepRef: a dependency names no step.
	CodeMissingDepRef = "MISSING_DEP_REF"
	// CodeSelfDependency: a step depends on itself.
	CodeSelfDependency = "SELF_DEPENDENCY"
	// CodeDuplicateDependency: a step lists a dependency twice.
	CodeDuplicateDependency = "DUPLICATE_DEPENDENCY"
	// CodeCycleDetected: the dependencies form a cycle; the message names it.
	CodeCycleDetected = "CYCLE_DETECTED"
	// CodeMissingHandler: a step has no handler.callable.
	CodeMissingHandler = "MISSING_HANDLER"
	// CodeInvalidStepType: an unknown step type, or a decision step without
	// a dependency (Tasker Core's rule).
	CodeInvalidStepType = "INVALID_STEP_TYPE"
	// CodeInvalidRetry: max_attempts negative or above MaxAttemptsMax, an
	// unknown backoff, a backoff duration outside StepDurationMin to
	// StepDurationMax, or a backoff base above the maximum.
	CodeInvalidRetry = "INVALID_RETRY"
	// CodeInvalidTimeout: a timeout outside StepDurationMin to
	// StepDurationMax (a negative one included).
	CodeInvalidTimeout = "INVALID_TIMEOUT"
	// CodeInvalidBatchConfig: a batch_config that is wrong or misplaced, a
	// batchable step without workers, or a batch_worker step that depends
	// on no batchable step.
	CodeInvalidBatchConfig = "INVALID_BATCH_CONFIG"
	// CodeUnknownWorkerTemplate: batch_config.worker_template names no
	// batch_worker step.
	CodeUnknownWorkerTemplate = "UNKNOWN_WORKER_TEMPLATE"
	// CodeInvalidInputSchema: input_schema does not compile as JSON Schema.
	CodeInvalidInputSchema = "INVALID_INPUT_SCHEMA"
	// CodeInvalidIdentityStrategy: an unknown identity_strategy.
	CodeInvalidIdentityStrategy = "INVALID_IDENTITY_STRATEGY"
	// CodeInvalidLifecycle: a negative threshold or an unknown
	// staleness_action.
	CodeInvalidLifecycle = "INVALID_LIFECYCLE"
	// CodeUnknownEnvironment: the requested environment is not defined.
	CodeUnknownEnvironment = "UNKNOWN_ENVIRONMENT"
	// CodeUnknownOverrideStep: an environment overrides a step that does
	// not exist.
	CodeUnknownOverrideStep = "UNKNOWN_OVERRIDE_STEP"
	// CodeTemplateTooLarge: the YAML source exceeds a limit of ParseTemplate
	// (size, depth, or nodes with aliases expanded); the problem's Err is the
	// *LimitError, which says which and how to raise it.
	CodeTemplateTooLarge = "TEMPLATE_TOO_LARGE"
)

// Problem is one defect of a template.
type Problem struct {
	// Code is one of the Code constants.
	Code string
	// Step is the name of the step concerned, if any.
	Step string
	// Field is the YAML path of the value concerned, such as
	// steps[2].retry.max_attempts; empty when the whole template is meant.
	Field string
	// Line is the line in the YAML source, 0 when unknown (templates built
	// in Go have none).
	Line int
	// Message says what is wrong.
	Message string
	// Err is the typed error behind the problem, if any: a *LimitError for
	// TEMPLATE_TOO_LARGE, a *SchemaRefError for an input_schema $ref that is
	// not allowed. ValidationError.Unwrap returns these, so errors.Is and
	// errors.As find them.
	Err error
}

// String formats the problem on one line.
func (p Problem) String() string {
	var b strings.Builder
	if p.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", p.Line)
	}
	b.WriteString(p.Code)
	if p.Field != "" {
		b.WriteString(" at " + p.Field)
	}
	if p.Step != "" {
		fmt.Fprintf(&b, " (step %q)", p.Step)
	}
	b.WriteString(": " + p.Message)
	return b.String()
}

// ValidationError reports every problem found in a template at once.
type ValidationError struct {
	// Template is the template's key (or whatever of it is known).
	Template string
	// Problems are in source order where lines are known.
	Problems []Problem
}

// Error lists every problem, one per line.
func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString(ErrInvalidTemplate.Error())
	if e.Template != "" {
		fmt.Fprintf(&b, " %q", e.Template)
	}
	fmt.Fprintf(&b, ": %d problem(s)", len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  " + p.String())
	}
	return b.String()
}

// Is makes errors.Is(err, ErrInvalidTemplate) true.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalidTemplate }

// Unwrap returns the typed errors of the problems (their Err), so that
// errors.Is(err, ErrTemplateTooLarge) or errors.As(err, &limitErr) look
// through the *ValidationError.
func (e *ValidationError) Unwrap() []error {
	var errs []error
	for _, p := range e.Problems {
		if p.Err != nil {
			errs = append(errs, p.Err)
		}
	}
	return errs
}

// Has reports whether any problem has the given code.
func (e *ValidationError) Has(code string) bool {
	return slices.ContainsFunc(e.Problems, func(p Problem) bool { return p.Code == code })
}

// Validate checks a template, built in Go or parsed, and returns a
// *ValidationError listing every problem, or nil. Zero values are judged
// as their defaults (see WithDefaults); t is not changed.
func (t *Template) Validate() error {
	probs := validateTemplate(t.WithDefaults())
	if len(probs) == 0 {
		return nil
	}
	return &ValidationError{Template: t.Key(), Problems: probs}
}

// validateTemplate checks a template whose defaults are filled in.
func validateTemplate(t *Template) []Problem {
	var probs []Problem
	add := func(code, step, field, format string, args ...any) {
		probs = append(probs, Problem{Code: code, Step: step, Field: field, Message: fmt.Sprintf(format, args...)})
	}
	if t.Name == "" {
		add(CodeMissingName, "", "name", "the template has no name")
	}
	if t.Namespace == "" {
		add(CodeMissingNamespace, "", "namespace_name", "the template has no namespace_name")
	}
	for _, f := range []struct{ field, value string }{{"namespace_name", t.Namespace}, {"name", t.Name}, {"version", t.Version}} {
		if strings.ContainsAny(f.value, "/@ \t\r\n") {
			add(CodeInvalidName, "", f.field, "%q contains \"/\", \"@\" or white space", f.value)
		}
	}
	switch t.Identity {
	case IdentityStrict, IdentityCallerProvided, IdentityAlwaysUnique:
	default:
		add(CodeInvalidIdentityStrategy, "", "identity_strategy", "unknown identity strategy %q (want strict, caller_provided or always_unique)", t.Identity)
	}
	probs = append(probs, checkLifecycle(t.Lifecycle)...)
	if t.InputSchema != nil {
		if _, err := compileInputSchema(t.InputSchema, t.InputSchemaLoader); err != nil {
			p := Problem{Code: CodeInvalidInputSchema, Field: "input_schema", Message: strings.Join(strings.Fields(err.Error()), " ")}
			var re *SchemaRefError
			if errors.As(err, &re) {
				p.Err = re
			}
			probs = append(probs, p)
		}
	}
	if len(t.Steps) == 0 {
		add(CodeNoSteps, "", "steps", "the template has no steps")
	}
	for i := range t.Steps {
		probs = append(probs, checkStep(&t.Steps[i], fmt.Sprintf("steps[%d]", i))...)
	}
	probs = append(probs, checkGraph(t)...)
	probs = append(probs, checkStepKinds(t)...)
	probs = append(probs, checkEnvironments(t)...)
	return probs
}

func checkLifecycle(l *Lifecycle) []Problem {
	if l == nil {
		return nil
	}
	var probs []Problem
	for _, f := range []struct {
		key string
		v   int
	}{
		{"max_duration_minutes", l.MaxDurationMinutes},
		{"max_waiting_for_dependencies_minutes", l.MaxWaitingForDependenciesMinutes},
		{"max_waiting_for_retry_minutes", l.MaxWaitingForRetryMinutes},
		{"max_steps_in_process_minutes", l.MaxStepsInProcessMinutes},
	} {
		if f.v < 0 {
			probs = append(probs, Problem{Code: CodeInvalidLifecycle, Field: "lifecycle." + f.key,
				Message: fmt.Sprintf("%s is negative (%d)", f.key, f.v)})
		}
	}
	switch l.StalenessAction {
	case "dlq", "error", "none":
	default:
		probs = append(probs, Problem{Code: CodeInvalidLifecycle, Field: "lifecycle.staleness_action",
			Message: fmt.Sprintf("unknown staleness_action %q (want dlq, error or none)", l.StalenessAction)})
	}
	return probs
}

func checkStep(s *StepTemplate, p string) []Problem {
	var probs []Problem
	add := func(code, field, format string, args ...any) {
		probs = append(probs, Problem{Code: code, Step: s.Name, Field: p + field, Message: fmt.Sprintf(format, args...)})
	}
	if s.Handler.Callable == "" {
		add(CodeMissingHandler, ".handler.callable", "the step has no handler.callable")
	}
	switch s.Type {
	case StepStandard, StepDecision, StepDeferredConvergence, StepBatchable, StepBatchWorker:
	default:
		add(CodeInvalidStepType, ".type", "unknown step type %q (want standard, decision, deferred_convergence, batchable or batch_worker)", s.Type)
	}
	if msg := checkDuration("the timeout", s.Timeout); msg != "" {
		add(CodeInvalidTimeout, ".timeout_seconds", "%s", msg)
	}
	probs = append(probs, checkRetry(s.Retry, s.Name, p+".retry", true)...)
	if b := s.Batch; b != nil {
		if s.Type != StepBatchable && s.Type != StepBatchWorker {
			add(CodeInvalidBatchConfig, ".batch_config", "batch_config is only for batchable and batch_worker steps, not %s", s.Type)
		}
		if b.BatchSize <= 0 {
			add(CodeInvalidBatchConfig, ".batch_config.batch_size", "batch_size must be positive, not %d", b.BatchSize)
		}
		if b.Parallelism <= 0 {
			add(CodeInvalidBatchConfig, ".batch_config.parallelism", "parallelism must be positive, not %d", b.Parallelism)
		}
		if b.MaxWorkers < 0 {
			add(CodeInvalidBatchConfig, ".batch_config.max_workers", "max_workers is negative (%d)", b.MaxWorkers)
		}
		switch b.FailureStrategy {
		case BatchContinueOnFailure, BatchFailFast, BatchIsolate:
		default:
			add(CodeInvalidBatchConfig, ".batch_config.failure_strategy", "unknown failure_strategy %q (want continue_on_failure, fail_fast or isolate)", b.FailureStrategy)
		}
	}
	return probs
}

// checkRetry checks a retry policy; order also compares the backoff base
// with its maximum.
func checkRetry(r RetryPolicy, step, p string, order bool) []Problem {
	var probs []Problem
	add := func(field, format string, args ...any) {
		probs = append(probs, Problem{Code: CodeInvalidRetry, Step: step, Field: p + field, Message: fmt.Sprintf(format, args...)})
	}
	if r.MaxAttempts < 0 {
		add(".max_attempts", "max_attempts is negative (%d)", r.MaxAttempts)
	} else if r.MaxAttempts > MaxAttemptsMax {
		add(".max_attempts", "max_attempts (%d) exceeds the maximum of %d", r.MaxAttempts, MaxAttemptsMax)
	}
	switch r.Backoff {
	case BackoffExponential, BackoffLinear, BackoffNone:
	default:
		add(".backoff", "unknown backoff %q (want exponential, linear or none)", r.Backoff)
	}
	if msg := checkDuration("backoff_base_ms", r.BackoffBase); msg != "" {
		add(".backoff_base_ms", "%s", msg)
	}
	if msg := checkDuration("max_backoff_ms", r.MaxBackoff); msg != "" {
		add(".max_backoff_ms", "%s", msg)
	}
	if order && r.BackoffBase >= 0 && r.MaxBackoff >= 0 && r.BackoffBase > r.MaxBackoff {
		add(".max_backoff_ms", "backoff_base_ms (%v) exceeds max_backoff_ms (%v)", r.BackoffBase, r.MaxBackoff)
	}
	return probs
}

// checkDuration says what is wrong with a step's duration that is not 0
// (the default), or returns "".
func checkDuration(what string, d time.Duration) string {
	switch {
	case d < 0:
		return fmt.Sprintf("%s is negative (%v)", what, d)
	case d > 0 && d < StepDurationMin:
		return fmt.Sprintf("%s (%v) is shorter than %v; durations are kept to the millisecond", what, d, StepDurationMin)
	case d > StepDurationMax:
		return fmt.Sprintf("%s (%v) exceeds the maximum of %v (365 days)", what, d, StepDurationMax)
	}
	return ""
}

// checkGraph runs dag.Build and translates its problems.
func checkGraph(t *Template) []Problem {
	nodes := make([]dag.Node, len(t.Steps))
	for i, s := range t.Steps {
		nodes[i] = dag.Node{Name: s.Name, Deps: s.Dependencies}
	}
	_, err := dag.Build(nodes)
	var derr *dag.Error
	if !errors.As(err, &derr) {
		return nil
	}
	probs := make([]Problem, 0, len(derr.Problems))
	dupSeen := map[string]int{}
	for _, dp := range derr.Problems {
		p := Problem{Code: string(dp.Code), Step: dp.Step, Field: fmt.Sprintf("steps[%d]", dp.Index), Message: dp.Message}
		switch dag.Code(p.Code) {
		case dag.CodeEmptyStepName, dag.CodeDuplicateStepName:
			p.Field += ".name"
		case dag.CodeMissingDepRef, dag.CodeSelfDependency, dag.CodeDuplicateDep:
			nth := 0
			if dp.Code == dag.CodeDuplicateDep {
				key := fmt.Sprintf("%d\x00%s", dp.Index, dp.Dep)
				dupSeen[key]++
				nth = dupSeen[key]
			}
			p.Field += fmt.Sprintf(".dependencies[%d]", nthIndex(t.Steps[dp.Index].Dependencies, dp.Dep, nth))
		case dag.CodeCycleDetected:
			p.Field += ".dependencies"
			p.Message = "dependency cycle " + strings.Join(dp.Path, " -> ") + " (each step depends on the next)"
		}
		probs = append(probs, p)
	}
	return probs
}

// nthIndex returns the index of the (n+1)th occurrence of v in s, or 0.
func nthIndex(s []string, v string, n int) int {
	for i, e := range s {
		if e == v {
			if n == 0 {
				return i
			}
			n--
		}
	}
	return 0
}

// checkStepKinds checks the rules that tie decision and batch steps to
// their neighbours.
func checkStepKinds(t *Template) []Problem {
	var probs []Problem
	types := make(map[string]StepType, len(t.Steps))
	hasWorkerChild := map[string]bool{}
	for _, s := range t.Steps {
		types[s.Name] = s.Type
	}
	for _, s := range t.Steps {
		if s.Type == StepBatchWorker {
			for _, d := range s.Dependencies {
				hasWorkerChild[d] = true
			}
		}
	}
	for i, s := range t.Steps {
		p := fmt.Sprintf("steps[%d]", i)
		add := func(code, field, format string, args ...any) {
			probs = append(probs, Problem{Code: code, Step: s.Name, Field: p + field, Message: fmt.Sprintf(format, args...)})
		}
		switch s.Type {
		case StepDecision:
			if len(s.Dependencies) == 0 {
				add(CodeInvalidStepType, ".dependencies", "a decision step must depend on at least one step")
			}
		case StepBatchable:
			if !hasWorkerChild[s.Name] && (s.Batch == nil || s.Batch.WorkerTemplate == "") {
				add(CodeInvalidBatchConfig, "", "batchable step has no batch_worker step depending on it and no batch_config.worker_template")
			}
		case StepBatchWorker:
			if !slices.ContainsFunc(s.Dependencies, func(d string) bool { return types[d] == StepBatchable }) {
				add(CodeInvalidBatchConfig, ".dependencies", "a batch_worker step must depend on the batchable step that creates its workers")
			}
		}
		if s.Batch != nil && s.Batch.WorkerTemplate != "" {
			if wt, ok := types[s.Batch.WorkerTemplate]; !ok || wt != StepBatchWorker {
				add(CodeUnknownWorkerTemplate, ".batch_config.worker_template", "worker_template %q names no batch_worker step", s.Batch.WorkerTemplate)
			}
		}
	}
	return probs
}

// checkEnvironments checks every environment's overrides, and the retry
// policies that result from applying them.
func checkEnvironments(t *Template) []Problem {
	var probs []Problem
	for _, name := range slices.Sorted(maps.Keys(t.Environments)) {
		env := t.Environments[name]
		for k, o := range env.Steps {
			p := fmt.Sprintf("environments.%s.steps[%d]", name, k)
			if msg := checkDuration("the timeout", o.Timeout); msg != "" {
				probs = append(probs, Problem{Code: CodeInvalidTimeout, Step: o.Name, Field: p + ".timeout_seconds", Message: msg})
			}
			// The base is compared with the maximum below, on the merged policy.
			r := RetryPolicy{MaxAttempts: o.Retry.MaxAttempts, Backoff: o.Retry.Backoff, BackoffBase: o.Retry.BackoffBase, MaxBackoff: o.Retry.MaxBackoff}.withDefaults()
			probs = append(probs, checkRetry(r, o.Name, p+".retry", false)...)
		}
		c := t.clone()
		probs = append(probs, applyEnvironment(c, name, env)...)
		c = c.WithDefaults()
		for i, s := range c.Steps {
			orig := t.Steps[i].Retry
			if orig.BackoffBase > orig.MaxBackoff || s.Retry.BackoffBase < 0 || s.Retry.MaxBackoff < 0 {
				continue // reported on the step itself or on the override
			}
			if s.Retry.BackoffBase > s.Retry.MaxBackoff {
				probs = append(probs, Problem{Code: CodeInvalidRetry, Step: s.Name, Field: "environments." + name + ".steps",
					Message: fmt.Sprintf("in environment %q, backoff_base_ms (%v) exceeds max_backoff_ms (%v)", name, s.Retry.BackoffBase, s.Retry.MaxBackoff)})
			}
		}
	}
	return probs
}

// keyHints suggests the right key for some common wrong ones.
var keyHints = map[string]string{
	"namespace":   "namespace_name",
	"timeout":     "timeout_seconds",
	"limit":       "max_attempts",
	"retries":     "max_attempts",
	"max_retries": "max_attempts",
	"attempts":    "max_attempts",
	"deps":        "dependencies",
	"callable":    "handler.callable",
}

// isBad reports whether path is, or lies under, a path with a wrong value,
// whose later problems would only repeat the first.
func (d *yamlDecoder) isBad(path string) bool {
	for _, b := range d.bad {
		if path == b || strings.HasPrefix(path, b+".") || strings.HasPrefix(path, b+"[") {
			return true
		}
	}
	return false
}

var stepPath = regexp.MustCompile(`^steps\[(\d+)\]`)

// locate fills in the line and the step of a problem from its path.
func (d *yamlDecoder) locate(p *Problem, t *Template) {
	for f := p.Field; p.Line == 0 && f != ""; f = parentPath(f) {
		p.Line = d.lines[f]
	}
	if m := stepPath.FindStringSubmatch(p.Field); m != nil && p.Step == "" {
		if i, err := strconv.Atoi(m[1]); err == nil && i < len(t.Steps) {
			p.Step = t.Steps[i].Name
		}
	}
}

func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

func lastKey(p string) string {
	if i := strings.LastIndexAny(p, ".["); i >= 0 && p[i] == '.' {
		return p[i+1:]
	}
	if i := strings.LastIndex(p, "."); i >= 0 {
		return p[i+1:]
	}
	return p
}

func suggestKey(key string, known []string) string {
	if h, ok := keyHints[key]; ok {
		if slices.Contains(known, strings.Split(h, ".")[0]) {
			return h
		}
	}
	// Allow one edit per three letters, so that short keys suggest nothing.
	best, bestDist := "", min(len(key)/3, 3)+1
	for _, k := range known {
		if dist := editDistance(key, k); dist < bestDist || (dist == bestDist && k < best) {
			best, bestDist = k, dist
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func describe(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("string %q", x)
	case bool:
		return fmt.Sprintf("boolean %v", x)
	case int64, uint64:
		return fmt.Sprintf("integer %v", x)
	case float64:
		return fmt.Sprintf("number %v", x)
	}
	return fmt.Sprintf("%T", v)
}

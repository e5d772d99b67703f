package tasker

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/lexer"
	"github.com/goccy/go-yaml/parser"
)

// legacyKeys lists, by section, the keys of Tasker Core's templates that
// mean nothing here. They are accepted and ignored, contents unchecked, so
// that Tasker Core's YAML loads as is; any other unknown key is an
// UNKNOWN_KEY problem. Keys that start with "x-" are ignored too, in every
// section, as a place for YAML anchors and tooling.
var legacyKeys = map[string][]string{
	"template": {"system_dependencies", "domain_events"},
	"step":     {"system_dependency", "publishes_events", "result_schema"},
	"handler":  {"resolver"},
}

// ParseOption changes what ParseTemplate does.
type ParseOption func(*parseOptions)

type parseOptions struct {
	env                          string
	maxBytes, maxDepth, maxNodes int
	loader                       SchemaLoader
}

func newParseOptions(opts []ParseOption) parseOptions {
	var o parseOptions
	for _, opt := range opts {
		opt(&o)
	}
	o.maxBytes = limit(o.maxBytes, MaxTemplateBytesDefault)
	o.maxDepth = limit(o.maxDepth, MaxTemplateDepthDefault)
	o.maxNodes = limit(o.maxNodes, MaxTemplateNodesDefault)
	return o
}

// WithEnvironment makes ParseTemplate apply the overrides of the named
// environment (from the template's `environments`) after validation. An
// unknown name is an UNKNOWN_ENVIRONMENT problem; "" applies none.
func WithEnvironment(name string) ParseOption {
	return func(o *parseOptions) { o.env = name }
}

// ParseTemplate parses a template in Tasker Core's YAML layout, fills in
// the defaults (see WithDefaults) and validates it. Every problem found is
// reported at once in a *ValidationError, with the YAML path and line of
// each; keys the format does not define are problems, except Tasker Core's
// legacy keys (system_dependencies, domain_events, system_dependency,
// publishes_events, result_schema, handler.resolver), which are ignored.
//
// Differences from Tasker Core: depends_on is accepted as an alias of
// dependencies and step_type of type; identity_strategy sets the identity
// strategy; keys that start with "x-" are ignored (a place for anchors); max_attempts: 0 means one attempt; an environment's retry
// override changes only the keys it gives; handler.initialization
// overrides are merged at every depth.
//
// An untrusted template costs bounded time and memory: a source over MaxTemplateBytesDefault,
// nesting deeper than MaxTemplateDepthDefault, or more than MaxTemplateNodesDefault nodes with
// its aliases expanded is refused before it is read further, with a TEMPLATE_TOO_LARGE problem
// whose Err is a *LimitError (errors.Is(err, ErrTemplateTooLarge)); WithMaxTemplateBytes,
// WithMaxTemplateDepth and WithMaxTemplateNodes change the limits. An input_schema may refer
// to documents outside the template ($ref to a file or a URL) only through
// WithInputSchemaLoader.
func ParseTemplate(data []byte, opts ...ParseOption) (*Template, error) {
	o := newParseOptions(opts)
	if len(data) > o.maxBytes {
		return nil, tooLarge(&LimitError{Limit: LimitBytes, Max: o.maxBytes, Value: len(data)})
	}
	d := &yamlDecoder{lines: map[string]int{}, opts: o}
	t := d.decode(data)
	if t == nil {
		return nil, &ValidationError{Problems: d.problems}
	}
	t.InputSchemaLoader = o.loader
	t = t.WithDefaults()
	probs := d.problems
	for _, p := range validateTemplate(t) {
		if !d.isBad(p.Field) {
			probs = append(probs, p)
		}
	}
	if _, ok := t.Environments[o.env]; o.env != "" && !ok {
		probs = append(probs, unknownEnvironment(t, o.env))
	}
	if len(probs) == 0 && o.env != "" {
		var err error
		if t, err = t.ForEnvironment(o.env); err != nil {
			return nil, err
		}
	}
	if len(probs) == 0 {
		return t, nil
	}
	for i := range probs {
		d.locate(&probs[i], t)
	}
	slices.SortStableFunc(probs, func(a, b Problem) int { return a.Line - b.Line })
	return nil, &ValidationError{Template: t.Key(), Problems: probs}
}

// ParseTemplateFile reads and parses a template file; see ParseTemplate. It reads no more of the
// file than the size limit (WithMaxTemplateBytes) allows.
func ParseTemplateFile(path string, opts ...ParseOption) (*Template, error) {
	data, err := readLimited(path, newParseOptions(opts).maxBytes)
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", path, err)
	}
	t, err := ParseTemplate(data, opts...)
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", path, err)
	}
	return t, nil
}

// readLimited reads a file, or returns a *LimitError (in a *ValidationError) once it has read
// more than maxBytes of it.
func readLimited(path string, maxBytes int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read template: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > int64(maxBytes) {
		return nil, tooLarge(&LimitError{Limit: LimitBytes, Max: maxBytes, Value: int(min(fi.Size(), math.MaxInt))})
	}
	r := io.Reader(f)
	if maxBytes < math.MaxInt {
		r = io.LimitReader(f, int64(maxBytes)+1)
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read template: %w", err)
	}
	if len(data) > maxBytes {
		return nil, tooLarge(&LimitError{Limit: LimitBytes, Max: maxBytes, Value: len(data)})
	}
	return data, nil
}

// tooLarge wraps a *LimitError in the *ValidationError that ParseTemplate returns.
func tooLarge(le *LimitError) error {
	return &ValidationError{Problems: []Problem{{Code: CodeTemplateTooLarge, Line: le.Line, Message: le.Error(), Err: le}}}
}

// yamlDecoder turns the YAML syntax tree into a Template, recording every
// problem and the line of every path.
type yamlDecoder struct {
	opts     parseOptions
	anchors  map[string]ast.Node
	lines    map[string]int // YAML path -> line
	bad      []string       // paths with an INVALID_VALUE problem
	problems []Problem
}

// limitProblem records err as a problem if it is a *LimitError or a recursive alias, and
// reports whether it did.
func (d *yamlDecoder) limitProblem(err error) bool {
	var le *LimitError
	var ae *yamlAliasError
	switch {
	case errors.As(err, &le):
		d.problems = append(d.problems, Problem{Code: CodeTemplateTooLarge, Line: le.Line, Message: le.Error(), Err: le})
	case errors.As(err, &ae):
		d.problems = append(d.problems, Problem{Code: CodeInvalidYAML, Line: ae.line, Message: ae.Error()})
	default:
		return false
	}
	return true
}

func (d *yamlDecoder) decode(data []byte) *Template {
	// The depth is checked on the bytes, then on the tokens, before the parser builds a tree:
	// its cost grows with the square of the depth.
	if d.limitProblem(rawDepth(data, d.opts.maxDepth)) {
		return nil
	}
	tokens := lexer.Tokenize(string(data))
	if d.limitProblem(tokenDepth(tokens, d.opts.maxDepth)) {
		return nil
	}
	file, err := parser.Parse(tokens, 0)
	if err != nil {
		p := Problem{Code: CodeInvalidYAML, Message: err.Error()}
		var ye yaml.Error
		if errors.As(err, &ye) {
			p.Message = ye.GetMessage()
			if tk := ye.GetToken(); tk != nil && tk.Position != nil {
				p.Line = tk.Position.Line
			}
		}
		d.problems = append(d.problems, p)
		return nil
	}
	var bodies []ast.Node
	for _, doc := range file.Docs {
		if doc != nil && doc.Body != nil {
			bodies = append(bodies, doc.Body)
		}
	}
	switch len(bodies) {
	case 0:
		d.problems = append(d.problems, Problem{Code: CodeInvalidYAML, Message: "the document is empty"})
		return nil
	case 1:
	default:
		d.problems = append(d.problems, Problem{Code: CodeInvalidYAML, Line: lineOf(bodies[1]),
			Message: "more than one YAML document; a file holds one template"})
		return nil
	}
	d.anchors = map[string]ast.Node{}
	for _, n := range ast.Filter(ast.AnchorType, bodies[0]) {
		if a, ok := n.(*ast.AnchorNode); ok && a.Name != nil {
			d.anchors[a.Name.GetToken().Value] = a.Value
		}
	}
	x := &expansion{anchors: d.anchors, maxNodes: d.opts.maxNodes, maxDepth: d.opts.maxDepth,
		memo: map[ast.Node]shape{}, active: map[ast.Node]bool{}}
	if _, err := x.measure(bodies[0]); d.limitProblem(err) {
		return nil
	}
	return d.template(bodies[0])
}

func (d *yamlDecoder) problem(code, path string, line int, format string, args ...any) {
	d.problems = append(d.problems, Problem{Code: code, Field: path, Line: line, Message: fmt.Sprintf(format, args...)})
}

// invalid reports a value of the wrong type or form.
func (d *yamlDecoder) invalid(n ast.Node, path, format string, args ...any) {
	d.bad = append(d.bad, path)
	line := lineOf(n)
	if line == 0 {
		line = d.lines[path]
	}
	d.problem(CodeInvalidValue, path, line, "%s: %s", lastKey(path), fmt.Sprintf(format, args...))
}

func lineOf(n ast.Node) int {
	if n == nil {
		return 0
	}
	if tk := n.GetToken(); tk != nil && tk.Position != nil {
		return tk.Position.Line
	}
	return 0
}

// resolve follows anchors, aliases and tags on collections to the node that
// holds the value.
func (d *yamlDecoder) resolve(n ast.Node) ast.Node {
	for range 64 {
		switch v := n.(type) {
		case *ast.AnchorNode:
			n = v.Value
		case *ast.AliasNode:
			target, ok := d.anchors[v.Value.GetToken().Value]
			if !ok {
				return v
			}
			n = target
		case *ast.TagNode:
			switch v.Value.(type) {
			case *ast.MappingNode, *ast.SequenceNode, *ast.AnchorNode, *ast.AliasNode:
				n = v.Value
			default:
				return v
			}
		default:
			return n
		}
	}
	return n
}

type yamlEntry struct {
	key   string
	line  int
	value ast.Node
}

// entries returns a mapping's entries, merge keys (<<) expanded. A null
// gives none; anything else but a mapping is an INVALID_VALUE problem.
func (d *yamlDecoder) entries(n ast.Node, path string) []yamlEntry {
	n = d.resolve(n)
	switch v := n.(type) {
	case nil, *ast.NullNode:
		return nil
	case *ast.MappingNode:
		var own, merged []yamlEntry
		for _, mv := range v.Values {
			if mv.Key.IsMergeKey() {
				src := d.resolve(mv.Value)
				if seq, ok := src.(*ast.SequenceNode); ok {
					for _, e := range seq.Values {
						merged = append(merged, d.entries(e, path)...)
					}
				} else {
					merged = append(merged, d.entries(src, path)...)
				}
				continue
			}
			own = append(own, yamlEntry{key: keyString(mv.Key), line: lineOf(mv.Key), value: mv.Value})
		}
		if len(merged) == 0 {
			return own
		}
		seen := make(map[string]bool, len(own)+len(merged))
		for _, o := range own {
			seen[o.key] = true
		}
		for _, e := range merged {
			if !seen[e.key] {
				seen[e.key] = true
				own = append(own, e)
			}
		}
		return own
	default:
		d.invalid(n, path, "expected a mapping, got %s", kindOf(n))
		return nil
	}
}

func keyString(k ast.MapKeyNode) string {
	if s, ok := k.(ast.ScalarNode); ok {
		if v := s.GetValue(); v != nil {
			return fmt.Sprint(v)
		}
	}
	return k.String()
}

// fields decodes a mapping whose keys are known: each key's function gets
// the value and its path; unknown keys are UNKNOWN_KEY problems unless
// they are legacy keys of the section.
func (d *yamlDecoder) fields(n ast.Node, path, section string, fns map[string]func(ast.Node, string)) {
	for _, e := range d.entries(n, path) {
		p := e.key
		if path != "" {
			p = path + "." + e.key
		}
		d.lines[p] = e.line
		if fn, ok := fns[e.key]; ok {
			fn(e.value, p)
			continue
		}
		if slices.Contains(legacyKeys[section], e.key) || strings.HasPrefix(e.key, "x-") {
			continue
		}
		msg := fmt.Sprintf("unknown key %q", e.key)
		if path != "" {
			msg += " in " + stepPath.ReplaceAllString(path, "steps[]")
		}
		if hint := suggestKey(e.key, slices.Collect(maps.Keys(fns))); hint != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", hint)
		}
		d.problem(CodeUnknownKey, p, e.line, "%s", msg)
	}
}

// scalar returns the Go value of a scalar node (nil for null) or reports
// that the node is not a scalar.
func (d *yamlDecoder) scalar(n ast.Node, path string) (any, bool) {
	n = d.resolve(n)
	switch v := n.(type) {
	case nil, *ast.NullNode:
		return nil, true
	case *ast.StringNode:
		return v.Value, true
	case *ast.MappingNode, *ast.SequenceNode, *ast.AliasNode:
		d.invalid(n, path, "expected a single value, got %s", kindOf(n))
		return nil, false
	default:
		var out any
		if err := yaml.NodeToValue(n, &out); err != nil {
			d.invalid(n, path, "%v", err)
			return nil, false
		}
		return out, true
	}
}

func (d *yamlDecoder) str(n ast.Node, path string) string {
	v, ok := d.scalar(n, path)
	if !ok || v == nil {
		return ""
	}
	s, ok := v.(string)
	if !ok {
		d.invalid(n, path, "expected a string, got %s", describe(v))
	}
	return s
}

func (d *yamlDecoder) integer(n ast.Node, path string) (int, bool) {
	f, ok := d.number(n, path, true)
	return int(f), ok
}

// number reads a number; whole asks for an integer (of at most 32 bits).
func (d *yamlDecoder) number(n ast.Node, path string, whole bool) (float64, bool) {
	v, ok := d.scalar(n, path)
	if !ok || v == nil {
		return 0, false
	}
	var f float64
	switch x := v.(type) {
	case int64:
		f = float64(x)
	case uint64:
		f = float64(x)
	case float64:
		f = x
	default:
		ok = false
	}
	if ok && whole {
		ok = f == math.Trunc(f) && math.Abs(f) <= math.MaxInt32
	}
	if ok && !math.IsInf(f, 0) && !math.IsNaN(f) {
		return f, true
	}
	want := "a number"
	if whole {
		want = "an integer"
	}
	d.invalid(n, path, "expected %s, got %s", want, describe(v))
	return 0, false
}

func (d *yamlDecoder) boolean(n ast.Node, path string) (bool, bool) {
	v, ok := d.scalar(n, path)
	if !ok || v == nil {
		return false, false
	}
	if b, ok := v.(bool); ok {
		return b, true
	}
	d.invalid(n, path, "expected true or false, got %s", describe(v))
	return false, false
}

func (d *yamlDecoder) strings(n ast.Node, path string) []string {
	var out []string
	d.each(n, path, func(e ast.Node, p string) {
		if s := d.str(e, p); s != "" || !d.isBad(p) {
			out = append(out, s) // an empty name is judged by validation
		}
	})
	return out
}

// freeJSON converts a free-form value (metadata, initialization,
// input_schema) to its JSON form.
func (d *yamlDecoder) freeJSON(n ast.Node, path string) []byte {
	v, err := d.plain(n)
	if err == nil {
		var b []byte
		if b, err = json.Marshal(v); err == nil {
			if string(b) == "null" {
				return nil
			}
			return b
		}
	}
	d.invalid(n, path, "%v", err)
	return nil
}

// freeMap converts a free-form mapping to a JSON-style map; empty is nil.
func (d *yamlDecoder) freeMap(n ast.Node, path string) map[string]any {
	b := d.freeJSON(n, path)
	if b == nil {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		d.invalid(n, path, "expected a mapping, got %s", kindOf(d.resolve(n)))
		return nil
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

// plain converts a node to plain Go values, following anchors and aliases. The
// document's expanded size and depth are bounded before (see expansion), and recursive
// aliases refused there.
func (d *yamlDecoder) plain(n ast.Node) (any, error) {
	n = d.resolve(n)
	switch v := n.(type) {
	case nil, *ast.NullNode:
		return nil, nil
	case *ast.MappingNode:
		m := map[string]any{}
		for _, e := range d.entries(v, "") {
			x, err := d.plain(e.value)
			if err != nil {
				return nil, err
			}
			m[e.key] = x
		}
		return m, nil
	case *ast.SequenceNode:
		s := make([]any, len(v.Values))
		for i, e := range v.Values {
			x, err := d.plain(e)
			if err != nil {
				return nil, err
			}
			s[i] = x
		}
		return s, nil
	case *ast.AliasNode:
		return nil, fmt.Errorf("unknown alias %s", v.String())
	default:
		var out any
		err := yaml.NodeToValue(n, &out)
		return out, err
	}
}

// fieldFns is the decoding function of each key of a section.
type fieldFns = map[string]func(ast.Node, string)

func (d *yamlDecoder) template(n ast.Node) *Template {
	t := &Template{}
	d.fields(n, "", "template", fieldFns{
		"name":              func(v ast.Node, p string) { t.Name = d.str(v, p) },
		"namespace_name":    func(v ast.Node, p string) { t.Namespace = d.str(v, p) },
		"version":           func(v ast.Node, p string) { t.Version = d.version(v, p) },
		"description":       func(v ast.Node, p string) { t.Description = d.str(v, p) },
		"metadata":          func(v ast.Node, p string) { t.Metadata = d.freeMap(v, p) },
		"input_schema":      func(v ast.Node, p string) { t.InputSchema = d.freeJSON(v, p) },
		"identity_strategy": func(v ast.Node, p string) { t.Identity = IdentityStrategy(d.str(v, p)) },
		"lifecycle":         func(v ast.Node, p string) { t.Lifecycle = d.lifecycle(v, p) },
		"environments":      func(v ast.Node, p string) { t.Environments = d.environments(v, p) },
		"steps": func(v ast.Node, p string) {
			d.each(v, p, func(e ast.Node, ep string) { t.Steps = append(t.Steps, d.step(e, ep)) })
		},
	})
	return t
}

// version accepts an unquoted number (version: 1.0) as its text.
func (d *yamlDecoder) version(n ast.Node, path string) string {
	switch v := d.resolve(n).(type) {
	case *ast.IntegerNode, *ast.FloatNode:
		return v.GetToken().Value
	}
	return d.str(n, path)
}

// each calls fn for every element of a list.
func (d *yamlDecoder) each(n ast.Node, path string, fn func(ast.Node, string)) {
	switch v := d.resolve(n).(type) {
	case nil, *ast.NullNode:
	case *ast.SequenceNode:
		for i, e := range v.Values {
			p := fmt.Sprintf("%s[%d]", path, i)
			d.lines[p] = lineOf(e)
			fn(e, p)
		}
	default:
		d.invalid(v, path, "expected a list, got %s", kindOf(v))
	}
}

func (d *yamlDecoder) step(n ast.Node, path string) StepTemplate {
	var s StepTemplate
	depsKey := ""
	deps := func(v ast.Node, p string) {
		if depsKey != "" {
			d.invalid(v, p, "%s is also given; use only dependencies", depsKey)
			return
		}
		depsKey = lastKey(p)
		// Validation reports problems at steps[i].dependencies[j].
		canonical := parentPath(p) + ".dependencies"
		d.lines[canonical] = d.lines[p]
		s.Dependencies = d.strings(v, canonical)
	}
	stepType := func(v ast.Node, p string) {
		s.Type = StepType(d.str(v, p))
		d.lines[parentPath(p)+".type"] = d.lines[p]
	}
	d.fields(n, path, "step", fieldFns{
		"name":         func(v ast.Node, p string) { s.Name = d.str(v, p) },
		"description":  func(v ast.Node, p string) { s.Description = d.str(v, p) },
		"handler":      func(v ast.Node, p string) { s.Handler = d.handler(v, p) },
		"dependencies": deps,
		"depends_on":   deps,
		"type":         stepType,
		"step_type":    stepType,
		"retry": func(v ast.Node, p string) {
			r := d.retry(v, p)
			s.Retry = RetryPolicy{MaxAttempts: r.MaxAttempts, Backoff: r.Backoff, BackoffBase: r.BackoffBase, MaxBackoff: r.MaxBackoff}
			s.Retry.NoRetry = r.Retryable != nil && !*r.Retryable
		},
		"timeout_seconds": func(v ast.Node, p string) {
			if f, ok := d.number(v, p, false); ok {
				s.Timeout = fromSeconds(f)
			}
		},
		"batch_config": func(v ast.Node, p string) { s.Batch = d.batch(v, p) },
	})
	return s
}

func (d *yamlDecoder) handler(n ast.Node, path string) HandlerSpec {
	var h HandlerSpec
	d.fields(n, path, "handler", fieldFns{
		"callable":       func(v ast.Node, p string) { h.Callable = d.str(v, p) },
		"method":         func(v ast.Node, p string) { h.Method = d.str(v, p) },
		"initialization": func(v ast.Node, p string) { h.Initialization = d.freeMap(v, p) },
	})
	return h
}

// retry reads a retry section, of a step or of an override. max_attempts:
// 0 means one attempt; an absent key stays 0 (the default, or unchanged).
func (d *yamlDecoder) retry(n ast.Node, path string) RetryOverride {
	var r RetryOverride
	d.fields(n, path, "retry", fieldFns{
		"retryable": func(v ast.Node, p string) {
			if b, ok := d.boolean(v, p); ok {
				r.Retryable = &b
			}
		},
		"max_attempts": func(v ast.Node, p string) {
			if i, ok := d.integer(v, p); ok {
				r.MaxAttempts = cmp.Or(i, 1)
			}
		},
		"backoff": func(v ast.Node, p string) { r.Backoff = BackoffKind(d.str(v, p)) },
		"backoff_base_ms": func(v ast.Node, p string) {
			if f, ok := d.number(v, p, false); ok {
				r.BackoffBase = fromMillis(f)
			}
		},
		"max_backoff_ms": func(v ast.Node, p string) {
			if f, ok := d.number(v, p, false); ok {
				r.MaxBackoff = fromMillis(f)
			}
		},
	})
	return r
}

// batch reads a batch_config. An explicit 0 for batch_size or parallelism
// is a problem here, since 0 in Go means the default.
func (d *yamlDecoder) batch(n ast.Node, path string) *BatchConfig {
	b := &BatchConfig{}
	positive := func(dst *int) func(ast.Node, string) {
		return func(v ast.Node, p string) {
			if i, ok := d.integer(v, p); ok {
				if i == 0 {
					d.problem(CodeInvalidBatchConfig, p, lineOf(v), "%s must be positive, not 0", lastKey(p))
				}
				*dst = i
			}
		}
	}
	d.fields(n, path, "batch_config", fieldFns{
		"batch_size":      positive(&b.BatchSize),
		"parallelism":     positive(&b.Parallelism),
		"cursor_field":    func(v ast.Node, p string) { b.CursorField = d.str(v, p) },
		"worker_template": func(v ast.Node, p string) { b.WorkerTemplate = d.str(v, p) },
		"failure_strategy": func(v ast.Node, p string) {
			b.FailureStrategy = BatchFailureStrategy(d.str(v, p))
		},
		"max_workers": func(v ast.Node, p string) { b.MaxWorkers, _ = d.integer(v, p) },
	})
	return b
}

func (d *yamlDecoder) lifecycle(n ast.Node, path string) *Lifecycle {
	l := &Lifecycle{}
	minutes := func(dst *int) func(ast.Node, string) {
		return func(v ast.Node, p string) { *dst, _ = d.integer(v, p) }
	}
	flag := func(dst *bool) func(ast.Node, string) {
		return func(v ast.Node, p string) { *dst, _ = d.boolean(v, p) }
	}
	d.fields(n, path, "lifecycle", fieldFns{
		"max_duration_minutes":                 minutes(&l.MaxDurationMinutes),
		"max_waiting_for_dependencies_minutes": minutes(&l.MaxWaitingForDependenciesMinutes),
		"max_waiting_for_retry_minutes":        minutes(&l.MaxWaitingForRetryMinutes),
		"max_steps_in_process_minutes":         minutes(&l.MaxStepsInProcessMinutes),
		"staleness_action":                     func(v ast.Node, p string) { l.StalenessAction = d.str(v, p) },
		"auto_fail_on_timeout":                 flag(&l.AutoFailOnTimeout),
		"auto_dlq_on_timeout":                  flag(&l.AutoDLQOnTimeout),
	})
	return l
}

func (d *yamlDecoder) environments(n ast.Node, path string) map[string]Environment {
	envs := map[string]Environment{}
	for _, e := range d.entries(n, path) {
		p := path + "." + e.key
		d.lines[p] = e.line
		var env Environment
		d.fields(e.value, p, "environment", fieldFns{
			"steps": func(v ast.Node, sp string) {
				d.each(v, sp, func(o ast.Node, op string) { env.Steps = append(env.Steps, d.override(o, op)) })
			},
		})
		envs[e.key] = env
	}
	if len(envs) == 0 {
		return nil
	}
	return envs
}

func (d *yamlDecoder) override(n ast.Node, path string) StepOverride {
	var o StepOverride
	d.fields(n, path, "override", fieldFns{
		"name": func(v ast.Node, p string) { o.Name = d.str(v, p) },
		"timeout_seconds": func(v ast.Node, p string) {
			if f, ok := d.number(v, p, false); ok {
				o.Timeout = fromSeconds(f)
			}
		},
		"retry": func(v ast.Node, p string) { o.Retry = d.retry(v, p) },
		"handler": func(v ast.Node, p string) {
			d.fields(v, p, "override_handler", fieldFns{
				"initialization": func(iv ast.Node, ip string) { o.Initialization = d.freeMap(iv, ip) },
			})
		},
	})
	return o
}

func kindOf(n ast.Node) string {
	switch v := n.(type) {
	case *ast.MappingNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.AliasNode:
		return "an unknown alias"
	case *ast.StringNode:
		return describe(v.Value)
	}
	return "a " + n.Type().YAMLName()
}

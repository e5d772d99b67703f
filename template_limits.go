package tasker

import (
	"errors"
	"fmt"
	"math"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/token"
)

// Limits of ParseTemplate and ParseTemplateFile, which bound what an untrusted template can cost
// before anything else reads it. A YAML file of a few hundred bytes can otherwise expand, through
// anchors and aliases, to gigabytes, and deep nesting costs the YAML parser time and memory in
// the square of the depth. Raise a limit with WithMaxTemplateBytes, WithMaxTemplateDepth or
// WithMaxTemplateNodes.
//
// The defaults leave room for large templates: Tasker Core's templates are under 10 KB, nest at
// most 7 collections deep and have under 700 nodes; an input_schema as large as Kubernetes' schema
// of a Pod (a few hundred KB of JSON Schema) nests about 30 deep and has tens of thousands of
// nodes. Block-style YAML takes about 10 to 20 bytes per node, so a 1 MiB template written out
// in full stays under MaxTemplateNodesDefault; only aliases or dense flow lists go past it.
const (
	// MaxTemplateBytesDefault is the largest template source read: 1 MiB.
	MaxTemplateBytesDefault = 1 << 20
	// MaxTemplateDepthDefault is the deepest nesting of mappings and lists, counted as written
	// and with aliases expanded.
	MaxTemplateDepthDefault = 100
	// MaxTemplateNodesDefault is the largest number of YAML nodes (mappings, lists, keys and
	// values) of a template with its aliases expanded. The count is made without expanding
	// anything: each anchor is counted once and its size reused for every alias of it.
	MaxTemplateNodesDefault = 100_000
)

// WithMaxTemplateBytes sets the largest template source that ParseTemplate and
// ParseTemplateFile accept, in bytes. 0 means MaxTemplateBytesDefault; a negative value removes
// the limit.
func WithMaxTemplateBytes(n int) ParseOption {
	return func(o *parseOptions) { o.maxBytes = n }
}

// WithMaxTemplateDepth sets the deepest nesting of mappings and lists that ParseTemplate accepts.
// 0 means MaxTemplateDepthDefault; a negative value removes the limit.
func WithMaxTemplateDepth(n int) ParseOption {
	return func(o *parseOptions) { o.maxDepth = n }
}

// WithMaxTemplateNodes sets the largest number of YAML nodes, aliases expanded, that
// ParseTemplate accepts. 0 means MaxTemplateNodesDefault; a negative value removes the limit.
func WithMaxTemplateNodes(n int) ParseOption {
	return func(o *parseOptions) { o.maxNodes = n }
}

// limit resolves a limit option: 0 is the default, a negative value no limit.
func limit(n, def int) int {
	switch {
	case n == 0:
		return def
	case n < 0:
		return math.MaxInt
	}
	return n
}

// ErrTemplateTooLarge is matched (errors.Is) by every *LimitError.
var ErrTemplateTooLarge = errors.New("tasker: template exceeds a parse limit")

// TemplateLimit names one of ParseTemplate's limits.
type TemplateLimit string

// The limits of ParseTemplate.
const (
	// LimitBytes is the size of the source (WithMaxTemplateBytes).
	LimitBytes TemplateLimit = "bytes"
	// LimitDepth is the nesting depth (WithMaxTemplateDepth).
	LimitDepth TemplateLimit = "depth"
	// LimitNodes is the number of nodes, aliases expanded (WithMaxTemplateNodes).
	LimitNodes TemplateLimit = "nodes"
)

// LimitError reports a template that ParseTemplate refused, before reading it further, because
// it exceeds one of the limits. ParseTemplate returns it inside a *ValidationError, as the Err of
// a TEMPLATE_TOO_LARGE problem, so errors.As finds it there.
type LimitError struct {
	// Limit is the limit exceeded.
	Limit TemplateLimit
	// Max is the limit in force.
	Max int
	// Value is the value found: the size of the source for LimitBytes; for the others, the count
	// at which reading stopped (Max+1), since the template is not read to its end.
	Value int
	// Line is where the limit was reached, 0 for LimitBytes.
	Line int
}

// Error says which limit, the values, and the option that raises it.
func (e *LimitError) Error() string {
	at := ""
	if e.Line > 0 {
		at = fmt.Sprintf(" (at line %d)", e.Line)
	}
	switch e.Limit {
	case LimitBytes:
		return fmt.Sprintf("tasker: template is %d bytes, more than the limit of %d; raise it with tasker.WithMaxTemplateBytes", e.Value, e.Max)
	case LimitDepth:
		return fmt.Sprintf("tasker: template nests mappings and lists deeper than the limit of %d%s; raise it with tasker.WithMaxTemplateDepth", e.Max, at)
	default:
		return fmt.Sprintf("tasker: template has more than the limit of %d YAML nodes, aliases expanded%s; raise it with tasker.WithMaxTemplateNodes", e.Max, at)
	}
}

// Is makes errors.Is(err, ErrTemplateTooLarge) true.
func (e *LimitError) Is(target error) bool { return target == ErrTemplateTooLarge }

// tokenDepth checks the nesting of the document as written, from its tokens, before the parser
// builds anything (its cost grows with the square of the depth). Flow collections count one
// level each; block collections are tracked by the column of their entries, as indentation
// nests them. It returns a *LimitError at the first token past maxDepth.
func tokenDepth(tokens token.Tokens, maxDepth int) error {
	type level struct {
		col int
		seq bool
	}
	var stack []level
	flow := 0
	block := func(col int, seq bool) {
		for len(stack) > 0 && stack[len(stack)-1].col > col {
			stack = stack[:len(stack)-1]
		}
		if n := len(stack); n > 0 && stack[n-1].col == col {
			top := stack[n-1]
			switch {
			case top.seq == seq:
				return // the next entry of the same collection
			case !seq && n > 1 && stack[n-2].col == col && !stack[n-2].seq:
				// key:\n- a\nnext: the list at its key's column ended; back to the mapping.
				stack = stack[:n-1]
				return
			}
		}
		stack = append(stack, level{col, seq})
	}
	for _, tk := range tokens {
		if tk.Position == nil {
			continue
		}
		switch tk.Type {
		case token.DocumentHeaderType, token.DocumentEndType:
			stack, flow = stack[:0], 0
			continue
		case token.SequenceStartType, token.MappingStartType:
			flow++
		case token.SequenceEndType, token.MappingEndType:
			flow = max(flow-1, 0)
			continue
		case token.SequenceEntryType, token.MappingKeyType:
			if flow > 0 {
				continue
			}
			block(tk.Position.Column, tk.Type == token.SequenceEntryType)
		case token.MappingValueType:
			if flow > 0 {
				continue
			}
			col := tk.Position.Column
			if p := tk.Prev; p != nil && p.Position != nil && p.Position.Line == tk.Position.Line {
				col = p.Position.Column // the key's column
			}
			block(col, false)
		default:
			continue
		}
		if len(stack)+flow > maxDepth {
			return &LimitError{Limit: LimitDepth, Max: maxDepth, Value: maxDepth + 1, Line: tk.Position.Line}
		}
	}
	return nil
}

// expansion measures a document as if its aliases were expanded, without expanding them: the
// size and height of every anchor are computed once and reused for each alias of it.
type expansion struct {
	anchors            map[string]ast.Node
	maxNodes, maxDepth int
	memo               map[ast.Node]shape
	active             map[ast.Node]bool
}

type shape struct{ nodes, height int }

// measure returns the expanded shape of n: its node count and its height in collections. It
// stops with a *LimitError as soon as either is past its limit, and with a *yamlAliasError for an
// alias inside its own anchor.
func (x *expansion) measure(n ast.Node) (shape, error) {
	var s shape
	add := func(c ast.Node) error {
		cs, err := x.measure(c)
		s.nodes = satAdd(s.nodes, cs.nodes)
		s.height = max(s.height, cs.height)
		return err
	}
	collection := false
	switch v := n.(type) {
	case nil:
		return s, nil
	case *ast.AnchorNode:
		if cs, ok := x.memo[v.Value]; ok {
			return cs, nil
		}
		x.active[v.Value] = true
		cs, err := x.measure(v.Value)
		delete(x.active, v.Value)
		if err == nil {
			x.memo[v.Value] = cs
		}
		return cs, err
	case *ast.AliasNode:
		name := v.Value.GetToken().Value
		target, ok := x.anchors[name]
		if !ok {
			return shape{nodes: 1}, nil // an unknown alias, reported by the decoder
		}
		if cs, ok := x.memo[target]; ok {
			s = cs
			break
		}
		if x.active[target] {
			return s, &yamlAliasError{name: name, line: lineOf(v)}
		}
		x.active[target] = true
		cs, err := x.measure(target)
		delete(x.active, target)
		if err != nil {
			return s, err
		}
		x.memo[target] = cs
		s = cs
	case *ast.TagNode:
		return x.measure(v.Value)
	case *ast.DocumentNode:
		return x.measure(v.Body)
	case *ast.MappingNode:
		collection, s.nodes = true, 1
		for _, mv := range v.Values {
			if err := add(mv); err != nil {
				return s, err
			}
		}
	case *ast.MappingValueNode:
		if err := add(v.Key); err != nil {
			return s, err
		}
		if err := add(v.Value); err != nil {
			return s, err
		}
	case *ast.MappingKeyNode:
		if err := add(v.Value); err != nil {
			return s, err
		}
	case *ast.SequenceNode:
		collection, s.nodes = true, 1
		for _, e := range v.Values {
			if err := add(e); err != nil {
				return s, err
			}
		}
	default:
		s.nodes = 1
	}
	if collection {
		s.height++
	}
	if s.height > x.maxDepth {
		return s, &LimitError{Limit: LimitDepth, Max: x.maxDepth, Value: x.maxDepth + 1, Line: lineOf(n)}
	}
	if s.nodes > x.maxNodes {
		return s, &LimitError{Limit: LimitNodes, Max: x.maxNodes, Value: x.maxNodes + 1, Line: lineOf(n)}
	}
	return s, nil
}

// satAdd adds two counts, saturating instead of overflowing.
func satAdd(a, b int) int {
	if a > math.MaxInt-b {
		return math.MaxInt
	}
	return a + b
}

// yamlAliasError reports an alias used inside the anchor it names, which would expand forever.
type yamlAliasError struct {
	name string
	line int
}

func (e *yamlAliasError) Error() string {
	return fmt.Sprintf("alias *%s is used inside its own anchor &%s", e.name, e.name)
}

// rawDepth is a fast lower bound of the nesting depth of a YAML source, read from its bytes
// before the lexer runs (which costs about a microsecond per byte, so that a megabyte of "[[[["
// would take a second to be refused). It counts what nests without costing bytes of indentation:
// flow collections ("[" and "{" outside quoted scalars, plain scalars and comments) and compact
// block lists ("- - - x"). Nesting by indentation costs bytes in the square of its depth, which
// the size limit bounds; tokenDepth and the expansion count it exactly. It returns a *LimitError
// at the first point past maxDepth.
func rawDepth(data []byte, maxDepth int) error {
	var (
		n       = len(data)
		line    = 1
		flow    = 0     // open flow collections
		dashes  = 0     // leading "- " entries of the current line (kept while in flow)
		start   = true  // at the start of a token: a quote or a bracket here is an indicator
		chain   = true  // only indentation and "- " so far on this line
		indent  = 0     // indentation of the current line
		literal = -1    // indentation of the line that opened a block scalar, -1 outside one
		plain   = false // inside a plain scalar of the block context, which may go on below
	)
	tooDeep := func() error {
		if dashes+flow > maxDepth {
			return &LimitError{Limit: LimitDepth, Max: maxDepth, Value: maxDepth + 1, Line: line}
		}
		return nil
	}
	space := func(i int) bool {
		return i >= n || data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r'
	}
	toEOL := func(i int) int {
		for i < n && data[i] != '\n' {
			i++
		}
		return i
	}
	for i := 0; i < n; {
		c := data[i]
		if c == '\n' {
			line++
			i++
			start, chain, indent = true, flow == 0, 0
			if flow == 0 {
				dashes = 0
			}
			for i < n && data[i] == ' ' {
				i++
				indent++
			}
			if plain && i < n && (data[i] == '[' || data[i] == '{') {
				start, chain = false, false // a continuation line of the plain scalar
			}
			plain = plain && !start
			if literal >= 0 {
				if i < n && data[i] != '\n' && indent <= literal && !(data[i] == '\r' || data[i] == '\t') {
					literal = -1 // the block scalar ended
				} else {
					i = toEOL(i)
				}
			}
			continue
		}
		if c == ' ' || c == '\t' || c == '\r' {
			i++
			continue
		}
		if c == '#' && (i == 0 || space(i-1)) {
			i = toEOL(i)
			continue
		}
		if start && (c == '"' || c == '\'') {
			for i++; i < n; i++ {
				if data[i] == '\n' {
					line++
				} else if c == '"' && data[i] == '\\' {
					i++
				} else if data[i] == c {
					if c == '\'' && i+1 < n && data[i+1] == '\'' {
						i++
						continue
					}
					break
				}
			}
			i++
			start, chain = false, false
			continue
		}
		if flow > 0 {
			switch c {
			case '[', '{':
				flow++
				if err := tooDeep(); err != nil {
					return err
				}
				start = true
			case ']', '}':
				flow--
				start = false
			case ',', ':', '?', '-':
				start = true
			default:
				start = false
			}
			i++
			continue
		}
		// Block context.
		switch {
		case !start:
			// Inside a plain scalar or after a quoted one: only ": " starts a value.
			if c == ':' && space(i+1) {
				start, plain = true, false
			}
			i++
		case (c == '-' || c == '?') && space(i+1):
			if c == '-' && chain {
				dashes++
				if err := tooDeep(); err != nil {
					return err
				}
			}
			i++
		case c == '[' || c == '{':
			flow, chain, start = 1, false, true
			if err := tooDeep(); err != nil {
				return err
			}
			i++
		case c == '|' || c == '>':
			literal, chain = indent, false
			i = toEOL(i)
		case c == '&' || c == '!':
			for i < n && !space(i) {
				i++
			}
			chain = false
		default:
			start, chain, plain = false, false, true
			i++
		}
	}
	return nil
}

// Package jsonsafe tells whether PostgreSQL can store a value: a JSON document in a jsonb column,
// a string in a text column. It follows what jsonb refuses in a UTF-8 database, so that the
// engine refuses such a value before its transaction, with a reason and a location, instead of
// the database refusing it inside.
//
// jsonb refuses, beyond invalid JSON: the escape \u0000 in a string, bytes that are not UTF-8, an
// escaped UTF-16 surrogate without its pair (such as "\ud800"), and numbers outside numeric's
// range: at most NumericMaxIntegerDigits digits before the decimal point, at most
// NumericMaxScale after it (as written, less the exponent), and an exponent below
// NumericMaxExponent in magnitude. Nesting deeper than MaxDepth is refused too: encoding/json
// refuses it, and PostgreSQL runs out of stack not far beyond.
package jsonsafe

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits of PostgreSQL's numeric type, which holds jsonb's numbers.
const (
	// NumericMaxIntegerDigits is how many significant digits a number may have before its
	// decimal point.
	NumericMaxIntegerDigits = 131072
	// NumericMaxScale is how many digits a number may have after its decimal point, counted as
	// written: "1.50" has 2, "1e-3" has 3, and trailing zeros count.
	NumericMaxScale = 16383
	// NumericMaxExponent bounds the exponent of a number, even of zero: |exponent| must be below
	// it.
	NumericMaxExponent = 1<<30 - 1
)

// MaxDepth is the deepest nesting of arrays and objects accepted, as encoding/json's.
const MaxDepth = 10000

// Error says why a value cannot be stored, and where.
type Error struct {
	// Path is the JSON Pointer (RFC 6901) of the offending value, "" for the whole document; for
	// a string of a text column, "".
	Path string
	// Offset is the byte offset of the offending byte in the document or string.
	Offset int
	// Reason says what is wrong.
	Reason string
}

func (e *Error) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("at byte %d: %s", e.Offset, e.Reason)
	}
	return fmt.Sprintf("at %s (byte %d): %s", e.Path, e.Offset, e.Reason)
}

// Check returns nil when raw is one JSON document that PostgreSQL's jsonb accepts, and an *Error
// otherwise.
func Check(raw []byte) error {
	c := checker{b: raw}
	c.space()
	err := c.value()
	if err == nil {
		c.space()
		if c.i < len(c.b) {
			err = c.fail("data after the JSON document")
		}
	}
	if err != nil {
		slices.Reverse(err.path)
		return &Error{Path: shorten(strings.Join(err.path, "")), Offset: err.offset, Reason: err.reason}
	}
	return nil
}

// CheckText returns nil when PostgreSQL can store s in a text column: no NUL byte and valid
// UTF-8. Otherwise it returns an *Error with the offset of the first offending byte.
func CheckText(s string) error {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == 0:
			return &Error{Offset: i, Reason: "holds a NUL character, which PostgreSQL cannot store"}
		case r == utf8.RuneError && size == 1:
			return &Error{Offset: i, Reason: fmt.Sprintf("holds byte 0x%02x, which is not UTF-8", s[i])}
		}
		i += size
	}
	return nil
}

// Sanitize makes s storable as text and as a JSON string in jsonb: each NUL character and each
// run of bytes that are not UTF-8 becomes U+FFFD.
func Sanitize(s string) string {
	if CheckText(s) == nil {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// Truncate returns s cut to at most max bytes, at a character boundary, ending with a note of
// the original length when anything was cut.
func Truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	note := fmt.Sprintf(" …[truncated: %d bytes in all]", len(s))
	n := max - len(note)
	if n < 0 {
		n, note = max, ""
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + note
}

type checker struct {
	b     []byte
	i     int
	depth int
}

// failure is an error on its way up: path collects the segments, innermost first.
type failure struct {
	offset int
	reason string
	path   []string
}

func (c *checker) fail(format string, args ...any) *failure {
	return &failure{offset: c.i, reason: fmt.Sprintf(format, args...)}
}

func (c *checker) space() {
	for c.i < len(c.b) {
		switch c.b[c.i] {
		case ' ', '\t', '\n', '\r':
			c.i++
		default:
			return
		}
	}
}

func (c *checker) value() *failure {
	if c.i >= len(c.b) {
		return c.fail("unexpected end of JSON")
	}
	switch ch := c.b[c.i]; {
	case ch == '{':
		return c.object()
	case ch == '[':
		return c.array()
	case ch == '"':
		return c.str(nil)
	case ch == '-' || ch >= '0' && ch <= '9':
		return c.number()
	case ch == 't':
		return c.literal("true")
	case ch == 'f':
		return c.literal("false")
	case ch == 'n':
		return c.literal("null")
	default:
		return c.fail("invalid character %q looking for a JSON value", ch)
	}
}

func (c *checker) literal(word string) *failure {
	if !strings.HasPrefix(string(c.b[c.i:min(len(c.b), c.i+len(word))]), word) {
		return c.fail("invalid JSON literal (expected %s)", word)
	}
	c.i += len(word)
	return nil
}

func (c *checker) enter() *failure {
	c.depth++
	if c.depth > MaxDepth {
		return c.fail("nested deeper than %d levels", MaxDepth)
	}
	return nil
}

func (c *checker) object() *failure {
	if err := c.enter(); err != nil {
		return err
	}
	c.i++ // {
	c.space()
	if c.i < len(c.b) && c.b[c.i] == '}' {
		c.i++
		c.depth--
		return nil
	}
	for {
		if c.i >= len(c.b) || c.b[c.i] != '"' {
			return c.fail("expected a string as an object key")
		}
		var key strings.Builder
		err := c.str(&key)
		if err != nil {
			err.reason += " (in an object key)"
			return err
		}
		c.space()
		if c.i >= len(c.b) || c.b[c.i] != ':' {
			return c.fail("expected ':' after an object key")
		}
		c.i++
		c.space()
		if err := c.value(); err != nil {
			err.path = append(err.path, "/"+pointerEscape(Truncate(key.String(), maxKeyInPath)))
			return err
		}
		c.space()
		if c.i >= len(c.b) {
			return c.fail("unexpected end of JSON in an object")
		}
		switch c.b[c.i] {
		case ',':
			c.i++
			c.space()
		case '}':
			c.i++
			c.depth--
			return nil
		default:
			return c.fail("expected ',' or '}' in an object")
		}
	}
}

func (c *checker) array() *failure {
	if err := c.enter(); err != nil {
		return err
	}
	c.i++ // [
	c.space()
	if c.i < len(c.b) && c.b[c.i] == ']' {
		c.i++
		c.depth--
		return nil
	}
	for n := 0; ; n++ {
		if err := c.value(); err != nil {
			err.path = append(err.path, "/"+strconv.Itoa(n))
			return err
		}
		c.space()
		if c.i >= len(c.b) {
			return c.fail("unexpected end of JSON in an array")
		}
		switch c.b[c.i] {
		case ',':
			c.i++
			c.space()
		case ']':
			c.i++
			c.depth--
			return nil
		default:
			return c.fail("expected ',' or ']' in an array")
		}
	}
}

// str checks a string. With a non-nil key (an object key, for the path of its value) it writes
// the string's text there, escapes decoded.
func (c *checker) str(key *strings.Builder) *failure {
	c.i++ // "
	for {
		if c.i >= len(c.b) {
			return c.fail("unexpected end of JSON in a string")
		}
		ch := c.b[c.i]
		switch {
		case ch == '"':
			c.i++
			return nil
		case ch < 0x20:
			return c.fail("control character 0x%02x in a string must be escaped", ch)
		case ch == '\\':
			if err := c.escape(key); err != nil {
				return err
			}
		case ch < utf8.RuneSelf:
			if key != nil {
				key.WriteByte(ch)
			}
			c.i++
		default:
			r, size := utf8.DecodeRune(c.b[c.i:])
			if r == utf8.RuneError && size == 1 {
				return c.fail("byte 0x%02x in a string is not UTF-8", ch)
			}
			if key != nil {
				key.WriteRune(r)
			}
			c.i += size
		}
	}
}

func (c *checker) escape(key *strings.Builder) *failure {
	var sink strings.Builder
	sb := key
	if sb == nil {
		sb = &sink
	}
	if c.i+1 >= len(c.b) {
		return c.fail("unexpected end of JSON in a string escape")
	}
	switch e := c.b[c.i+1]; e {
	case '"', '\\', '/':
		sb.WriteByte(e)
	case 'b':
		sb.WriteByte('\b')
	case 'f':
		sb.WriteByte('\f')
	case 'n':
		sb.WriteByte('\n')
	case 'r':
		sb.WriteByte('\r')
	case 't':
		sb.WriteByte('\t')
	case 'u':
		r, ok := c.hex4(c.i + 2)
		switch {
		case !ok:
			return c.fail(`invalid \u escape in a string`)
		case r == 0:
			return c.fail(`string holds \u0000, which PostgreSQL's jsonb cannot store`)
		case r >= 0xDC00 && r <= 0xDFFF:
			return c.fail(`string holds \u%04x, a UTF-16 low surrogate without its high surrogate`, r)
		case r >= 0xD800 && r <= 0xDBFF:
			lo, ok := rune(0), false
			if c.i+7 < len(c.b) && c.b[c.i+6] == '\\' && c.b[c.i+7] == 'u' {
				lo, ok = c.hex4(c.i + 8)
			}
			if !ok || lo < 0xDC00 || lo > 0xDFFF {
				return c.fail(`string holds \u%04x, a UTF-16 high surrogate without its low surrogate`, r)
			}
			sb.WriteRune(0x10000 + (r-0xD800)<<10 + (lo - 0xDC00))
			c.i += 12
			return nil
		default:
			sb.WriteRune(r)
		}
		c.i += 6
		return nil
	default:
		return c.fail("invalid escape \\%c in a string", e)
	}
	c.i += 2
	return nil
}

func (c *checker) hex4(at int) (rune, bool) {
	if at+4 > len(c.b) {
		return 0, false
	}
	var r rune
	for _, h := range c.b[at : at+4] {
		r <<= 4
		switch {
		case h >= '0' && h <= '9':
			r |= rune(h - '0')
		case h >= 'a' && h <= 'f':
			r |= rune(h - 'a' + 10)
		case h >= 'A' && h <= 'F':
			r |= rune(h - 'A' + 10)
		default:
			return 0, false
		}
	}
	return r, true
}

// number checks a number's syntax, then its range as PostgreSQL's numeric input does.
func (c *checker) number() *failure {
	start := c.i
	digits := func() string {
		from := c.i
		for c.i < len(c.b) && c.b[c.i] >= '0' && c.b[c.i] <= '9' {
			c.i++
		}
		return string(c.b[from:c.i])
	}
	if c.b[c.i] == '-' {
		c.i++
	}
	intPart := digits()
	switch {
	case intPart == "":
		return c.fail("invalid number: a digit must follow '-'")
	case len(intPart) > 1 && intPart[0] == '0':
		return &failure{offset: start, reason: "invalid number: leading zero"}
	}
	var frac string
	if c.i < len(c.b) && c.b[c.i] == '.' {
		c.i++
		if frac = digits(); frac == "" {
			return c.fail("invalid number: a digit must follow '.'")
		}
	}
	var exp int64
	if c.i < len(c.b) && (c.b[c.i] == 'e' || c.b[c.i] == 'E') {
		c.i++
		neg := false
		if c.i < len(c.b) && (c.b[c.i] == '+' || c.b[c.i] == '-') {
			neg = c.b[c.i] == '-'
			c.i++
		}
		raw := digits()
		if raw == "" {
			return c.fail("invalid number: a digit must follow the exponent")
		}
		e := strings.TrimLeft(raw, "0")
		if len(e) > 10 {
			e = "99999999999" // beyond any bound below, without overflowing int64
		}
		exp, _ = strconv.ParseInt("0"+e, 10, 64)
		if neg {
			exp = -exp
		}
	}
	overflow := func() *failure {
		lit := string(c.b[start:c.i])
		if len(lit) > 40 {
			lit = lit[:20] + "…" + lit[len(lit)-10:]
		}
		return &failure{offset: start, reason: fmt.Sprintf("number %s is outside the range of PostgreSQL's numeric "+
			"(at most %d digits before the decimal point and %d after)", lit, NumericMaxIntegerDigits, NumericMaxScale)}
	}
	if exp >= NumericMaxExponent || exp <= -NumericMaxExponent {
		return overflow()
	}
	if max(int64(len(frac))-exp, 0) > NumericMaxScale {
		return overflow()
	}
	all := intPart + frac
	if k := strings.IndexFunc(all, func(r rune) bool { return r != '0' }); k >= 0 {
		// Digits before the point, counted from the first significant one.
		if int64(len(intPart)-k)+exp > NumericMaxIntegerDigits {
			return overflow()
		}
	}
	return nil
}

// Bounds on the Path of an Error, which goes into error messages and logs.
const (
	maxKeyInPath = 64
	maxPath      = 256
)

// shorten keeps the start and the end of a long path.
func shorten(path string) string {
	if len(path) <= maxPath {
		return path
	}
	head, tail := maxPath/3, maxPath*2/3
	for head > 0 && !utf8.RuneStart(path[head]) {
		head--
	}
	from := len(path) - tail
	for from < len(path) && !utf8.RuneStart(path[from]) {
		from++
	}
	return path[:head] + "…" + path[from:]
}

// pointerEscape escapes a key as a JSON Pointer segment.
func pointerEscape(k string) string {
	return strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1")
}

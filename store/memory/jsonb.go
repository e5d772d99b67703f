package memory

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/tasker-systems/tasker/internal/jsonsafe"
)

// jsonb returns a JSON document as PostgreSQL's jsonb gives it back, so that the memory store
// returns the same bytes as store/postgres: object keys sorted (shorter first, then bytewise), the
// last of duplicate keys kept, ", " and ": " between items, numbers in numeric's canonical form,
// and strings escaped only where JSON requires it. What jsonb refuses (invalid JSON, \u0000 in a
// string, bytes that are not UTF-8, a lone surrogate escape, a number outside numeric's range:
// the rules of internal/jsonsafe) is an error. nil or empty input gives nil (SQL NULL).
func jsonb(raw []byte) (json.RawMessage, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	if err := jsonsafe.Check(raw); err != nil {
		return nil, fmt.Errorf("invalid input for type jsonb: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("invalid input syntax for type json: %w", err)
	}
	if _, err := dec.Token(); err == nil {
		return nil, errors.New("invalid input syntax for type json: data after the document")
	}
	var b bytes.Buffer
	if err := writeJSONB(&b, v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// mustJSONB is jsonb for documents the store builds itself.
func mustJSONB(v any) json.RawMessage {
	raw, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	out, err := jsonb(raw)
	if err != nil {
		panic(err)
	}
	return out
}

func writeJSONB(b *bytes.Buffer, v any) error {
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		if x {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case json.Number:
		s, err := numeric(string(x))
		if err != nil {
			return err
		}
		b.WriteString(s)
	case string:
		return writeString(b, x)
	case []any:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteString(", ")
			}
			if err := writeJSONB(b, e); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, func(a, b string) int {
			if len(a) != len(b) {
				return len(a) - len(b)
			}
			return strings.Compare(a, b)
		})
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteString(", ")
			}
			if err := writeString(b, k); err != nil {
				return err
			}
			b.WriteString(": ")
			if err := writeJSONB(b, x[k]); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	default:
		return fmt.Errorf("jsonb: unexpected %T", v)
	}
	return nil
}

// writeString escapes as PostgreSQL's escape_json does.
func writeString(b *bytes.Buffer, s string) error {
	if strings.ContainsRune(s, 0) {
		return errors.New(`unsupported Unicode escape sequence: \u0000 cannot be converted to text`)
	}
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if r < 0x20 {
				fmt.Fprintf(b, `\u%04x`, r)
			} else {
				var buf [utf8.UTFMax]byte
				b.Write(buf[:utf8.EncodeRune(buf[:], r)])
			}
		}
	}
	b.WriteByte('"')
	return nil
}

// numeric renders a JSON number as PostgreSQL's numeric prints it: the exponent applied, the
// number of decimals kept as written (less the exponent), leading zeros dropped, no negative zero.
// "1e2" is 100, "1.50" is 1.50, "1.5e1" is 15, "1e-2" is 0.01, "-0.0" is 0.0. jsonb has checked
// the number against numeric's range (jsonsafe.Check), which bounds the digits written here.
func numeric(lit string) (string, error) {
	neg := strings.HasPrefix(lit, "-")
	lit = strings.TrimPrefix(lit, "-")
	mant, exp := lit, 0
	if i := strings.IndexAny(lit, "eE"); i >= 0 {
		mant = lit[:i]
		var e int
		if _, err := fmt.Sscanf(lit[i+1:], "%d", &e); err != nil || e >= jsonsafe.NumericMaxExponent || e <= -jsonsafe.NumericMaxExponent {
			return "", fmt.Errorf("value overflows numeric format: %s", lit)
		}
		exp = e
	}
	intPart, frac := mant, ""
	if i := strings.IndexByte(mant, '.'); i >= 0 {
		intPart, frac = mant[:i], mant[i+1:]
	}
	digits := intPart + frac
	point := len(intPart) + exp // digits before the decimal point
	scale := max(len(frac)-exp, 0)
	if strings.Trim(digits, "0") == "" {
		// Zero, whatever its exponent (which may be up to a billion): only its scale shows.
		if scale > 0 {
			return "0." + strings.Repeat("0", scale), nil
		}
		return "0", nil
	}
	var whole, fraction string
	switch {
	case point <= 0:
		whole, fraction = "0", strings.Repeat("0", -point)+digits
	case point >= len(digits):
		whole, fraction = digits+strings.Repeat("0", point-len(digits)), ""
	default:
		whole, fraction = digits[:point], digits[point:]
	}
	whole = strings.TrimLeft(whole, "0")
	if whole == "" {
		whole = "0"
	}
	// fraction has exactly scale digits when scale > 0 (len(frac)-exp of them), none otherwise.
	fraction = fraction[:min(len(fraction), scale)]
	out := whole
	if scale > 0 {
		out += "." + fraction
	}
	if neg && strings.Trim(whole+fraction, "0") != "" {
		out = "-" + out
	}
	return out, nil
}

// Package pgname derives PostgreSQL names that tasker's packages share a rule for.
package pgname

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxNameBytes bounds, in bytes, each name a template carries that the database indexes or a
// queue is named after; the root package documents it as tasker.MaxNameBytes.
const MaxNameBytes = 255

// Check says what is wrong with a name that the database stores, or returns "".
func Check(s string) string {
	switch {
	case !utf8.ValidString(s):
		return "is not valid UTF-8"
	case strings.IndexByte(s, 0) >= 0:
		return "holds a NUL character"
	case len(s) > MaxNameBytes:
		return fmt.Sprintf("is %d bytes long; the limit is %d (MaxNameBytes)", len(s), MaxNameBytes)
	}
	return ""
}

// Truncate shortens a name for an error message.
func Truncate(s string) string {
	const keep = 64
	if len(s) <= keep {
		return s
	}
	return s[:keep] + "…"
}

// Channel returns the NOTIFY channel prefix+schema, kept within PostgreSQL's 63-byte identifier
// limit: the schema itself when it fits, a hash of it otherwise.
func Channel(prefix, schema string) string {
	if len(prefix)+len(schema) <= 63 {
		return prefix + schema
	}
	sum := sha256.Sum256([]byte(schema))
	return prefix + hex.EncodeToString(sum[:12])
}

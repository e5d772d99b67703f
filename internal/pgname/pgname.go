// Package pgname derives PostgreSQL names that tasker's packages share a rule for.
package pgname

import (
	"crypto/sha256"
	"encoding/hex"
)

// Channel returns the NOTIFY channel prefix+schema, kept within PostgreSQL's 63-byte identifier
// limit: the schema itself when it fits, a hash of it otherwise.
func Channel(prefix, schema string) string {
	if len(prefix)+len(schema) <= 63 {
		return prefix + schema
	}
	sum := sha256.Sum256([]byte(schema))
	return prefix + hex.EncodeToString(sum[:12])
}

package postgres

import (
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
)

// pgx encodes a uuid.UUID through its driver.Valuer: the UUID is formatted as text, then parsed
// back into 16 bytes, and a []uuid.UUID element by element through reflection, which was about
// half of the completer's CPU on the one-step bench. A pgtype.UUID goes to the wire as it is. The
// hot statements pass their UUIDs through these.

// pgID is id as pgx encodes it directly.
func pgID(id uuid.UUID) pgtype.UUID { return pgtype.UUID{Bytes: id, Valid: true} }

// pgIDs is ids as pgx encodes them directly, a FlatArray so that the array is not walked by
// reflection either (never nil: a nil slice is a NULL array).
func pgIDs(ids []uuid.UUID) pgtype.FlatArray[pgtype.UUID] {
	out := make(pgtype.FlatArray[pgtype.UUID], len(ids))
	for i, id := range ids {
		out[i] = pgtype.UUID{Bytes: id, Valid: true}
	}
	return out
}

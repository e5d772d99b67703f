package postgres

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/testdb"
)

// TestCheckedEnqueueTransitionsFailOnTheServer: the pipelined outcome's transition write fails in
// the database when it wrote fewer rows than expected, so that a batch whose COMMIT is already sent
// rolls back instead of committing while the client reports an error.
func TestCheckedEnqueueTransitionsFailOnTheServer(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	s := New(db.Pool, WithSchema(db.Schema))
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, s.q(enqueueTransitionsCheckedSQL), []uuid.UUID{uuid.New()}, 1)
	require.ErrorContains(t, err, "division by zero", "no step had a pending transition: 0 of 1 written")
	_, err = db.Pool.Exec(ctx, s.q(enqueueTransitionsCheckedSQL), []uuid.UUID{}, 0)
	require.NoError(t, err, "0 of 0")
}

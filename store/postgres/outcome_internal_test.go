package postgres

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/store"
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

func TestUnstorableMarksDataErrors(t *testing.T) {
	t.Parallel()
	for code, want := range map[string]bool{"54000": true, "22P05": true, "22003": true, "22021": true, "40001": false, "23505": false, "08006": false} {
		err := unstorable(fmt.Errorf("record: %w", &pgconn.PgError{Code: code}))
		require.Equal(t, want, errors.Is(err, store.ErrUnstorable), code)
		var pgErr *pgconn.PgError
		require.True(t, errors.As(err, &pgErr), "the database's error is kept: %s", code)
	}
	require.NoError(t, unstorable(nil))
}

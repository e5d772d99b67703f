package migrations_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/migrations"
)

func TestApplied(t *testing.T) {
	ctx := context.Background()
	db := testdb.New(t, testdb.WithoutMigrations())

	none, err := migrations.Applied(ctx, db.Pool, migrations.WithSchema(db.Schema))
	require.NoError(t, err, "a schema that does not exist yet has nothing applied")
	require.Empty(t, none)

	require.NoError(t, migrations.Migrate(ctx, db.Pool, migrations.WithSchema(db.Schema)))
	applied, err := migrations.Applied(ctx, db.Pool, migrations.WithSchema(db.Schema))
	require.NoError(t, err)
	all, err := migrations.All(db.Schema)
	require.NoError(t, err)
	require.Len(t, applied, len(all))
	for i, m := range applied {
		require.Equal(t, all[i].Version, m.Version)
		require.Equal(t, all[i].Name, m.Name)
		require.False(t, m.AppliedAt.IsZero())
	}

	_, err = migrations.Applied(ctx, db.Pool, migrations.WithSchema("Bad-Name"))
	require.ErrorIs(t, err, migrations.ErrInvalidSchemaName)
}

package postgres_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/queue/memqueue"
	"github.com/tasker-systems/tasker/store"
	"github.com/tasker-systems/tasker/store/postgres"
)

// TestOwnsQueue: the store owns a queue on its pool and schema, its own or another built alike,
// and no other.
func TestOwnsQueue(t *testing.T) {
	t.Parallel()
	db, other := testdb.New(t), testdb.New(t)
	s := postgres.New(db.Pool, postgres.WithSchema(db.Schema))
	var owner store.QueueOwner = s
	require.True(t, owner.OwnsQueue(s.Queue()))
	require.True(t, owner.OwnsQueue(s.DefaultQueue()))
	require.Same(t, s.Queue(), s.DefaultQueue())
	require.Equal(t, db.Schema, s.Queue().Schema())
	require.Same(t, db.Pool, s.Queue().Pool())
	require.True(t, owner.OwnsQueue(postgres.NewQueue(db.Pool, postgres.WithQueueSchema(db.Schema))), "another queue on the same pool and schema")
	require.False(t, owner.OwnsQueue(postgres.NewQueue(db.Pool)), "the default schema is not the store's")
	require.False(t, owner.OwnsQueue(postgres.NewQueue(other.Pool, postgres.WithQueueSchema(db.Schema))), "another pool")
	require.False(t, owner.OwnsQueue(memqueue.New()))
	require.False(t, owner.OwnsQueue(nil))
	var none *postgres.Queue
	require.False(t, owner.OwnsQueue(none))
}

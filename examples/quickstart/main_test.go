package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/store/memory"
)

func TestQuickstartPrintsTheResult(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	var out bytes.Buffer
	require.NoError(t, runWith(context.Background(), db.Pool, db.Schema, &out))
	require.Contains(t, out.String(), "result: 2821109907456")
	require.Contains(t, out.String(), ": complete in ")
	for _, step := range []string{"square_1", "square_2", "square_3", "square_4"} {
		require.Contains(t, out.String(), step)
	}
}

func TestQuickstartOnTheMemoryBackend(t *testing.T) {
	t.Parallel()
	engine, err := tasker.NewEngine(tasker.Config{Store: memory.New()})
	require.NoError(t, err)
	var out bytes.Buffer
	require.NoError(t, runOn(context.Background(), engine, &out))
	require.Contains(t, out.String(), "result: 2821109907456")
}

package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/store"
)

func testInspector(t *testing.T, h Harness) {
	parallelTest(t, h, "PingAnswers", testInspectorPing)
	parallelTest(t, h, "LeaderIsTheUnexpiredHolder", testInspectorLeader)
	parallelTest(t, h, "EdgesIncludeSpawnedSteps", testInspectorEdges)
}

func testInspectorPing(t *testing.T, b *bundle) {
	require.NoError(t, b.Store.Ping(context.Background()))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, b.Store.Ping(ctx), context.Canceled, "an ended context is reported")
}

func testInspectorLeader(t *testing.T, b *bundle) {
	ctx := context.Background()
	_, ok, err := b.Store.Leader(ctx, "m")
	require.NoError(t, err)
	require.False(t, ok, "nobody leads yet")

	before := time.Now().Add(-time.Second) // the database's clock may run a little apart
	require.True(t, b.lead(t, "m", "a", 400*time.Millisecond))
	l, ok, err := b.Store.Leader(ctx, "m")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "m", l.Name)
	require.Equal(t, "a", l.LeaderID)
	require.True(t, l.ElectedAt.After(before), "elected at %v", l.ElectedAt)
	require.True(t, l.ExpiresAt.After(l.ElectedAt))
	elected := l.ElectedAt

	time.Sleep(50 * time.Millisecond)
	require.True(t, b.lead(t, "m", "a", 400*time.Millisecond))
	l, _, err = b.Store.Leader(ctx, "m")
	require.NoError(t, err)
	require.Equal(t, elected, l.ElectedAt, "a renewal keeps the election time")

	_, ok, err = b.Store.Leader(ctx, "other")
	require.NoError(t, err)
	require.False(t, ok, "leaderships are by name")

	time.Sleep(600 * time.Millisecond)
	_, ok, err = b.Store.Leader(ctx, "m")
	require.NoError(t, err)
	require.False(t, ok, "an expired lease leads no more")

	require.True(t, b.lead(t, "m", "b", time.Minute))
	require.NoError(t, b.Store.Resign(ctx, store.LeadParams{Name: "m", LeaderID: "b"}))
	_, ok, err = b.Store.Leader(ctx, "m")
	require.NoError(t, err)
	require.False(t, ok, "a resigned leadership is free")
}

func testInspectorEdges(t *testing.T, b *bundle) {
	ctx := context.Background()
	start := b.newStep("start")
	route := b.newStep("route", 0)
	route.Type = "decision"
	g := b.createGraph(t, start, route, b.newStep("side", 0))
	b.run(t, g.id["start"])
	a1, a2 := b.spawnStep("a1", "route"), b.spawnStep("a2", "route")
	fin := b.spawnStep("fin", "a1", "a2")
	fin.Type = "deferred_convergence"
	spawn(t, b, b.claim(t, g.id["route"]), a1, a2, fin)
	ids := map[uuid.UUID]string{g.id["start"]: "start", g.id["route"]: "route", g.id["side"]: "side",
		a1.StepID: "a1", a2.StepID: "a2", fin.StepID: "fin"}

	edges, err := b.Store.Edges(ctx, g.task)
	require.NoError(t, err)
	var named [][2]string
	for _, e := range edges {
		named = append(named, [2]string{ids[e.From], ids[e.To]})
	}
	// By parent then child ID: the steps' IDs are UUIDv7s made in this order.
	require.Equal(t, [][2]string{{"start", "route"}, {"start", "side"}, {"route", "a1"}, {"route", "a2"}, {"a1", "fin"}, {"a2", "fin"}}, named)

	other := b.createGraph(t, b.newStep("x"), b.newStep("y", 0))
	edges, err = b.Store.Edges(ctx, other.task)
	require.NoError(t, err)
	require.Equal(t, []store.Edge{{From: other.id["x"], To: other.id["y"]}}, edges, "only the task's own edges")

	edges, err = b.Store.Edges(ctx, uuid.Must(uuid.NewV7()))
	require.NoError(t, err)
	require.Empty(t, edges, "a task that does not exist has none")
}

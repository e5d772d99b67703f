package postgres

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/store"
)

// diamondParams is a diamond task of rigNS whose roots go to the store's own queue in its commit
// (OwnedQueue), with no registry row to write: the creation CreateTask takes in one round trip.
func diamondParams(identity string) store.CreateTaskParams {
	p := store.CreateTaskParams{TaskID: uuid.Must(uuid.NewV7()), Namespace: rigNS, Name: "t", Version: "1",
		Context: json.RawMessage(`{"n": 1}`), IdentityHash: identity, OwnedQueue: true}
	for k, parents := range [][]int{nil, {0}, {0}, {1, 2}} {
		name := []string{"s0", "s1", "s2", "s3"}[k]
		p.Steps = append(p.Steps, store.NewStep{StepID: uuid.Must(uuid.NewV7()), Name: name, TemplateStep: name, Handler: "h_" + name,
			Type: "standard", MaxAttempts: 3, Retryable: true, Backoff: "none", Timeout: time.Second, Parents: parents})
	}
	return p
}

// registerRigTemplate writes the registry row the rig's tasks refer to.
func registerRigTemplate(tb testing.TB, r *rig) {
	tb.Helper()
	require.NoError(tb, r.s.RegisterTemplate(context.Background(), store.RegisterTemplateParams{Namespace: rigNS, Name: "t", Version: "1",
		Definition: json.RawMessage(`{}`), Checksum: "c"}))
}

// TestCreateTaskInOneRoundTrip: CreateTask outside a caller's transaction, with the roots' messages
// on the store's own queue, writes the task, its steps, edges and transitions and the root's
// message in one round trip; a duplicate then writes nothing, and returns the first task.
func TestCreateTaskInOneRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newRig(t)
	registerRigTemplate(t, r)
	var res *store.CreateTaskResult
	p := diamondParams("once")
	require.Equal(t, 1, r.count(func() {
		var err error
		res, err = r.s.CreateTask(ctx, nil, p)
		require.NoError(t, err)
	}))
	require.False(t, res.Duplicate)
	require.Equal(t, p.TaskID, res.Task.ID)
	require.Len(t, res.Steps, 4)
	edges, err := r.s.Edges(ctx, p.TaskID)
	require.NoError(t, err)
	require.Len(t, edges, 4)
	trs, err := r.s.Transitions(ctx, p.TaskID)
	require.NoError(t, err)
	require.NotEmpty(t, trs)
	claimed := r.claimAll(t, 10, "h_s0", "h_s1", "h_s2", "h_s3")
	require.Len(t, claimed, 1, "the root's message, and only it, is on the queue")
	require.Equal(t, "s0", claimed[0].Step.Name)

	dup := diamondParams("once")
	again, err := r.s.CreateTask(ctx, nil, dup)
	require.NoError(t, err)
	require.True(t, again.Duplicate)
	require.Equal(t, p.TaskID, again.Task.ID)
	require.Len(t, again.Steps, 4)
	var steps int
	require.NoError(t, r.s.pool.QueryRow(ctx, r.s.q(`SELECT count(*) FROM {s}.steps WHERE task_id = $1`), dup.TaskID).Scan(&steps))
	require.Zero(t, steps, "the duplicate wrote no steps")
	require.Empty(t, r.claimAll(t, 10, "h_s0"), "the duplicate sent no message")
}

// TestCreateTaskOnceConcurrentDuplicates: creations of one identity at once make one task; the
// others are duplicates of it, and no step or message of theirs is left behind.
func TestCreateTaskOnceConcurrentDuplicates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newRig(t)
	registerRigTemplate(t, r)
	const n = 8
	ids := make([]uuid.UUID, n)
	dups := make([]bool, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := r.s.CreateTask(ctx, nil, diamondParams("same"))
			if err != nil {
				t.Error(err)
				return
			}
			ids[i], dups[i] = res.Task.ID, res.Duplicate
		}()
	}
	wg.Wait()
	first := 0
	for i := range n {
		require.Equal(t, ids[0], ids[i], "every creation returns the one task")
		if !dups[i] {
			first++
		}
	}
	require.Equal(t, 1, first, "exactly one creation is not a duplicate")
	var tasks, steps int
	require.NoError(t, r.s.pool.QueryRow(ctx, r.s.q(`SELECT count(*), (SELECT count(*) FROM {s}.steps) FROM {s}.tasks`)).Scan(&tasks, &steps))
	require.Equal(t, 1, tasks)
	require.Equal(t, 4, steps)
	require.Len(t, r.claimAll(t, 10, "h_s0"), 1, "one root message")
}

// TestCreateTaskOnceFailureLeavesThePoolUsable: a creation that fails mid-pipeline (its template
// is not in the registry) writes nothing and returns the error; the pool's connections serve the
// next creations.
func TestCreateTaskOnceFailureLeavesThePoolUsable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newRig(t)
	for range 6 { // more than the pool's 4 connections
		_, err := r.s.CreateTask(ctx, nil, diamondParams(uuid.NewString()))
		require.ErrorContains(t, err, "tasks_template_fk")
	}
	registerRigTemplate(t, r)
	for range 6 {
		res, err := r.s.CreateTask(ctx, nil, diamondParams(uuid.NewString()))
		require.NoError(t, err)
		require.False(t, res.Duplicate)
	}
	var tasks, steps int
	require.NoError(t, r.s.pool.QueryRow(ctx, r.s.q(`SELECT count(*), (SELECT count(*) FROM {s}.steps) FROM {s}.tasks`)).Scan(&tasks, &steps))
	require.Equal(t, [2]int{6, 24}, [2]int{tasks, steps}, "only the creations that succeeded wrote rows")
}

package tasker_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
)

const claimRootYAML = `
name: rooted
namespace_name: rooted
version: 1.0.0
steps:
  - {name: a, handler: {callable: rooted}}
  - {name: b, handler: {callable: rooted}, dependencies: [a]}
`

// claimedAtCreation tells whether the task's root started in the transaction that created the
// task: its start transition and the task's create transition have the same xmin.
func claimedAtCreation(t *testing.T, b *bundle, task uuid.UUID) bool {
	t.Helper()
	var same bool
	require.NoError(t, b.db.Pool.QueryRow(context.Background(), `
		SELECT st.xmin::text = tt.xmin::text
		  FROM `+b.db.Schema+`.step_transitions st JOIN `+b.db.Schema+`.steps s USING (step_id), `+b.db.Schema+`.task_transitions tt
		 WHERE s.task_id = $1 AND s.name = 'a' AND st.event = 'start' AND tt.task_id = $1 AND tt.event = 'create'`, task).Scan(&same))
	return same
}

// TestCreateTaskRunsItsRootAtOnce: on PostgreSQL with its own queue, a task created while a worker
// of the creating engine has a slot free has its first step claimed in the creation's transaction
// and run in that slot (no trip through the queue); with every slot busy the root goes through
// the queue, as before. Both complete, every step once.
func TestCreateTaskRunsItsRootAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *tasker.Config) { c.Concurrency = 1 })
	b.register(t, claimRootYAML)
	hold := make(chan struct{})
	runs := make(chan string, 16)
	b.engine.HandleFunc("rooted", func(ctx context.Context, s *tasker.Step) (any, error) {
		runs <- s.TaskID.String() + "/" + s.Name
		var in struct{ Hold bool }
		if err := s.Input(&in); err != nil {
			return nil, err
		}
		if s.Name == "a" && in.Hold {
			select {
			case <-hold:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return s.Name, nil
	})
	b.start(t)
	warm := b.create(t, "rooted", "rooted", map[string]any{"i": 0})
	require.Equal(t, tasker.TaskComplete, b.wait(t, warm.ID).State) // the workers run

	// A slot is free once the last task's executor has let it go, unless a fetch from the queue
	// holds it for the moment of its claim (a wake-up, the poll): then the root goes through the
	// queue, as it should. Of a few creations made with the slot free, one at least is claimed.
	claimed, tries := 0, 0
	for ; tries < 5 && claimed == 0; tries++ {
		require.Eventually(t, func() bool {
			h, err := b.engine.Health(context.Background())
			return err == nil && h.Workers.Free == 1
		}, 10*time.Second, time.Millisecond)
		free := b.create(t, "rooted", "rooted", map[string]any{"i": 10 + tries})
		require.Equal(t, tasker.TaskComplete, b.wait(t, free.ID).State)
		if claimedAtCreation(t, b, free.ID) {
			claimed++
		}
	}
	require.Equal(t, 1, claimed, "a free slot runs the root claimed at creation (%d tries)", tries)

	busy := b.create(t, "rooted", "rooted", map[string]any{"i": 2, "Hold": true})
	require.Eventually(t, func() bool {
		task, err := b.engine.GetTask(context.Background(), busy.ID)
		return err == nil && task.Steps[0].State == tasker.StepInProgress
	}, 10*time.Second, 5*time.Millisecond)
	queued := b.create(t, "rooted", "rooted", map[string]any{"i": 3}) // the only slot is busy
	close(hold)
	require.Equal(t, tasker.TaskComplete, b.wait(t, busy.ID).State)
	require.Equal(t, tasker.TaskComplete, b.wait(t, queued.ID).State)
	require.False(t, claimedAtCreation(t, b, queued.ID), "with no slot free the root went through the queue")
	close(runs)
	seen := map[string]int{}
	for r := range runs {
		seen[r]++
	}
	require.Len(t, seen, 2*(3+tries))
	for r, n := range seen {
		require.Equal(t, 1, n, r)
	}
}

// TestCreateTaskDoesNotPassTheBacklog: a task created while steps of its namespace wait in the
// queue (a backlog made before the workers start, of a higher priority) never has its root
// claimed at creation ahead of them: every root claimed at creation was created after the last
// step of the backlog had started.
func TestCreateTaskDoesNotPassTheBacklog(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *tasker.Config) { c.Concurrency = 4 })
	b.register(t, claimRootYAML)
	b.engine.HandleFunc("rooted", func(ctx context.Context, s *tasker.Step) (any, error) {
		time.Sleep(3 * time.Millisecond)
		return s.Name, nil
	})
	ctx := context.Background()
	var backlog []uuid.UUID
	for i := range 60 {
		task, err := b.engine.CreateTask(ctx, tasker.TaskRequest{Namespace: "rooted", Name: "rooted",
			Context: map[string]any{"backlog": i}, Priority: 10})
		require.NoError(t, err)
		backlog = append(backlog, task.ID)
	}
	b.start(t)
	var fresh []uuid.UUID
	for i := 0; i < 80; i++ {
		task, err := b.engine.CreateTask(ctx, tasker.TaskRequest{Namespace: "rooted", Name: "rooted", Context: map[string]any{"new": i}})
		require.NoError(t, err)
		fresh = append(fresh, task.ID)
		time.Sleep(2 * time.Millisecond)
	}
	for _, id := range append(backlog, fresh...) {
		require.Equal(t, tasker.TaskComplete, b.wait(t, id).State)
	}
	var lastBacklogStart time.Time
	require.NoError(t, b.db.Pool.QueryRow(ctx, `
		SELECT max(st.created_at) FROM `+b.db.Schema+`.step_transitions st JOIN `+b.db.Schema+`.steps s USING (step_id)
		 WHERE s.task_id = ANY($1) AND s.name = 'a' AND st.event = 'start'`, backlog).Scan(&lastBacklogStart))
	claimed, ahead := 0, 0
	for _, id := range fresh {
		if !claimedAtCreation(t, b, id) {
			continue
		}
		claimed++
		var created time.Time
		require.NoError(t, b.db.Pool.QueryRow(ctx, `SELECT created_at FROM `+b.db.Schema+`.task_transitions WHERE task_id = $1 AND event = 'create'`,
			id).Scan(&created))
		if created.Before(lastBacklogStart) {
			ahead++
		}
	}
	t.Logf("%d of %d new tasks claimed at creation", claimed, len(fresh))
	require.Zero(t, ahead, "new tasks claimed at creation ahead of the backlog")
}

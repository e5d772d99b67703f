package postgres

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/store/storetest"
)

// brokenReleaseSQL is releaseChildrenSQL gone wrong: it enqueues a child when its first parent
// finishes, whatever its other parents are doing.
const brokenReleaseSQL = `
		UPDATE {s}.steps c
		   SET parents_unfinished = c.parents_unfinished - 1,
		       state = CASE WHEN c.state = 'pending' AND NOT c.held AND coalesce($2::bool, true)
		                    THEN 'enqueued' ELSE c.state END,
		       updated_at = now()
		  FROM {s}.edges e
		 WHERE e.from_step_id = $1 AND c.step_id = e.to_step_id
		RETURNING c.step_id, c.state = 'enqueued' AND c.parents_unfinished = c.parents_total - 1, c.template_step, c.handler`

// brokenReleaseEnv makes TestBrokenReleaseFailsTheSuite, in the process it starts, run the suite
// against the broken store.
const brokenReleaseEnv = "TASKER_STORETEST_BROKEN_RELEASE"

// TestBrokenReleaseFailsTheSuite runs the conformance suite's batched outcomes against a store
// whose release statement is brokenReleaseSQL. The suite must fail; it runs in a process of its
// own, whose failure is this test's success.
func TestBrokenReleaseFailsTheSuite(t *testing.T) {
	if os.Getenv(brokenReleaseEnv) == "1" {
		storetest.Run(t, storetest.Harness{
			New: func(t *testing.T) storetest.Backend {
				db := testdb.New(t)
				s := New(db.Pool, WithSchema(db.Schema))
				s.releaseSQL = brokenReleaseSQL
				return storetest.Backend{
					Store: s,
					Queue: s.Queue(),
					Begin: func(ctx context.Context) (pgx.Tx, error) { return db.Pool.Begin(ctx) },
				}
			},
			Capabilities: storetest.Capabilities{Transactions: true, OwnsQueue: true},
		})
		return
	}
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^TestBrokenReleaseFailsTheSuite$/^RecordOutcomes$", "-test.v")
	cmd.Env = append(os.Environ(), brokenReleaseEnv+"=1")
	out, err := cmd.CombinedOutput()
	require.Error(t, err, "the suite passed against a broken release:\n%s", out)
	failed := regexp.MustCompile(`--- FAIL: TestBrokenReleaseFailsTheSuite/RecordOutcomes/\S+`).FindAllString(string(out), -1)
	t.Logf("the broken release fails:\n%s", failed)
	require.Contains(t, failed, "--- FAIL: TestBrokenReleaseFailsTheSuite/RecordOutcomes/AJoinWithARunningParentStaysPending", "output:\n%s", out)
}

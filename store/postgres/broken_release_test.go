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
		       transition_seq = CASE WHEN c.state = 'pending' AND NOT c.held AND coalesce($2::bool, true)
		                             THEN c.transition_seq + 1 ELSE c.transition_seq END,
		       updated_at = now()
		  FROM {s}.edges e
		 WHERE e.from_step_id = $1 AND c.step_id = e.to_step_id
		RETURNING c.step_id, c.state = 'enqueued' AND c.parents_unfinished = c.parents_total - 1, c.template_step, c.handler`

// brokenFirstParentCTE is releaseCTE gone wrong: it enqueues a child when one of its parents
// finishes, whatever the others are doing.
const brokenFirstParentCTE = `done AS (
			SELECT e.to_step_id AS child, count(*)::int AS n, array_agg(m.ord) AS parents
			  FROM {s}.edges e JOIN moved m ON e.from_step_id = m.step_id
			 WHERE m.releases
			 GROUP BY e.to_step_id
		), rel AS (
			UPDATE {s}.steps c
			   SET parents_unfinished = c.parents_unfinished - d.n,
			       state = CASE WHEN c.state = 'pending' AND NOT c.held THEN 'enqueued' ELSE c.state END,
			       transition_seq = CASE WHEN c.state = 'pending' AND NOT c.held THEN c.transition_seq + 1 ELSE c.transition_seq END,
			       updated_at = now()
			  FROM done d WHERE c.step_id = d.child
			RETURNING c.step_id, c.state = 'enqueued' AS ready, c.template_step, c.handler, d.parents
		)`

// brokenNoGroupCTE is releaseCTE without its GROUP BY: a child two of whose parents finish in the
// batch joins the UPDATE twice, and PostgreSQL updates it once, counting one parent off.
const brokenNoGroupCTE = `done AS (
			SELECT e.to_step_id AS child, 1 AS n, ARRAY[m.ord] AS parents
			  FROM {s}.edges e JOIN moved m ON e.from_step_id = m.step_id
			 WHERE m.releases
		), rel AS (
			UPDATE {s}.steps c
			   SET parents_unfinished = c.parents_unfinished - d.n,
			       state = CASE WHEN c.parents_unfinished = d.n AND c.state = 'pending' AND NOT c.held
			                    THEN 'enqueued' ELSE c.state END,
			       transition_seq = CASE WHEN c.parents_unfinished = d.n AND c.state = 'pending' AND NOT c.held
			                             THEN c.transition_seq + 1 ELSE c.transition_seq END,
			       updated_at = now()
			  FROM done d WHERE c.step_id = d.child
			RETURNING c.step_id, c.state = 'enqueued' AND c.parents_unfinished = 0 AS ready, c.template_step, c.handler, d.parents
		)`

// brokenReleaseEnv names, in the process TestBrokenReleaseFailsTheSuite starts, the broken release
// to run the suite against.
const brokenReleaseEnv = "TASKER_STORETEST_BROKEN_RELEASE"

// brokenReleases are the broken releases: how each breaks the store, the suite's group it runs,
// and a test of that group that must fail.
var brokenReleases = map[string]struct {
	breaks    func(s *Store)
	group     string
	mustFail  string
	statement string
}{
	"SetBasedEnqueuesOnTheFirstParent": {func(s *Store) { s.releaseCTE = brokenFirstParentCTE }, "RecordOutcomes", "AJoinWithARunningParentStaysPending", "releaseCTE"},
	"SetBasedSubtractsOnce":            {func(s *Store) { s.releaseCTE = brokenNoGroupCTE }, "RecordOutcomes", "TwoParentsOfAJoinInOneBatchReleaseItOnce", "releaseCTE"},
	"SingleStepEnqueuesOnTheFirstParent": {func(s *Store) { s.releaseSQL = brokenReleaseSQL }, "RecordOutcome",
		"ReleasesAJoinWhenAllItsParentsAreDone", "releaseChildrenSQL"},
}

// TestBrokenReleaseFailsTheSuite runs the conformance suite's outcome groups against stores whose
// release statement is broken, one way each. The suite must fail; it runs in a process of its
// own, whose failure is this test's success.
func TestBrokenReleaseFailsTheSuite(t *testing.T) {
	if name := os.Getenv(brokenReleaseEnv); name != "" {
		broken, ok := brokenReleases[name]
		require.True(t, ok, "no broken release %q", name)
		storetest.Run(t, storetest.Harness{
			New: func(t *testing.T) storetest.Backend {
				db := testdb.New(t)
				s := New(db.Pool, WithSchema(db.Schema))
				broken.breaks(s)
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
	for name, broken := range brokenReleases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0], "-test.run=^TestBrokenReleaseFailsTheSuite$/^"+broken.group+"$", "-test.v")
			cmd.Env = append(os.Environ(), brokenReleaseEnv+"="+name)
			out, err := cmd.CombinedOutput()
			require.Error(t, err, "the suite passed against a broken %s:\n%s", broken.statement, out)
			failed := regexp.MustCompile(`--- FAIL: TestBrokenReleaseFailsTheSuite/`+broken.group+`/\S+`).FindAllString(string(out), -1)
			t.Logf("the broken %s fails:\n%s", broken.statement, failed)
			require.Contains(t, failed, "--- FAIL: TestBrokenReleaseFailsTheSuite/"+broken.group+"/"+broken.mustFail, "output:\n%s", out)
		})
	}
}

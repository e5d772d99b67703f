package memory

import (
	"os"
	"os/exec"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store/storetest"
)

// brokenReleaseEnv makes TestBrokenReleaseFailsTheSuite, in the process it starts, run the suite
// against the broken store.
const brokenReleaseEnv = "TASKER_STORETEST_BROKEN_RELEASE"

// TestBrokenReleaseFailsTheSuite runs the conformance suite's batched outcomes against a store
// whose release enqueues a join as soon as one parent finishes, while another still runs. The
// suite must fail; it runs in a process of its own, whose failure is this test's success.
func TestBrokenReleaseFailsTheSuite(t *testing.T) {
	if os.Getenv(brokenReleaseEnv) == "1" {
		storetest.Run(t, storetest.Harness{
			New: func(t *testing.T) storetest.Backend {
				s := New()
				s.joinReady = func(state statemachine.StepState, _ int, held bool) bool {
					return state == statemachine.StepPending && !held // ignores the unfinished parents
				}
				return storetest.Backend{Store: s, Queue: s.DefaultQueue()}
			},
			ErrNoTransactions: ErrNoTransactions,
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

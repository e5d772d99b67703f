package storetest_test

import (
	"testing"

	"github.com/tasker-systems/tasker/store/memory"
	"github.com/tasker-systems/tasker/store/storetest"
)

// A new store backend runs the suite from a test of its own package. The function below is what
// that test file holds (an example cannot get a *testing.T, so here it is only defined); the
// memory store stands in for the backend under test.
func ExampleRun() {
	// func TestConformance(t *testing.T) {
	TestConformance := func(t *testing.T) {
		t.Parallel()
		storetest.Run(t, storetest.Harness{
			// New opens a fresh, empty store for one subtest, isolated from the others (its own
			// schema, its own memory), and the queue that receives the messages of the steps it
			// enqueues. Subtests call it in parallel; close what it opens with t.Cleanup.
			New: func(t *testing.T) storetest.Backend {
				s := memory.New()
				return storetest.Backend{
					Store: s,
					Queue: s.DefaultQueue(),
					// Begin: pool.Begin, for a store whose CreateTask joins a caller's pgx.Tx;
					// then set Capabilities.Transactions instead of ErrNoTransactions.
				}
			},
			// A store without transactions names the error its CreateTask returns when given a
			// caller's pgx.Tx; the suite checks it, and skips the transactional tests.
			ErrNoTransactions: memory.ErrNoTransactions,
		})
	}
	_ = TestConformance // go test runs it in the backend's package
}

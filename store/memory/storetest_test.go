package memory_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/store/memory"
	"github.com/tasker-systems/tasker/store/storetest"
)

// TestConformance runs the store conformance suite on the memory store, whose invariants are
// checked when each subtest ends; the store's own queue receives the enqueues.
func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) storetest.Backend {
			s := memory.New()
			t.Cleanup(func() { require.NoError(t, memory.CheckInvariants(s)) })
			return storetest.Backend{Store: s, Queue: s.DefaultQueue()}
		},
		ErrNoTransactions: memory.ErrNoTransactions,
	})
}

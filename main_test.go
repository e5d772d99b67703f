package tasker_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a goroutine outlives its test: no engine may leave one behind
// after RunWorkers returns.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

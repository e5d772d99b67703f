package pgqueue

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any goroutine outlives the tests: Listen must stop everything it
// starts, and every test closes what it opens.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

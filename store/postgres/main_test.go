package postgres_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any goroutine outlives the tests: every test closes what it opens.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

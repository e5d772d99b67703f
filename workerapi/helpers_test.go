package workerapi_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
)

// stepState returns a step of a task as the engine reports it.
func stepState(t *testing.T, p *polyglot, taskID uuid.UUID, name string) tasker.StepInfo {
	t.Helper()
	task, err := p.e.GetTask(context.Background(), taskID)
	require.NoError(t, err)
	return stepOf(t, task, name)
}

// newRecorder posts an empty JSON object to h and returns the status.
func newRecorder(h http.Handler, path string) int {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, strings.NewReader("{}")))
	return rec.Code
}

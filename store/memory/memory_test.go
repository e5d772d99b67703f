package memory

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tasker-systems/tasker/store"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestJSONBMatchesPostgres: the documents come back as PostgreSQL 15 prints them (each expected
// value is psql's output for `SELECT '<input>'::jsonb`).
func TestJSONBMatchesPostgres(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, want string }{
		{`{"b":1,"a":2,"aa":3,"B":4,"ab":[1,2,{"z":null,"y":true}]}`, `{"B": 4, "a": 2, "b": 1, "aa": 3, "ab": [1, 2, {"y": true, "z": null}]}`},
		{`[1.0, 1.50, 1e2, 1.5e1, 1.50e1, 1e-2, 0.001e1, 123e-5, -0, -0.0, 12.5e-1, 1E+2, 0.0, 100, -1.25e3, 5e0, 0.5, 1e20, 2.500e-2]`,
			`[1.0, 1.50, 100, 15, 15.0, 0.01, 0.01, 0.00123, 0, 0.0, 1.25, 100, 0.0, 100, -1250, 5, 0.5, 100000000000000000000, 0.02500]`},
		{`"é\n\t\b\f\r\u001f\u007f\u2028 \\ \" / \/ <>&"`, "\"é\\n\\t\\b\\f\\r\\u001f\u007f\u2028 \\\\ \\\" / / <>&\""},
		{`{"n":1,"n":2}`, `{"n": 2}`},
		{` { "a" : [ ] , "b" : { } } `, `{"a": [], "b": {}}`},
		{`12345678901234567890.12345678901234567890`, `12345678901234567890.12345678901234567890`},
		{`"\ud83d\ude00"`, `"😀"`},
		{`"x"`, `"x"`},
		{`null`, `null`},
		{`[0e1073741822, -0e-3, 0.00e1, 1e-5, 9999e3]`, `[0, 0.000, 0.0, 0.00001, 9999000]`},
	}
	for _, tc := range cases {
		got, err := jsonb([]byte(tc.in))
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, string(got), tc.in)
	}
	got, err := jsonb(nil)
	require.NoError(t, err)
	require.Nil(t, got, "no document is SQL NULL")
}

func TestJSONBRefusesWhatPostgresRefuses(t *testing.T) {
	t.Parallel()
	for _, in := range []string{`{"a":`, `{} {}`, `"nul \u0000"`, `{"k\u0000": 1}`, `1e999999`, `nope`,
		"\"\xff\"", `"\ud800"`, `["\udc00"]`, `1e131072`, `1e-16384`, `0e1073741823`, `0e-16384`} {
		_, err := jsonb([]byte(in))
		require.Error(t, err, in)
	}
}

// failEnqueuer refuses every send, as a queue that cannot take a message would.
type failEnqueuer struct{}

func (failEnqueuer) EnqueueTx(context.Context, pgx.Tx, string, []store.StepRef, time.Duration) error {
	return errors.New("queue unavailable")
}

func newStep(name string, parents ...int) store.NewStep {
	return store.NewStep{StepID: uuid.Must(uuid.NewV7()), Name: name, TemplateStep: name, Handler: name, Type: "standard",
		MaxAttempts: 3, Retryable: true, Backoff: "none", Timeout: time.Second, Parents: parents}
}

func createParams(q store.Enqueuer, steps ...store.NewStep) store.CreateTaskParams {
	return store.CreateTaskParams{TaskID: uuid.Must(uuid.NewV7()), Namespace: "ns", Name: "t", Version: "1",
		Context: json.RawMessage(`{}`), IdentityHash: "h", Steps: steps, Enqueuer: q,
		Template: &store.RegisterTemplateParams{Namespace: "ns", Name: "t", Version: "1", Definition: json.RawMessage(`{}`), Checksum: "c"}}
}

// TestAFailedCreationLeavesNoRow: a creation whose root cannot be enqueued leaves no task, no
// step, no identity and no template row behind (the conformance suite sees the first three; the
// template registry has no reader).
func TestAFailedCreationLeavesNoRow(t *testing.T) {
	t.Parallel()
	s := New()
	_, err := s.CreateTask(context.Background(), nil, createParams(failEnqueuer{}, newStep("a"), newStep("b", 0)))
	require.ErrorContains(t, err, "queue unavailable")
	require.Empty(t, s.tasks)
	require.Empty(t, s.steps)
	require.Empty(t, s.edges)
	require.Empty(t, s.identities)
	require.Empty(t, s.templates)
	require.NoError(t, checkInvariants(s))
}

func TestTimesHavePostgresPrecision(t *testing.T) {
	t.Parallel()
	s := New()
	res, err := s.CreateTask(context.Background(), nil, createParams(nil, newStep("a")))
	require.NoError(t, err)
	require.Equal(t, res.Task.CreatedAt, res.Task.CreatedAt.Truncate(time.Microsecond))
	require.Equal(t, []string{}, res.Task.Tags, "no tags reads as an empty list, as from text[]")
	trs, err := s.Transitions(context.Background(), res.Task.ID)
	require.NoError(t, err)
	for i := 1; i < len(trs); i++ {
		require.False(t, trs[i].CreatedAt.Before(trs[i-1].CreatedAt))
	}
}

func TestReadsShareNothingWithTheStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := New()
	p := createParams(nil, newStep("a"))
	p.Tags = []string{"x"}
	res, err := s.CreateTask(ctx, nil, p)
	require.NoError(t, err)
	res.Task.Context[0] = '['
	res.Task.Tags[0] = "changed"
	got, err := s.GetTask(ctx, res.Task.ID)
	require.NoError(t, err)
	require.Equal(t, `{}`, string(got.Context))
	require.Equal(t, []string{"x"}, got.Tags)
}

func TestDefaultQueueIsTheStoresOwn(t *testing.T) {
	t.Parallel()
	s := New()
	require.Same(t, s.DefaultQueue(), s.DefaultQueue(), "every engine on the store shares its queue")
	require.NotSame(t, s.DefaultQueue(), New().DefaultQueue())
}

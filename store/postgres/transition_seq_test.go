package postgres_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/testdb"
)

// requireTransitionSeqs checks, when a conformance subtest ends, that every task's and step's
// transition_seq is the sort key of its latest transition, and that its transitions are numbered
// 1 to transition_seq: the current transition is the one at transition_seq (migration 0009), so a
// state change that bumps the sequence without writing its transition, or writes one without the
// bump, fails here on whichever path the subtest took.
func requireTransitionSeqs(t *testing.T, db *testdb.DB) {
	t.Helper()
	s := pgx.Identifier{db.Schema}.Sanitize()
	for _, q := range []struct{ kind, sql string }{
		{"task", `SELECT t.task_id::text, t.transition_seq, count(tr.id), coalesce(max(tr.sort_key), 0)
			  FROM ` + s + `.tasks t LEFT JOIN ` + s + `.task_transitions tr ON tr.task_id = t.task_id
			 GROUP BY t.task_id, t.transition_seq
			HAVING t.transition_seq <> coalesce(max(tr.sort_key), 0) OR t.transition_seq <> count(tr.id)`},
		{"step", `SELECT st.name, st.transition_seq, count(tr.id), coalesce(max(tr.sort_key), 0)
			  FROM ` + s + `.steps st LEFT JOIN ` + s + `.step_transitions tr ON tr.step_id = st.step_id
			 GROUP BY st.step_id, st.name, st.transition_seq
			HAVING st.transition_seq <> coalesce(max(tr.sort_key), 0) OR st.transition_seq <> count(tr.id)`},
	} {
		rows, err := db.Pool.Query(context.Background(), q.sql)
		require.NoError(t, err)
		for rows.Next() {
			var id string
			var seq int32
			var n, maxKey int64
			require.NoError(t, rows.Scan(&id, &seq, &n, &maxKey))
			t.Errorf("%s %s: transition_seq %d, but %d transitions up to sort key %d", q.kind, id, seq, n, maxKey)
		}
		require.NoError(t, rows.Err())
	}
}

package chaos_test

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/statemachine"
)

// report holds the figures verify measured.
type report struct {
	steps         int
	effects       int // handler runs that reached their write
	stepsRun      int // steps with at least one run
	stepsRepeated int // steps with more than one run
	maxRuns       int
	attempts      string         // "attempts:steps ..."
	moves         string         // step transitions by kind
	failures      map[string]int // failed attempts by kind (lease_expired: rescued after a kill)
	rescueWait    string         // from an attempt's start to its rescue: mean and max
	// firstCreation and lastCompletion bound the work, for the throughput figure.
	firstCreation, lastCompletion time.Time
}

// verify checks the end state; each check reports on its own (assert, not require) so that one
// run shows everything that is wrong.
func verify(t *testing.T, ctx context.Context, pool *pgxpool.Pool, sq func(string) string, n int) report {
	t.Helper()
	var r report
	checkStates(t, ctx, pool, sq, n, &r)
	checkExactlyOnce(t, ctx, pool, sq)
	checkStepPaths(t, ctx, pool, sq, &r)
	checkTaskPaths(t, ctx, pool, sq)
	checkEffects(t, ctx, pool, sq, &r)
	r.failures = countBy(t, ctx, pool, sq(`
		SELECT metadata->'error'->>'kind', count(*) FROM {s}.step_transitions
		 WHERE metadata ? 'error' GROUP BY 1`))
	var mean, longest float64
	require.NoError(t, pool.QueryRow(ctx, sq(`
		SELECT coalesce(avg(wait), 0), coalesce(max(wait), 0) FROM (
			SELECT extract(epoch FROM created_at - lag(created_at) OVER (PARTITION BY step_id ORDER BY sort_key)) AS wait,
			       metadata->'error'->>'kind' AS kind
			  FROM {s}.step_transitions) x
		 WHERE kind = 'lease_expired'`)).Scan(&mean, &longest))
	r.rescueWait = fmt.Sprintf("mean %.1fs, max %.1fs", mean, longest)
	return r
}

// listRows runs a query and formats up to 10 of its rows, with the number of rows in all.
func listRows(t *testing.T, ctx context.Context, pool *pgxpool.Pool, sql string) (int, string) {
	t.Helper()
	rows, err := pool.Query(ctx, sql)
	require.NoError(t, err, sql)
	defer rows.Close()
	var out []string
	count := 0
	for rows.Next() {
		count++
		if count > 10 {
			continue
		}
		line, err := formatRow(rows)
		require.NoError(t, err)
		out = append(out, "  "+line)
	}
	require.NoError(t, rows.Err())
	return count, strings.Join(out, "\n")
}

// expectNone fails when the query returns rows, listing them.
func expectNone(t *testing.T, ctx context.Context, pool *pgxpool.Pool, sql, what string) {
	t.Helper()
	if count, list := listRows(t, ctx, pool, sql); count > 0 {
		t.Errorf("%s: %d, such as\n%s", what, count, list)
	}
}

func countBy(t *testing.T, ctx context.Context, pool *pgxpool.Pool, sql string) map[string]int {
	t.Helper()
	rows, err := pool.Query(ctx, sql)
	require.NoError(t, err, sql)
	defer rows.Close()
	m := map[string]int{}
	for rows.Next() {
		var k string
		var v int
		require.NoError(t, rows.Scan(&k, &v))
		m[k] = v
	}
	require.NoError(t, rows.Err())
	return m
}

// checkStates: every task and every step complete, the task counters at rest, no lease left.
func checkStates(t *testing.T, ctx context.Context, pool *pgxpool.Pool, sq func(string) string, n int, r *report) {
	t.Helper()
	assert.Equal(t, map[string]int{"complete": n},
		countBy(t, ctx, pool, sq(`SELECT state, count(*) FROM {s}.tasks GROUP BY state`)), "tasks by state")
	steps := countBy(t, ctx, pool, sq(`SELECT state, count(*) FROM {s}.steps GROUP BY state`))
	assert.Equal(t, map[string]int{"complete": 4 * n}, steps, "steps by state")
	for _, c := range steps {
		r.steps += c
	}
	expectNone(t, ctx, pool, sq(`
		SELECT t.task_id, t.state, t.steps_total, t.steps_unfinished, t.steps_active, t.steps_failed
		  FROM {s}.tasks t
		 WHERE t.state = 'complete'
		   AND (t.steps_total <> 4 OR t.steps_unfinished <> 0 OR t.steps_active <> 0 OR t.steps_failed <> 0
		        OR t.completed_at IS NULL
		        OR (SELECT count(*) FROM {s}.steps s WHERE s.task_id = t.task_id AND s.state = 'complete') <> 4)`),
		"complete tasks whose counters or steps say otherwise")
	expectNone(t, ctx, pool, sq(`
		SELECT task_id, name, attempts, lease_owner, lease_expires_at FROM {s}.steps
		 WHERE state = 'complete' AND (lease_owner IS NOT NULL OR lease_expires_at IS NOT NULL OR attempts < 1)`),
		"complete steps that still hold a lease or have no attempt")
	attempts := countBy(t, ctx, pool, sq(`SELECT attempts::text, count(*) FROM {s}.steps GROUP BY attempts`))
	var parts []string
	for _, k := range slices.SortedFunc(maps.Keys(attempts), func(a, b string) int {
		return cmp.Or(len(a)-len(b), strings.Compare(a, b)) // numerically
	}) {
		parts = append(parts, fmt.Sprintf("%s:%d", k, attempts[k]))
	}
	r.attempts = strings.Join(parts, " ")
	require.NoError(t, pool.QueryRow(ctx, sq(`SELECT min(created_at), coalesce(max(completed_at), now()) FROM {s}.tasks`)).
		Scan(&r.firstCreation, &r.lastCompletion))
}

// checkExactlyOnce: every step and every task entered complete exactly once.
func checkExactlyOnce(t *testing.T, ctx context.Context, pool *pgxpool.Pool, sq func(string) string) {
	t.Helper()
	expectNone(t, ctx, pool, sq(`
		SELECT s.task_id, s.name, s.state, count(tr.id) AS completions
		  FROM {s}.steps s LEFT JOIN {s}.step_transitions tr ON tr.step_id = s.step_id AND tr.to_state = 'complete'
		 GROUP BY s.step_id HAVING count(tr.id) <> 1`),
		"steps that did not complete exactly once in step_transitions")
	expectNone(t, ctx, pool, sq(`
		SELECT t.task_id, t.state, count(tr.id) AS completions
		  FROM {s}.tasks t LEFT JOIN {s}.task_transitions tr ON tr.task_id = t.task_id AND tr.to_state = 'complete'
		 GROUP BY t.task_id HAVING count(tr.id) <> 1`),
		"tasks that did not complete exactly once in task_transitions")
}

// transition is one row of step_transitions or task_transitions with its owner's current state.
type transition struct {
	owner, from, to, event, current string
	sortKey                         int
	mostRecent                      bool
}

// pathChecker checks the transitions of one step or task at a time, as they stream in order.
type pathChecker struct {
	kind     string                                   // "step" or "task"
	next     func(from, event string) (string, error) // the machine's table
	validate func(states []string) error              // the machine's path check
	bad      []string
	badCount int
	moves    map[string]int
	cur      []transition
}

func (c *pathChecker) fail(format string, args ...any) {
	c.badCount++
	if len(c.bad) < 10 {
		c.bad = append(c.bad, fmt.Sprintf(format, args...))
	}
}

// add takes the next row; rows of one owner come together, in sort_key order.
func (c *pathChecker) add(tr transition) {
	if len(c.cur) > 0 && c.cur[0].owner != tr.owner {
		c.flush()
	}
	c.cur = append(c.cur, tr)
}

func (c *pathChecker) flush() {
	trs := c.cur
	c.cur = nil
	if len(trs) == 0 {
		return
	}
	owner := trs[0].owner
	states := make([]string, 0, len(trs))
	recent := 0
	for i, tr := range trs {
		c.moves[fmt.Sprintf("%s -%s-> %s", orNil(tr.from), tr.event, tr.to)]++
		states = append(states, tr.to)
		if tr.mostRecent {
			recent++
		}
		if i == 0 {
			if tr.from != "" {
				c.fail("%s %s: first transition comes from %q", c.kind, owner, tr.from)
			}
			continue
		}
		prev := trs[i-1]
		if tr.from != prev.to {
			c.fail("%s %s: transition %d comes from %s but the previous one went to %s", c.kind, owner, tr.sortKey, tr.from, prev.to)
		}
		if tr.sortKey <= prev.sortKey {
			c.fail("%s %s: sort keys out of order (%d after %d)", c.kind, owner, tr.sortKey, prev.sortKey)
		}
		if to, err := c.next(tr.from, tr.event); err != nil || to != tr.to {
			c.fail("%s %s: %s -%s-> %s is not in the table (it says %q, %v)", c.kind, owner, tr.from, tr.event, tr.to, to, err)
		}
	}
	if err := c.validate(states); err != nil {
		c.fail("%s %s: path %v: %v", c.kind, owner, states, err)
	}
	last := trs[len(trs)-1]
	if recent != 1 || !last.mostRecent {
		c.fail("%s %s: %d transitions at the row's transition_seq, the last one %v", c.kind, owner, recent, last.mostRecent)
	}
	if last.to != last.current {
		c.fail("%s %s: last transition goes to %s but the row says %s", c.kind, owner, last.to, last.current)
	}
}

func orNil(s string) string {
	if s == "" {
		return "∅"
	}
	return s
}

func (c *pathChecker) run(t *testing.T, ctx context.Context, pool *pgxpool.Pool, sql string) {
	t.Helper()
	rows, err := pool.Query(ctx, sql)
	require.NoError(t, err, sql)
	defer rows.Close()
	for rows.Next() {
		var tr transition
		var from *string
		require.NoError(t, rows.Scan(&tr.owner, &from, &tr.to, &tr.event, &tr.sortKey, &tr.mostRecent, &tr.current))
		if from != nil {
			tr.from = *from
		}
		c.add(tr)
	}
	require.NoError(t, rows.Err())
	c.flush()
	if c.badCount > 0 {
		t.Errorf("%d illegal or inconsistent %s transition records, such as\n  %s", c.badCount, c.kind, strings.Join(c.bad, "\n  "))
	}
}

// checkStepPaths: every step's transitions chain, follow the step table, form a legal path and
// end in the step's state.
func checkStepPaths(t *testing.T, ctx context.Context, pool *pgxpool.Pool, sq func(string) string, r *report) {
	t.Helper()
	c := &pathChecker{
		kind: "step",
		next: func(from, ev string) (string, error) {
			to, err := statemachine.NextStep(statemachine.StepState(from), statemachine.StepEvent(ev))
			return string(to), err
		},
		validate: func(states []string) error {
			p := make([]statemachine.StepState, len(states))
			for i, s := range states {
				p[i] = statemachine.StepState(s)
			}
			return statemachine.ValidateStepPath(p)
		},
		moves: map[string]int{},
	}
	c.run(t, ctx, pool, sq(`
		SELECT s.task_id::text || '/' || s.name, tr.from_state, tr.to_state, tr.event, tr.sort_key, tr.sort_key = s.transition_seq, s.state
		  FROM {s}.step_transitions tr JOIN {s}.steps s ON s.step_id = tr.step_id
		 ORDER BY tr.step_id, tr.sort_key`))
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(c.moves)) {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, c.moves[k]))
	}
	r.moves = "\n    " + strings.Join(parts, "\n    ")
}

// checkTaskPaths is checkStepPaths for tasks.
func checkTaskPaths(t *testing.T, ctx context.Context, pool *pgxpool.Pool, sq func(string) string) {
	t.Helper()
	c := &pathChecker{
		kind: "task",
		next: func(from, ev string) (string, error) {
			to, err := statemachine.NextTask(statemachine.TaskState(from), statemachine.TaskEvent(ev))
			return string(to), err
		},
		validate: func(states []string) error {
			p := make([]statemachine.TaskState, len(states))
			for i, s := range states {
				p[i] = statemachine.TaskState(s)
			}
			return statemachine.ValidateTaskPath(p)
		},
		moves: map[string]int{},
	}
	c.run(t, ctx, pool, sq(`
		SELECT t.task_id::text, tr.from_state, tr.to_state, tr.event, tr.sort_key, tr.sort_key = t.transition_seq, t.state
		  FROM {s}.task_transitions tr JOIN {s}.tasks t ON t.task_id = tr.task_id
		 ORDER BY tr.task_id, tr.sort_key`))
}

// checkEffects: every step's handler ran at least once, the attempt that completed it among them,
// no attempt ran twice, and nothing ran that is not a step; it counts the repeats.
func checkEffects(t *testing.T, ctx context.Context, pool *pgxpool.Pool, sq func(string) string, r *report) {
	t.Helper()
	require.NoError(t, pool.QueryRow(ctx, sq(`SELECT count(*), count(DISTINCT step_id) FROM {s}.chaos_effects`)).
		Scan(&r.effects, &r.stepsRun))
	require.NoError(t, pool.QueryRow(ctx, sq(`
		SELECT count(*) FILTER (WHERE runs > 1), coalesce(max(runs), 0)
		  FROM (SELECT count(*) AS runs FROM {s}.chaos_effects GROUP BY step_id) x`)).
		Scan(&r.stepsRepeated, &r.maxRuns))
	expectNone(t, ctx, pool, sq(`
		SELECT s.task_id, s.name, s.state, s.attempts FROM {s}.steps s
		 WHERE NOT EXISTS (SELECT 1 FROM {s}.chaos_effects e WHERE e.step_id = s.step_id)`),
		"steps whose handler never ran (no chaos_effects row)")
	expectNone(t, ctx, pool, sq(`
		SELECT s.task_id, s.name, s.state, s.attempts,
		       (SELECT array_agg(e.attempt ORDER BY e.attempt) FROM {s}.chaos_effects e WHERE e.step_id = s.step_id) AS ran
		  FROM {s}.steps s
		 WHERE s.state = 'complete'
		   AND NOT EXISTS (SELECT 1 FROM {s}.chaos_effects e WHERE e.step_id = s.step_id AND e.attempt = s.attempts)`),
		"complete steps whose completing attempt has no chaos_effects row")
	expectNone(t, ctx, pool, sq(`
		SELECT e.step_id, e.step_name, e.attempt, count(*) AS runs, array_agg(e.worker_id) AS workers
		  FROM {s}.chaos_effects e GROUP BY e.step_id, e.step_name, e.attempt HAVING count(*) > 1`),
		"attempts whose handler ran more than once (two workers held the same attempt)")
	expectNone(t, ctx, pool, sq(`
		SELECT e.task_id, e.step_id, e.step_name, e.attempt, s.name, s.attempts
		  FROM {s}.chaos_effects e LEFT JOIN {s}.steps s ON s.step_id = e.step_id
		 WHERE s.step_id IS NULL OR s.task_id <> e.task_id OR s.name <> e.step_name
		    OR e.attempt < 1 OR e.attempt > s.attempts`),
		"chaos_effects rows that match no step attempt")
}

// diagnose describes what is left unsettled, for the failure message.
func diagnose(ctx context.Context, pool *pgxpool.Pool, sq func(string) string) string {
	var b strings.Builder
	for _, q := range []struct{ title, sql string }{
		{"tasks by state", `SELECT state, count(*) FROM {s}.tasks GROUP BY state ORDER BY state`},
		{"steps by state", `SELECT state, count(*) FROM {s}.steps GROUP BY state ORDER BY state`},
		{"unfinished steps (first 10)", `
			SELECT s.task_id, s.name, s.state, s.attempts, s.lease_owner,
			       round(extract(epoch FROM (now() - s.lease_expires_at))::numeric, 1) AS lease_expired_s_ago,
			       (SELECT tr.event || ' at ' || tr.created_at::text FROM {s}.step_transitions tr
			         WHERE tr.step_id = s.step_id AND tr.sort_key = s.transition_seq) AS last_transition
			  FROM {s}.steps s WHERE s.state NOT IN ('complete', 'resolved_manually', 'cancelled')
			 ORDER BY s.updated_at LIMIT 10`},
		{"queue messages", `SELECT count(*), count(*) FILTER (WHERE vt <= now()) AS visible FROM {s}.queue_messages`},
		{"leaders", `SELECT name, leader_id, expires_at FROM {s}.leaders`},
	} {
		fmt.Fprintf(&b, "%s:\n", q.title)
		rows, err := pool.Query(ctx, sq(q.sql))
		if err != nil {
			fmt.Fprintf(&b, "  %v\n", err)
			continue
		}
		for rows.Next() {
			line, err := formatRow(rows)
			if err != nil {
				break
			}
			fmt.Fprintf(&b, "  %s\n", line)
		}
		rows.Close()
	}
	return b.String()
}

// formatRow formats the current row as name=value pairs.
func formatRow(rows pgx.Rows) (string, error) {
	vals, err := rows.Values()
	if err != nil {
		return "", err
	}
	var cols []string
	for i, f := range rows.FieldDescriptions() {
		v := vals[i]
		if id, ok := v.([16]byte); ok {
			v = uuid.UUID(id)
		}
		cols = append(cols, fmt.Sprintf("%s=%v", f.Name, v))
	}
	return strings.Join(cols, " "), nil
}

// unsettledTasks returns up to n tasks that are not settled.
func unsettledTasks(ctx context.Context, pool *pgxpool.Pool, sq func(string) string, n int) []string {
	rows, err := pool.Query(ctx, sq(`SELECT task_id::text FROM {s}.tasks
		WHERE state NOT IN ('complete', 'error', 'cancelled', 'resolved_manually', 'blocked_by_failures') LIMIT $1`), n)
	if err != nil {
		return nil
	}
	ids, _ := pgx.CollectRows(rows, pgx.RowTo[string])
	return ids
}

package tasker_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// dumpTask logs what state a task is in, for a test whose wait for it timed out: on PostgreSQL the
// rows themselves (the task and its transitions, its steps and theirs, the queue messages that
// name it, the maintenance leadership, and the schema's steps and messages by state), so that a
// stranded step shows whether it has a message, a lease or a transition missing; on the memory
// store what the engine reports.
func (b *bundle) dumpTask(t testing.TB, id uuid.UUID) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out strings.Builder
	fmt.Fprintf(&out, "state of task %s (backend %s) at %s:\n", id, b.backend, time.Now().Format(time.RFC3339Nano))
	if b.db == nil {
		b.dumpTaskFromEngine(ctx, &out, id)
		t.Log(out.String())
		return
	}
	s := pgx.Identifier{b.db.Schema}.Sanitize()
	q := func(sql string) string { return strings.ReplaceAll(sql, "{s}", s) }
	queries := []struct {
		title, sql string
		args       []any
	}{
		{"database clock", `SELECT now() AS now`, nil},
		{"task", q(`SELECT state, transition_seq, steps_total, steps_unfinished, steps_active, steps_failed, created_at, updated_at, completed_at
			FROM {s}.tasks WHERE task_id = $1`), []any{id}},
		{"task transitions", q(`SELECT sort_key, from_state, to_state, event, metadata::text AS metadata, created_at
			FROM {s}.task_transitions WHERE task_id = $1 ORDER BY sort_key`), []any{id}},
		{"steps", q(`SELECT name, step_id, state, attempts, max_attempts, parents_total, parents_unfinished, held, lease_owner,
			lease_expires_at, next_retry_at, updated_at, started_at, completed_at, result::text AS result, last_error::text AS last_error
			FROM {s}.steps WHERE task_id = $1 ORDER BY name`), []any{id}},
		{"step transitions", q(`SELECT s.name, t.sort_key, t.from_state, t.to_state, t.event, t.metadata::text AS metadata, t.sort_key = s.transition_seq AS current, t.created_at
			FROM {s}.step_transitions t JOIN {s}.steps s USING (step_id) WHERE t.task_id = $1 ORDER BY s.name, t.sort_key`), []any{id}},
		{"queue messages of the task", q(`SELECT msg_id, queue_name, payload::text AS payload, vt, read_ct, enqueued_at
			FROM {s}.queue_messages WHERE payload->>'task_id' = $1::text ORDER BY msg_id`), []any{id.String()}},
		{"leaders", q(`SELECT name, leader_id, elected_at, expires_at FROM {s}.leaders`), nil},
		{"steps of the schema by state", q(`SELECT state, count(*) AS steps,
			count(*) FILTER (WHERE state = 'in_progress' AND lease_expires_at < now()) AS lease_expired
			FROM {s}.steps GROUP BY state ORDER BY state`), nil},
		{"queue messages of the schema", q(`SELECT queue_name, count(*) AS messages, count(*) FILTER (WHERE vt <= now()) AS visible,
			min(vt) AS first_vt, max(vt) AS last_vt FROM {s}.queue_messages GROUP BY queue_name`), nil},
	}
	for _, qu := range queries {
		fmt.Fprintf(&out, "-- %s\n", qu.title)
		if err := dumpRows(ctx, &out, b.db.Pool, qu.sql, qu.args...); err != nil {
			fmt.Fprintf(&out, "   (query failed: %v)\n", err)
		}
	}
	t.Log(out.String())
}

// dumpRows writes one line per row of the query, as column=value pairs.
func dumpRows(ctx context.Context, out *strings.Builder, db interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, sql string, args ...any) error {
	rows, err := db.Query(ctx, sql, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return err
		}
		out.WriteString("  ")
		for i, fd := range rows.FieldDescriptions() {
			v := vals[i]
			switch x := v.(type) {
			case time.Time:
				v = x.Format("15:04:05.000000")
			case [16]byte:
				v = uuid.UUID(x).String()
			case []byte:
				v = string(x)
			}
			fmt.Fprintf(out, " %s=%v", fd.Name, v)
		}
		out.WriteString("\n")
		n++
	}
	if n == 0 {
		out.WriteString("   (no rows)\n")
	}
	return rows.Err()
}

// dumpTaskFromEngine is dumpTask's part for a store without SQL: the task, its steps and its
// transitions as the engine reports them.
func (b *bundle) dumpTaskFromEngine(ctx context.Context, out *strings.Builder, id uuid.UUID) {
	task, err := b.engine.GetTask(ctx, id)
	if err != nil {
		fmt.Fprintf(out, "   (GetTask failed: %v)\n", err)
		return
	}
	fmt.Fprintf(out, "-- task\n   state=%s updated_at=%s\n-- steps\n", task.State, task.UpdatedAt.Format("15:04:05.000000"))
	for _, s := range task.Steps {
		fmt.Fprintf(out, "   name=%s id=%s state=%s attempts=%d/%d last_error=%+v\n", s.Name, s.ID, s.State, s.Attempts, s.MaxAttempts, s.LastError)
	}
	trs, err := b.engine.Transitions(ctx, id)
	if err != nil {
		fmt.Fprintf(out, "   (Transitions failed: %v)\n", err)
		return
	}
	out.WriteString("-- transitions\n")
	for _, tr := range trs {
		fmt.Fprintf(out, "   %s step=%s %s -> %s (%s) %s\n", tr.At.Format("15:04:05.000000"), tr.StepName, tr.From, tr.To, tr.Event, tr.Metadata)
	}
}

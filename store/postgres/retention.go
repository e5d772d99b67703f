package postgres

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/tasker/store"
)

// purgeSelectSQL picks the batch: the oldest purgeable tasks through tasks_ended_idx (whose
// predicate this is), locked so that a concurrent purge skips them rather than waits.
const purgeSelectSQL = `
	SELECT t.task_id
	  FROM {s}.tasks t
	 WHERE t.state IN ('complete', 'cancelled', 'resolved_manually')
	   AND t.completed_at <= now() - make_interval(secs => $1::float8)
	   AND NOT EXISTS (SELECT 1 FROM {s}.dead_letters d WHERE d.task_id = t.task_id AND d.status = 'pending')
	 ORDER BY t.completed_at, t.task_id
	 LIMIT $2
	   FOR UPDATE OF t SKIP LOCKED`

// purgeRecheckSQL filters the locked batch again, in a statement of its own: purgeSelectSQL's
// NOT EXISTS saw its snapshot, so a dead-letter entry committed between that snapshot and the
// lock (AddDeadLetter on an ended task) is seen only now; an entry written after the lock waits
// for the purge's transaction (its foreign key takes a share lock on the task's row). It returns
// the IDs as text too, and the namespaces, for the queue's leftovers.
const purgeRecheckSQL = `
	SELECT t.task_id, t.task_id::text, t.namespace
	  FROM {s}.tasks t
	 WHERE t.task_id = ANY($1)
	   AND NOT EXISTS (SELECT 1 FROM {s}.dead_letters d WHERE d.task_id = t.task_id AND d.status = 'pending')
	 ORDER BY t.completed_at, t.task_id`

// archivedTables are the tables the archive mode copies, each to archive_<name>.
var archivedTables = []string{"tasks", "steps", "edges", "task_transitions", "step_transitions", "dead_letters"}

// purgeDeletes are the deletes of one batch, in store.PurgeTableNames' order: children first, so
// that the cascades of the foreign keys find nothing left and each count is the table's own. $1
// is the tasks' IDs (as text for the queue's JSON payloads).
var purgeDeletes = []struct {
	table, sql string
	byText     bool // $1 is the IDs as text
}{
	// By step: step_transitions has no index on task_id (migration 13); the steps go later.
	{"step_transitions", `DELETE FROM {s}.step_transitions WHERE step_id IN (SELECT step_id FROM {s}.steps WHERE task_id = ANY($1))`, false},
	{"task_transitions", `DELETE FROM {s}.task_transitions WHERE task_id = ANY($1)`, false},
	{"edges", `DELETE FROM {s}.edges WHERE task_id = ANY($1)`, false},
	{"dead_letters", `DELETE FROM {s}.dead_letters WHERE task_id = ANY($1)`, false},
	// Step messages left behind (a cancelled task's steps, a duplicate delivery), in the purged
	// tasks' namespaces only ($2), so that another queue on the table is never touched: the scan
	// reads those namespaces' messages not yet acked, through queue_messages' queue index.
	{"queue_messages", `DELETE FROM {s}.queue_messages WHERE queue_name = ANY($2::text[]) AND payload ? 'step_id'
	   AND payload->>'task_id' = ANY($1::text[])`, true},
	{"steps", `DELETE FROM {s}.steps WHERE task_id = ANY($1)`, false},
	{"tasks", `DELETE FROM {s}.tasks WHERE task_id = ANY($1)`, false},
}

// PurgeTasks deletes one batch of tasks that ended at least p.OlderThan ago (see store.History),
// archiving their rows first with p.Archive, in one transaction.
func (s *Store) PurgeTasks(ctx context.Context, p store.PurgeTasksParams) (*store.PurgeResult, error) {
	var archive []string
	if p.Archive {
		var err error
		if archive, err = s.archiveSQL(ctx); err != nil {
			return nil, err
		}
	}
	var res *store.PurgeResult
	err := s.withRetry(ctx, func(tx pgx.Tx) error {
		res = &store.PurgeResult{Rows: make(map[string]int64, len(purgeDeletes)), Archived: p.Archive}
		rows, err := tx.Query(ctx, s.q(purgeSelectSQL), p.OlderThan.Seconds(), limitOr(p.Limit, store.PurgeLimitDefault))
		if err != nil {
			return err
		}
		locked, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		if err != nil {
			return err
		}
		var texts, nss []string
		if len(locked) > 0 {
			rows, err := tx.Query(ctx, s.q(purgeRecheckSQL), locked)
			if err != nil {
				return err
			}
			seen := map[string]bool{}
			for rows.Next() {
				var id uuid.UUID
				var text, ns string
				if err := rows.Scan(&id, &text, &ns); err != nil {
					rows.Close()
					return err
				}
				res.Tasks, texts = append(res.Tasks, id), append(texts, text)
				if !seen[ns] {
					seen[ns], nss = true, append(nss, ns)
				}
			}
			if err := rows.Err(); err != nil {
				return err
			}
		}
		for _, d := range purgeDeletes {
			res.Rows[d.table] = 0
		}
		if len(res.Tasks) == 0 {
			return nil
		}
		b := &pgx.Batch{}
		for _, a := range archive {
			b.Queue(a, res.Tasks)
		}
		for _, d := range purgeDeletes {
			if d.byText {
				b.Queue(s.q(d.sql), texts, nss)
			} else {
				b.Queue(s.q(d.sql), res.Tasks)
			}
		}
		br := tx.SendBatch(ctx, b)
		for i := range archive {
			if _, err := br.Exec(); err != nil {
				_ = br.Close()
				return fmt.Errorf("archive %s: %w", archivedTables[i], err)
			}
		}
		for _, d := range purgeDeletes {
			tag, err := br.Exec()
			if err != nil {
				_ = br.Close()
				return fmt.Errorf("delete from %s: %w", d.table, err)
			}
			res.Rows[d.table] = tag.RowsAffected()
		}
		return br.Close()
	})
	if err != nil {
		return nil, fmt.Errorf("purge tasks: %w", err)
	}
	return res, nil
}

// archiveSQL returns the archive mode's inserts, one per archived table, with their source
// tables' columns named, read from the catalog in one query for every batch (not cached: after a
// migration adds a column, a process started before it copies that column too, and an archive
// table that lacks it fails the purge loudly rather than dropping data).
func (s *Store) archiveSQL(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT table_name::text, string_agg(quote_ident(column_name), ', ' ORDER BY ordinal_position)
		  FROM information_schema.columns WHERE table_schema = $1 AND table_name = ANY($2) GROUP BY table_name`, s.schema, archivedTables)
	if err != nil {
		return nil, fmt.Errorf("purge tasks: read the columns of the archived tables: %w", err)
	}
	lists := map[string]string{}
	for rows.Next() {
		var table, list string
		if err := rows.Scan(&table, &list); err != nil {
			rows.Close()
			return nil, fmt.Errorf("purge tasks: read the columns of the archived tables: %w", err)
		}
		lists[table] = list
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("purge tasks: read the columns of the archived tables: %w", err)
	}
	out := make([]string, len(archivedTables))
	for i, table := range archivedTables {
		list, ok := lists[table]
		if !ok {
			return nil, fmt.Errorf("purge tasks: table %s.%s has no columns (is the schema migrated?)", s.schema, table)
		}
		where := `task_id = ANY($1)`
		if table == "step_transitions" { // no index on task_id (migration 13): by the tasks' steps
			where = fmt.Sprintf(`step_id IN (SELECT step_id FROM %s.steps WHERE task_id = ANY($1))`, s.ident)
		}
		out[i] = fmt.Sprintf(`INSERT INTO %s.%s (%s) SELECT %s FROM %s.%s WHERE %s`,
			s.ident, pgx.Identifier{"archive_" + table}.Sanitize(), list, list, s.ident, pgx.Identifier{table}.Sanitize(), where)
	}
	return out, nil
}

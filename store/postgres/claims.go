package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/tasker/store"
)

// This file is the set-based claim (docs/design/engine-v2.md §3.4): one statement claims many
// steps and loads what their handlers need. ClaimFromQueue reads its steps' messages in the same
// statement; ClaimMany takes them by ID.

var _ store.QueueClaimer = (*Store)(nil)

// The hot statements test a step's state as a filter written `(state = …) IS TRUE` (stateFilter),
// never as a bare comparison: the planner can match a bare one to the partial indexes on state
// (steps_waiting_idx, steps_lease_idx), and a generic plan made before ANALYZE prices those scans
// of every step in that state below the lookup by the step's key (TestHotPathPlansAreKeyed). A step looked up per row of a recursive CTE is read in a
// LATERAL subquery kept apart by OFFSET 0 (byKey): the planner guesses a recursive CTE's rows at
// thousands, and would rather scan the whole table once than probe it that many times.

// claimSetSQL claims, for worker $1 under a lease of $2 ms, the enqueued steps of {source}: rows
// (ord, msg_id, read_ct, enqueued_at, step_id, retry, walk) with, in nm, (ord, name) rows naming
// the ancestors whose results a row's handler sees when it does not walk the edges. A step named
// by several rows is claimed by the first. It returns every row of the source in order, with its
// step's state before the claim, and for the claimed ones the step, its task and the results of
// its finished ancestors.
//
// No CTE is joined to another by a column: under keyedPlans such a join is a nested loop that
// reads the inner CTE again for every outer row, quadratic in the batch (a claim of 100 spent
// most of its time there). The claimed rows carry their source row's columns (from pick), the
// rows left unclaimed are found with a hashed NOT IN, the results of the claimed steps' ancestors
// are one jsonb object keyed by step, and the claimed and unclaimed halves of the result are a
// UNION ALL; the unclaimed half takes its typed NULLs from empty scans (WHERE false,
// which the planner reduces to nothing).
const claimSetSQL = `
		WITH RECURSIVE {source},
		pick AS (
			SELECT DISTINCT ON (step_id) step_id AS fid, ord AS ford, msg_id AS fmsg, read_ct AS fread, enqueued_at AS fenq,
			       retry AS fretry, walk AS fwalk
			  FROM src WHERE step_id IS NOT NULL ORDER BY step_id, ord
		), c AS (
			UPDATE {s}.steps
			   SET state = 'in_progress', attempts = attempts + 1, lease_owner = $1,
			       lease_expires_at = now() + $2 * interval '1 millisecond', started_at = now(), updated_at = now(),
			       transition_seq = transition_seq + 1
			  FROM pick
			 WHERE step_id = pick.fid AND (state = 'enqueued') IS TRUE -- by key (stateFilter)
			RETURNING pick.fmsg AS c_msg, pick.fread AS c_read, pick.fenq AS c_enq, pick.fretry AS c_retry, pick.fwalk AS c_walk,
			          pick.ford AS c_ord, transition_seq AS c_seq, ` + stepColumns + `
		), ins AS (
			INSERT INTO {s}.step_transitions (step_id, task_id, from_state, to_state, event, metadata, sort_key, created_at)
			SELECT c.step_id, c.task_id, 'enqueued', 'in_progress', 'start',
			       jsonb_build_object('worker_id', $1::text, 'attempt', c.attempts), c.c_seq, clock_timestamp()
			  FROM c
		), anc(step_id, anc) AS (
			SELECT e.to_step_id, e.from_step_id
			  FROM c JOIN {s}.edges e ON e.to_step_id = c.step_id
			 WHERE c.c_walk
			UNION
			SELECT a.step_id, e.from_step_id FROM anc a JOIN {s}.edges e ON e.to_step_id = a.anc
		), res AS (
			SELECT a.step_id, jsonb_object_agg(st.name, st.result) AS results
			  FROM (SELECT step_id, anc FROM anc
			        UNION
			        SELECT c.step_id, st.step_id FROM c JOIN nm ON nm.ord = c.c_ord
			          JOIN {s}.steps st ON st.task_id = c.task_id AND st.name = nm.name) a
			 CROSS JOIN LATERAL (SELECT name, result, state FROM {s}.steps WHERE step_id = a.anc OFFSET 0) st -- byKey
			 WHERE (st.state IN ('complete', 'resolved_manually')) IS TRUE AND st.result IS NOT NULL -- stateFilter
			 GROUP BY a.step_id
		), resmap AS (
			SELECT jsonb_object_agg(step_id::text, results) AS m FROM res
		){after}
		SELECT c.c_ord, c.c_msg, c.c_read, c.c_enq, c.step_id, c.c_retry, 'enqueued'::text, true, c.*, t.*,
		       (SELECT m FROM resmap) -> (c.step_id::text) -- one object, looked up by key: linear where a join to res was not
		  FROM c
		  LEFT JOIN (SELECT ` + taskColumns + ` FROM {s}.tasks) t ON t.task_id = c.task_id
		UNION ALL
		SELECT src.ord, src.msg_id, src.read_ct, src.enqueued_at, src.step_id, src.retry, cur.state::text, false, cn.*, tn.*, NULL::jsonb
		  FROM src
		  LEFT JOIN (SELECT * FROM c WHERE false) cn ON true
		  LEFT JOIN (SELECT ` + taskColumns + ` FROM {s}.tasks WHERE false) tn ON true
		  LEFT JOIN {s}.steps cur ON cur.step_id = src.step_id
		 WHERE src.ord NOT IN (SELECT c_ord FROM c)
		 ORDER BY 1`

// fromQueueSource reads up to $5 visible messages of queue $3 whose handler is one of $4 (or that
// name none), earliest visible first (the order of queue_messages_ready_idx, which priority
// credits use: a message dated back is read first): the source of ClaimFromQueue. A message
// whose step_id is not a UUID names no step. What becomes of the messages is fromQueueAfter's.
const fromQueueSource = `m AS MATERIALIZED (
			SELECT msg_id FROM {s}.queue_messages
			 WHERE queue_name = $3 AND vt <= now()
			   AND (payload->>'handler' IS NULL OR payload->>'handler' = ANY($4::text[]))
			 ORDER BY vt, msg_id LIMIT $5
			   FOR UPDATE SKIP LOCKED
		), src AS MATERIALIZED (
			SELECT (row_number() OVER (ORDER BY q.msg_id))::int AS ord, q.msg_id, q.read_ct + 1 AS read_ct, q.enqueued_at,
			       CASE WHEN q.payload->>'step_id' ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
			            THEN (q.payload->>'step_id')::uuid END AS step_id,
			       CASE WHEN jsonb_typeof(q.payload->'retry') = 'boolean' THEN (q.payload->'retry')::boolean ELSE false END AS retry,
			       true AS walk
			  FROM m CROSS JOIN LATERAL (SELECT * FROM {s}.queue_messages WHERE msg_id = m.msg_id OFFSET 0) q -- byKey
		), nm AS (
			SELECT NULL::int AS ord, NULL::text AS name WHERE false
		)`

// fromQueueAfter settles the messages fromQueueSource read, in the claim's statement: a message
// whose step the statement claimed is deleted, since the step's lease now stands for it (a worker
// that dies holding it leaves the step to the lease rescuer, and a step given back is sent a
// message of its own); any other is hidden for the lease and its read counted, as a queue's read
// does, for the engine to judge (a stale duplicate, a retry timer not yet due). Deleting rather
// than hiding spares each claimed step a row version of queue_messages and its index entries, and
// its ack a row to delete.
const fromQueueAfter = `, hide AS (
			UPDATE {s}.queue_messages q SET vt = now() + $2 * interval '1 millisecond', read_ct = q.read_ct + 1
			  FROM src
			 WHERE q.msg_id = src.msg_id AND src.ord NOT IN (SELECT c_ord FROM c)
		), gone AS (
			DELETE FROM {s}.queue_messages q USING c WHERE q.msg_id = c.c_msg
		)`

// byIDSource is ClaimMany's source: $3 ords, $4 message IDs, $5 steps, $6 walk the edges, and
// the ancestors named ($7 ord, $8 name).
const byIDSource = `src AS MATERIALIZED (
			SELECT u.ord, u.msg_id, 0 AS read_ct, NULL::timestamptz AS enqueued_at, u.step_id, false AS retry, u.walk
			  FROM unnest($3::int[], $4::bigint[], $5::uuid[], $6::bool[]) AS u(ord, msg_id, step_id, walk)
		), nm AS (
			SELECT * FROM unnest($7::int[], $8::text[]) AS nm(ord, name)
		)`

// claimRow is one row of claimSetSQL.
type claimRow struct {
	ord        int
	msgID      int64
	readCount  int
	enqueuedAt *time.Time
	stepID     *uuid.UUID
	retry      bool
	state      *string // before the claim
	claimed    bool
	c          store.ClaimedStep
}

// claimSet runs claimSetSQL with source in a transaction of its own, opened and committed in the
// same round trip (with generic plans), again after a deadlock or serialization failure.
func (s *Store) claimSet(ctx context.Context, source, after string, args ...any) ([]claimRow, error) {
	sql := s.q(strings.NewReplacer("{source}", source, "{after}", after).Replace(claimSetSQL))
	var out []claimRow
	var err error
	for i := 0; i < 5; i++ {
		out, err = s.claimSetOnce(ctx, sql, args)
		if err == nil || !retryable(err) {
			return out, err
		}
	}
	return nil, fmt.Errorf("after 5 tries: %w", err)
}

func (s *Store) claimSetOnce(ctx context.Context, sql string, args []any) ([]claimRow, error) {
	conn := limitConn(ctx) // under a limit's lock, on its connection (LockLimit)
	if conn == nil {
		var err error
		if conn, err = s.pool.Acquire(ctx); err != nil {
			return nil, err
		}
		defer conn.Release()
	}
	var out []claimRow
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(genericPlans)
	b.Queue(sql, args...).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var r claimRow
			var ord, readCount int32
			var cOrd, cSeq *int32
			var step stepScan
			head := []any{&ord, &r.msgID, &readCount, &r.enqueuedAt, &r.stepID, &r.retry, &r.state, &r.claimed}
			carried := make([]any, 5) // c's copy of its source row (c_msg … c_walk), read in head
			rest := make([]any, len(carried)+2+len(step.dest())+len(taskDest(&r.c.Task))+1)
			if err := rows.Scan(append(head, rest...)...); err != nil {
				return err
			}
			r.ord, r.readCount = int(ord), int(readCount)
			if r.claimed {
				results := map[string]json.RawMessage{}
				dest := append(append(append(append(append(head, carried...), &cOrd, &cSeq), step.dest()...), taskDest(&r.c.Task)...), &results)
				if err := rows.Scan(dest...); err != nil {
					return err
				}
				if results == nil {
					results = map[string]json.RawMessage{}
				}
				r.c.Step, r.c.Results = *step.step(), results
			}
			out = append(out, r)
		}
		return rows.Err()
	})
	b.Queue("COMMIT")
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		_, _ = conn.Exec(context.WithoutCancel(ctx), "ROLLBACK")
		return nil, err
	}
	return out, nil
}

// ClaimFromQueue reads up to p.Limit visible messages of p.Namespace whose handler is callable (or
// that name none) and claims their enqueued steps, in one statement (claimSetSQL over
// fromQueueSource, in one round trip): the message of a claimed step is deleted (its lease
// stands for it: a caller that gives the step back sends it a message of its own), any other is
// hidden for the lease; a claimed step's results along the edges are loaded, and a message whose
// step was not enqueued is reported in Stale, or in Retries for a retry timer whose step waits
// for its backoff.
func (s *Store) ClaimFromQueue(ctx context.Context, p store.ClaimFromQueueParams) (*store.ClaimManyResult, error) {
	switch {
	case p.Limit <= 0:
		return nil, fmt.Errorf("claim from queue %q: the limit must be positive, got %d", p.Namespace, p.Limit)
	case p.Lease <= 0:
		return nil, fmt.Errorf("claim from queue %q: the lease must be positive, got %v", p.Namespace, p.Lease)
	}
	callables := p.Callables
	if callables == nil {
		callables = []string{} // a NULL array matches nothing either, but say so
	}
	rows, err := s.claimSet(ctx, fromQueueSource, fromQueueAfter, p.WorkerID, p.Lease.Milliseconds(), p.Namespace, callables, p.Limit)
	if err != nil {
		return nil, fmt.Errorf("claim from queue %q: %w", p.Namespace, err)
	}
	res := &store.ClaimManyResult{}
	for _, r := range rows {
		ref := store.ClaimRef{MessageID: r.msgID}
		if r.stepID != nil {
			ref.StepID = *r.stepID
		}
		switch {
		case r.claimed:
			m := store.ClaimedMessage{ClaimedStep: r.c, MessageID: r.msgID, ReadCount: r.readCount}
			if r.enqueuedAt != nil {
				m.EnqueuedAt = *r.enqueuedAt
			}
			res.Claimed = append(res.Claimed, m)
		case r.retry && r.state != nil && *r.state == "waiting_for_retry":
			res.Retries = append(res.Retries, ref)
		default:
			res.Stale = append(res.Stale, ref)
		}
	}
	return res, nil
}

// ClaimMany claims the steps in one statement (claimSetSQL over byIDSource, in one round trip),
// each with the results of its named ancestors, or of every ancestor along the edges.
func (s *Store) ClaimMany(ctx context.Context, p store.ClaimManyParams) (*store.ClaimManyResult, error) {
	res := &store.ClaimManyResult{}
	if len(p.Steps) == 0 {
		return res, nil
	}
	n := len(p.Steps)
	ords, msgs, steps, walk := make([]int32, n), make([]int64, n), make([]uuid.UUID, n), make([]bool, n)
	nmOrds, nmNames := []int32{}, []string{}
	for i, ref := range p.Steps {
		ords[i], msgs[i], steps[i], walk[i] = int32(i), ref.MessageID, ref.StepID, ref.Ancestors == nil
		for _, name := range ref.Ancestors {
			nmOrds, nmNames = append(nmOrds, int32(i)), append(nmNames, name)
		}
	}
	rows, err := s.claimSet(ctx, byIDSource, "", p.WorkerID, p.Lease.Milliseconds(), ords, msgs, pgIDs(steps), walk, nmOrds, nmNames)
	if err != nil {
		return nil, fmt.Errorf("claim %d steps: %w", n, err)
	}
	if len(rows) != n {
		return nil, errors.New("claim steps: the statement lost rows")
	}
	for i, r := range rows {
		if r.claimed {
			res.Claimed = append(res.Claimed, store.ClaimedMessage{ClaimedStep: r.c, MessageID: p.Steps[i].MessageID})
		} else {
			res.Stale = append(res.Stale, p.Steps[i])
		}
	}
	return res, nil
}

package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
	"github.com/tasker-systems/tasker/store/internal/params"
)

// RegisterTemplate stores a template definition in the registry. The same checksum again is a
// no-op; a different one under the same key is refused with a *store.TemplateConflictError and the
// stored row is kept (versions are immutable).
func (s *Store) RegisterTemplate(ctx context.Context, p store.RegisterTemplateParams) error {
	return s.registerTemplate(ctx, s.pool, p)
}

// registerTemplate inserts the registry row unless its key exists, and compares the checksums in
// the same statement. DO NOTHING takes no lock on an existing row, so concurrent creations do not
// queue behind each other here. A row that a concurrent transaction committed while the insert
// waited for it is not in the statement's snapshot: a second statement reads it then (under
// REPEATABLE READ such an insert fails with a serialization error instead).
func (s *Store) registerTemplate(ctx context.Context, db querier, p store.RegisterTemplateParams) error {
	var existing string
	err := db.QueryRow(ctx, s.q(`
		WITH ins AS (
			INSERT INTO {s}.templates (namespace, name, version, definition, checksum)
			VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (namespace, name, version) DO NOTHING
			RETURNING checksum)
		SELECT checksum FROM ins
		UNION ALL
		SELECT checksum FROM {s}.templates
		 WHERE namespace = $1 AND name = $2 AND version = $3 AND NOT EXISTS (SELECT 1 FROM ins)`),
		p.Namespace, p.Name, p.Version, p.Definition, p.Checksum).Scan(&existing)
	if errors.Is(err, pgx.ErrNoRows) {
		err = db.QueryRow(ctx, s.q(`SELECT checksum FROM {s}.templates WHERE namespace = $1 AND name = $2 AND version = $3`),
			p.Namespace, p.Name, p.Version).Scan(&existing)
	}
	if err != nil {
		return fmt.Errorf("register template %s/%s@%s: %w", p.Namespace, p.Name, p.Version, err)
	}
	if existing != p.Checksum {
		return &store.TemplateConflictError{Namespace: p.Namespace, Name: p.Name, Version: p.Version, Existing: existing, Proposed: p.Checksum}
	}
	return nil
}

// CreateTask inserts the task, its steps, edges and initial transitions and enqueues the root
// steps, in tx when given (through a savepoint) or in a transaction of its own. A task with the
// same identity hash for the same template is returned with Duplicate set, and nothing is written.
func (s *Store) CreateTask(ctx context.Context, tx pgx.Tx, p store.CreateTaskParams) (*store.CreateTaskResult, error) {
	if tx == nil && p.Template == nil && (p.OwnedQueue || p.Enqueuer == nil) {
		return s.createTaskOnce(ctx, p)
	}
	var res *store.CreateTaskResult
	err := s.inTx(ctx, tx, func(tx pgx.Tx) error {
		var err error
		res, err = s.createTask(ctx, tx, p)
		return err
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

func (s *Store) createTask(ctx context.Context, tx pgx.Tx, p store.CreateTaskParams) (*store.CreateTaskResult, error) {
	plan, roots, err := params.Create(p)
	if err != nil {
		return nil, err
	}
	if p.Template != nil {
		if err := s.registerTemplate(ctx, tx, *p.Template); err != nil {
			return nil, err
		}
	}
	// Round trip 1 inserts the task and returns its row; round trip 2 pipelines the rest (see
	// queueTaskWrites). CreateTask without a transaction takes one trip instead (createTaskOnce).
	task, err := scanTask(tx.QueryRow(ctx, s.q(insertTaskSQL+`
		ON CONFLICT ON CONSTRAINT tasks_identity_unique DO NOTHING
		RETURNING `+taskColumns), insertTaskArgs(p, plan)...))
	if errors.Is(err, pgx.ErrNoRows) {
		return s.duplicateOf(ctx, tx, p)
	}
	if err != nil {
		return nil, fmt.Errorf("insert task: %w", err)
	}
	b := &pgx.Batch{}
	var steps []store.Step
	sent, _, err := s.queueTaskWrites(b, p, plan, roots, &steps, nil) // no ClaimRoot in the caller's transaction
	if err != nil {
		return nil, err
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("insert the steps and transitions of task %s: %w", p.TaskID, err)
	}
	if !sent {
		if err := p.Enqueuer.EnqueueTx(ctx, tx, p.Namespace, roots, params.RootDelay(p, time.Now())); err != nil {
			return nil, fmt.Errorf("enqueue root steps: %w", err)
		}
	}
	s.shapes.created(p, plan.Counters) // speculate.go (a task rolled back with tx is never found)
	return &store.CreateTaskResult{Task: *task, Steps: steps}, nil
}

// createTaskOnce is CreateTask in a transaction of its own, in one round trip: BEGIN, the task,
// its steps, edges and transitions, the roots' messages and COMMIT are pipelined. A duplicate
// fails the task's insert on tasks_identity_unique (there is no ON CONFLICT here, so that nothing
// after it runs), the pipeline stops before the COMMIT, and the task found under that identity is
// returned. It serves only the creations whose every write can join the pipeline: no registry row
// to compare, and the roots' messages on the store's own queue or none.
func (s *Store) createTaskOnce(ctx context.Context, p store.CreateTaskParams) (*store.CreateTaskResult, error) {
	plan, roots, err := params.Create(p)
	if err != nil {
		return nil, err
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	var task *store.Task
	b.Queue(s.q(insertTaskSQL+` RETURNING `+taskColumns), insertTaskArgs(p, plan)...).QueryRow(func(row pgx.Row) error {
		var err error
		task, err = scanTask(row)
		return err
	})
	var steps []store.Step
	_, claimed, err := s.queueTaskWrites(b, p, plan, roots, &steps, p.ClaimRoot)
	if err != nil {
		return nil, err
	}
	b.Queue("COMMIT")
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		// The pipeline stopped at its first error, before the COMMIT: end the transaction (a
		// connection left in one is closed, not reused, when released).
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
		_, rerr := conn.Exec(rctx, "ROLLBACK")
		cancel()
		if rerr != nil {
			return nil, fmt.Errorf("insert task %s: %w (and the rollback failed: %v)", p.TaskID, err, rerr)
		}
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == "tasks_identity_unique" {
			return s.duplicateOf(ctx, conn, p) // on conn: a second connection could wait for this one's
		}
		return nil, fmt.Errorf("insert task %s: %w", p.TaskID, err)
	}
	s.shapes.created(p, plan.Counters) // speculate.go
	res := &store.CreateTaskResult{Task: *task, Steps: steps}
	if claimed != nil && claimed.found {
		claimed.claimed.Task = *task
		res.Claimed = &store.ClaimedMessage{ClaimedStep: claimed.claimed, MessageID: claimed.messageID}
	}
	return res, nil
}

// rollbackTimeout bounds the ROLLBACK after a pipeline that failed.
const rollbackTimeout = 5 * time.Second

// duplicateOf returns the task that holds p's identity, with its steps, as a duplicate.
func (s *Store) duplicateOf(ctx context.Context, q querier, p store.CreateTaskParams) (*store.CreateTaskResult, error) {
	existing, err := s.taskByIdentity(ctx, q, p.Namespace, p.Name, p.IdentityHash)
	if err != nil {
		return nil, err
	}
	steps, err := s.getSteps(ctx, q, existing.ID)
	if err != nil {
		return nil, err
	}
	return &store.CreateTaskResult{Task: *existing, Steps: steps, Duplicate: true}, nil
}

// insertTaskSQL inserts a task's row; insertTaskArgs are its arguments. Its transition_seq ($18) is
// the sort key of the last transition queueTaskWrites writes: create, then the plan's path.
const insertTaskSQL = `
		INSERT INTO {s}.tasks (task_id, namespace, name, version, state, context, identity_hash, idempotency_key,
		                       priority, correlation_id, tags, steps_total, steps_unfinished, steps_active, created_at, updated_at,
		                       initiator, source_system, reason, trace_parent, transition_seq)
		VALUES ($1, $2, $3, $4, $5, $6, $7, NULLIF($8, ''), $9, NULLIF($10, ''), $11, $12, $17, $13, clock_timestamp(), clock_timestamp(),
		        NULLIF($14, ''), NULLIF($15, ''), NULLIF($16, ''), NULLIF($18, ''), $19)`

func insertTaskArgs(p store.CreateTaskParams, plan statemachine.CreatePlan) []any {
	tags := p.Tags
	if tags == nil {
		tags = []string{}
	}
	return []any{pgID(p.TaskID), p.Namespace, p.Name, p.Version, string(plan.Counters.State), p.Context, p.IdentityHash, p.IdempotencyKey,
		p.Priority, p.CorrelationID, tags, plan.Counters.Total, plan.Counters.Active, p.Initiator, p.SourceSystem, p.Reason,
		plan.Counters.Unfinished, p.TraceParent, int32(1 + len(plan.Path))}
}

// queueTaskWrites queues into b what follows the task's row: the steps with their first
// transitions, the edges, the task's transitions, the roots' messages (on the store's own queue
// with p.OwnedQueue, or through p.Enqueuer when its queue can join the batch) and the
// announcement. sent is false when the roots' messages are still to be sent (EnqueueTx).
//
// A scheduled task's roots (p.RunAt) are sent as retry timers, delayed until p.RunAt.
//
// With claimRoot, on the store's own queue, the root it names is sent held and claimed in the
// batch (store.CreateTaskParams.ClaimRoot): claimed says, once the batch has run, whether it was.
func (s *Store) queueTaskWrites(b *pgx.Batch, p store.CreateTaskParams, plan statemachine.CreatePlan, roots []store.StepRef, out *[]store.Step,
	claimRoot *store.ClaimRootParams) (sent bool, claimed *claimNext, err error) {
	delay := params.RootDelay(p, time.Now())
	s.queueInsertSteps(b, p, plan.States, out)
	froms, tos, events := []*string{nil}, []string{string(statemachine.TaskPending)}, []string{statemachine.EventCreate}
	for _, h := range plan.Path {
		from := string(h.From)
		froms, tos, events = append(froms, &from), append(tos, string(h.To)), append(events, string(h.Event))
	}
	b.Queue(s.q(`
		INSERT INTO {s}.task_transitions (task_id, from_state, to_state, event, sort_key, created_at)
		SELECT $1, x.f, x.t, x.e, x.ord, clock_timestamp()
		  FROM unnest($2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS x(f, t, e, ord)
		 ORDER BY x.ord`), pgID(p.TaskID), froms, tos, events)
	switch {
	case len(roots) == 0:
		sent = true
	case p.OwnedQueue:
		queues, docs, delays := make([]string, 0, len(roots)), make([]string, 0, len(roots)), make([]int64, 0, len(roots))
		delayMs := ceilMillis(delay)
		for _, r := range roots {
			doc, err := json.Marshal(r.Message())
			if err != nil {
				return false, nil, fmt.Errorf("enqueue root steps: %w", err)
			}
			if claimRoot != nil && claimed == nil && r.StepID == claimRoot.StepID && !r.Retry && p.RunAt.IsZero() {
				// Held for the lease and claimed below: were the claim to miss, the message
				// would surface after the lease.
				claimed = &claimNext{}
				if err := s.queue.QueueSendHeld(b, p.Namespace, doc, claimRoot.Lease, &claimed.messageID); err != nil {
					return false, nil, fmt.Errorf("hold the message of %s: %w", r.StepID, err)
				}
				continue
			}
			queues, docs, delays = append(queues, p.Namespace), append(docs, string(doc)), append(delays, delayMs)
		}
		if len(queues) > 0 {
			s.queue.queueSendMany(b, queues, docs, delays)
		}
		if claimed != nil {
			// A root: no results to load; the task is the row this batch inserts (createTaskOnce).
			claimed.claim = s.queueClaimLoading(b, claimRoot.StepID, claimRoot.WorkerID, claimRoot.Lease, nil, []string{}, false)
		}
		sent = true
	case p.Enqueuer == nil:
		sent = true
	default:
		if be, ok := p.Enqueuer.(store.BatchEnqueuer); ok {
			if sent, err = be.EnqueueBatch(b, p.Namespace, roots, delay); err != nil {
				return false, nil, fmt.Errorf("enqueue root steps: %w", err)
			}
		}
	}
	if p.AnnounceCommit {
		s.queueNotify(b, eventCreated, p.TaskID)
	}
	return sent, claimed, nil
}

// queueInsertSteps queues into b the writes of the steps (every field of store.NewStep, the batch
// ones included, as spawn does), their edges and their first transitions (create, and enqueue for
// the roots), stamping transitions with clock_timestamp() so the audit trail keeps its order. The
// step rows as written, in step_id order, are stored in *out when the batch runs.
func (s *Store) queueInsertSteps(b *pgx.Batch, p store.CreateTaskParams, first []statemachine.StepState, out *[]store.Step) {
	n := len(p.Steps)
	var (
		ids                                      = make([]uuid.UUID, n)
		names, tsteps, handlers, types, backoffs = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		states                                   = make([]string, n)
		maxAttempts                              = make([]int64, n) // pgx refuses, not truncates, a value beyond int4
		parents                                  = make([]int32, n)
		retryable                                = make([]bool, n)
		baseMs, maxMs, timeoutMs                 = make([]int64, n), make([]int64, n), make([]int64, n)
		inputs, strategies                       = make([]*string, n), make([]*string, n)
		held                                     = make([]bool, n)
		groups                                   = make([]pgtype.UUID, n) // Valid false: NULL
		edgeFrom, edgeTo                         []uuid.UUID
	)
	for i, st := range p.Steps {
		ids[i], names[i], tsteps[i], handlers[i], types[i], backoffs[i] = st.StepID, st.Name, st.TemplateStep, st.Handler, st.Type, st.Backoff
		states[i] = string(first[i])
		maxAttempts[i], parents[i], retryable[i] = int64(st.MaxAttempts), int32(len(st.Parents)), st.Retryable
		baseMs[i], maxMs[i], timeoutMs[i] = st.BackoffBase.Milliseconds(), st.MaxBackoff.Milliseconds(), st.Timeout.Milliseconds()
		if len(st.Inputs) > 0 {
			v := string(st.Inputs)
			inputs[i] = &v
		}
		held[i] = st.Held
		if st.BatchGroup != uuid.Nil {
			groups[i] = pgID(st.BatchGroup)
		}
		if st.FailureStrategy != "" {
			v := st.FailureStrategy
			strategies[i] = &v
		}
		for _, parent := range st.Parents {
			edgeFrom = append(edgeFrom, p.Steps[parent].StepID)
			edgeTo = append(edgeTo, st.StepID)
		}
	}
	b.Queue(s.q(`
		WITH ins AS (
			INSERT INTO {s}.steps (step_id, task_id, name, template_step, handler, step_type, state, max_attempts,
			                       retryable, backoff, backoff_base_ms, max_backoff_ms, timeout_ms, parents_total,
			                       parents_unfinished, inputs, held, batch_group, failure_strategy, next_retry_at, transition_seq)
			SELECT u.id, $1, u.name, u.tstep, u.handler, u.type, u.state, u.max_attempts, u.retryable, u.backoff,
			       u.base_ms, u.max_ms, u.timeout_ms, u.parents, u.parents, u.inputs::jsonb, u.held, u.grp, u.strategy,
			       CASE WHEN u.state = 'waiting_for_retry' THEN $19::timestamptz END,
			       CASE WHEN u.state IN ('enqueued', 'waiting_for_retry') THEN 2 ELSE 1 END -- the last of the transitions below
			  FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int[],
			              $9::bool[], $10::text[], $11::bigint[], $12::bigint[], $13::bigint[], $14::int[], $15::text[],
			              $16::bool[], $17::uuid[], $18::text[])
			       AS u(id, name, tstep, handler, type, state, max_attempts, retryable, backoff, base_ms, max_ms,
			            timeout_ms, parents, inputs, held, grp, strategy)
			RETURNING *
		), trs AS (
			INSERT INTO {s}.step_transitions (step_id, task_id, from_state, to_state, event, sort_key, created_at)
			SELECT step_id, $1, NULL, 'pending', 'create', 1, clock_timestamp() FROM ins
			UNION ALL
			SELECT step_id, $1, 'pending', 'enqueued', 'enqueue', 2, clock_timestamp() FROM ins WHERE state = 'enqueued'
			UNION ALL
			SELECT step_id, $1, 'pending', 'waiting_for_retry', 'schedule', 2, clock_timestamp() FROM ins WHERE state = 'waiting_for_retry'
		)
		SELECT `+stepColumns+` FROM ins ORDER BY step_id`),
		pgID(p.TaskID), pgIDs(ids), names, tsteps, handlers, types, states, maxAttempts, retryable, backoffs, baseMs, maxMs, timeoutMs, parents, inputs,
		held, groups, strategies, runAt(p)).Query(func(rows pgx.Rows) error {
		steps, err := collectSteps(rows)
		if err != nil {
			return fmt.Errorf("insert steps: %w", err)
		}
		*out = steps
		return nil
	})
	if len(edgeFrom) > 0 {
		b.Queue(s.q(`
			INSERT INTO {s}.edges (task_id, from_step_id, to_step_id)
			SELECT $1, f, t FROM unnest($2::uuid[], $3::uuid[]) AS u(f, t)`), pgID(p.TaskID), pgIDs(edgeFrom), pgIDs(edgeTo))
	}
}

// runAt is the next_retry_at of a scheduled task's roots (p.RunAt), or NULL.
func runAt(p store.CreateTaskParams) *time.Time {
	if p.RunAt.IsZero() {
		return nil
	}
	t := p.RunAt
	return &t
}

// ceilMillis is d in whole milliseconds, rounded up, so that a message delayed until a time is
// never visible before it.
func ceilMillis(d time.Duration) int64 {
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

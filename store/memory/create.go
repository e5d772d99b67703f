package memory

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
	"github.com/tasker-systems/tasker/store/internal/params"
)

// RegisterTemplate stores a template definition in the registry. The same checksum again is a
// no-op; a different one under the same key is refused with a *store.TemplateConflictError and the
// stored row is kept (versions are immutable).
func (s *Store) RegisterTemplate(ctx context.Context, p store.RegisterTemplateParams) error {
	return s.write(ctx, func(tx *txn) error { return tx.registerTemplate(p) })
}

func (tx *txn) registerTemplate(p store.RegisterTemplateParams) error {
	def, err := jsonb(p.Definition)
	if err == nil && def == nil {
		err = errors.New(`null value in column "definition" violates not-null constraint`)
	}
	if err != nil {
		return fmt.Errorf("register template %s/%s@%s: %w", p.Namespace, p.Name, p.Version, err)
	}
	key := templateKey{p.Namespace, p.Name, p.Version}
	row, ok := tx.s.templates[key]
	if !ok {
		tx.s.templates[key] = &templateRow{definition: def, checksum: p.Checksum, createdAt: tx.now, updatedAt: tx.now}
		tx.onUndo(func() { delete(tx.s.templates, key) })
		return nil
	}
	if row.checksum != p.Checksum {
		return &store.TemplateConflictError{Namespace: p.Namespace, Name: p.Name, Version: p.Version, Existing: row.checksum, Proposed: p.Checksum}
	}
	return nil
}

// CreateTask inserts the task, its steps, edges and initial transitions and enqueues the root
// steps, atomically. A task with the same identity hash for the same template is returned with
// Duplicate set, and nothing is written. A non-nil tx is refused with ErrNoTransactions.
func (s *Store) CreateTask(ctx context.Context, tx pgx.Tx, p store.CreateTaskParams) (*store.CreateTaskResult, error) {
	if tx != nil {
		return nil, ErrNoTransactions
	}
	var res *store.CreateTaskResult
	err := s.write(ctx, func(tx *txn) error {
		var err error
		res, err = tx.createTask(p)
		return err
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

func (tx *txn) createTask(p store.CreateTaskParams) (*store.CreateTaskResult, error) {
	s := tx.s
	plan, roots, err := params.Create(p)
	if err != nil {
		return nil, err
	}
	tags := slices.Clone(p.Tags)
	if tags == nil {
		tags = []string{}
	}
	if p.Template != nil {
		if err := tx.registerTemplate(*p.Template); err != nil {
			return nil, err
		}
	}
	ident := identityKey{p.Namespace, p.Name, p.IdentityHash}
	if existing, ok := s.identities[ident]; ok {
		return &store.CreateTaskResult{Task: cloneTask(&existing.t), Steps: cloneSteps(existing), Duplicate: true}, nil
	}
	if _, ok := s.templates[templateKey{p.Namespace, p.Name, p.Version}]; !ok {
		return nil, fmt.Errorf(`insert task: insert or update on table "tasks" violates foreign key constraint "tasks_template_fk": template %s/%s@%s is not registered`,
			p.Namespace, p.Name, p.Version)
	}
	if _, ok := s.tasks[p.TaskID]; ok {
		return nil, fmt.Errorf(`insert task: duplicate key value violates unique constraint "tasks_pkey": %s`, p.TaskID)
	}
	ctxJSON, err := jsonb(p.Context)
	if err == nil && ctxJSON == nil {
		err = errors.New(`null value in column "context" violates not-null constraint`)
	}
	if err != nil {
		return nil, fmt.Errorf("insert task: %w", err)
	}
	created := s.clock()
	t := &taskRow{
		t: store.Task{ID: p.TaskID, Namespace: p.Namespace, Name: p.Name, Version: p.Version,
			State: plan.Counters.State, Context: ctxJSON, IdentityHash: p.IdentityHash,
			IdempotencyKey: p.IdempotencyKey, Priority: p.Priority, CorrelationID: p.CorrelationID, Tags: tags,
			Initiator: p.Initiator, SourceSystem: p.SourceSystem, Reason: p.Reason, TraceParent: p.TraceParent,
			StepsTotal: plan.Counters.Total, StepsUnfinished: plan.Counters.Unfinished, StepsActive: plan.Counters.Active,
			CreatedAt: created, UpdatedAt: created},
		byName: map[string]*stepRow{},
	}
	s.tasks[p.TaskID] = t
	s.identities[ident] = t
	tx.onUndo(func() { delete(s.tasks, p.TaskID); delete(s.identities, ident) })

	if err := tx.insertSteps(t, p.Steps, plan.States, runAt(p)); err != nil {
		return nil, err
	}
	tx.taskTransitions(t, plan.Path)
	tx.enqueue(p.Enqueuer, p.Namespace, roots, params.RootDelay(p, tx.now))
	return &store.CreateTaskResult{Task: cloneTask(&t.t), Steps: cloneSteps(t)}, nil
}

// taskTransitions records a new task's creation and its planned path.
func (tx *txn) taskTransitions(t *taskRow, path []statemachine.TaskTransition) {
	first := &transition{to: string(statemachine.TaskPending), event: statemachine.EventCreate, sortKey: 1, mostRecent: len(path) == 0}
	tx.appendTrail(t, first)
	t.cur = first
	for i, h := range path {
		tr := &transition{from: string(h.From), to: string(h.To), event: string(h.Event), sortKey: i + 2, mostRecent: i == len(path)-1}
		tx.appendTrail(t, tr)
		t.cur = tr
	}
}

// insertSteps adds a new task's steps, their edges and their first transitions (create, and
// enqueue for the roots, or schedule for the roots of a scheduled task, which wait until runAt).
func (tx *txn) insertSteps(t *taskRow, steps []store.NewStep, states []statemachine.StepState, runAt *time.Time) error {
	rows := make([]*stepRow, len(steps))
	for i, ns := range steps {
		st, err := tx.newStep(t, ns)
		if err != nil {
			return fmt.Errorf("insert steps: %w", err)
		}
		st.parentsTotal, st.parentsUnfinished = len(ns.Parents), len(ns.Parents)
		st.s.State = states[i]
		if st.s.State == statemachine.StepWaitingForRetry {
			st.s.NextRetryAt = clonePtr(runAt)
		}
		rows[i] = st
	}
	for i, ns := range steps {
		for _, parent := range ns.Parents {
			if parent < 0 || parent >= len(rows) {
				return fmt.Errorf("insert edges: step %q: parent index %d out of range", ns.Name, parent)
			}
			if err := tx.addEdge(rows[parent], rows[i]); err != nil {
				return fmt.Errorf("insert edges: %w", err)
			}
		}
	}
	var roots, scheduled []stepMove
	for _, st := range rows {
		tx.firstStepTransition(st)
		switch st.s.State {
		case statemachine.StepEnqueued:
			roots = append(roots, stepMove{st, statemachine.StepPending})
		case statemachine.StepWaitingForRetry:
			scheduled = append(scheduled, stepMove{st, statemachine.StepPending})
		}
	}
	if err := tx.writeStepTransitions(scheduled, statemachine.StepEventSchedule, statemachine.StepWaitingForRetry, nil); err != nil {
		return err
	}
	return tx.writeStepTransitions(roots, statemachine.StepEventEnqueue, statemachine.StepEnqueued, nil)
}

// runAt is the next_retry_at of a scheduled task's roots (p.RunAt), or nil.
func runAt(p store.CreateTaskParams) *time.Time {
	if p.RunAt.IsZero() {
		return nil
	}
	t := p.RunAt
	return &t
}

// newStep inserts a pending step row with no parents, enforcing the steps table's constraints.
func (tx *txn) newStep(t *taskRow, ns store.NewStep) (*stepRow, error) {
	s := tx.s
	if _, ok := s.steps[ns.StepID]; ok {
		return nil, fmt.Errorf(`duplicate key value violates unique constraint "steps_pkey": %s`, ns.StepID)
	}
	if _, ok := t.byName[ns.Name]; ok {
		return nil, fmt.Errorf(`duplicate key value violates unique constraint "steps_name_unique": %q`, ns.Name)
	}
	switch ns.Type {
	case "standard", "decision", "deferred_convergence", "batchable", "batch_worker":
	default:
		return nil, fmt.Errorf(`value for domain step_type violates check constraint "step_type_check": %q`, ns.Type)
	}
	switch ns.Backoff {
	case "exponential", "linear", "none":
	default:
		return nil, fmt.Errorf(`value for domain step_backoff violates check constraint "step_backoff_check": %q`, ns.Backoff)
	}
	if ns.MaxAttempts > math.MaxInt32 || ns.MaxAttempts < math.MinInt32 {
		return nil, fmt.Errorf("max_attempts %d is out of range for the steps table's integer column", ns.MaxAttempts)
	}
	switch ns.FailureStrategy {
	case "", "continue_on_failure", "fail_fast", "isolate":
	default:
		return nil, fmt.Errorf(`value for domain failure_strategy violates check constraint "failure_strategy_check": %q`, ns.FailureStrategy)
	}
	inputs, err := jsonb(ns.Inputs)
	if err != nil {
		return nil, err
	}
	st := &stepRow{task: t, held: ns.Held, s: store.Step{
		ID: ns.StepID, TaskID: t.t.ID, Name: ns.Name, TemplateStep: ns.TemplateStep, Handler: ns.Handler,
		Type: ns.Type, State: statemachine.StepPending, MaxAttempts: ns.MaxAttempts, Retryable: ns.Retryable,
		Backoff: ns.Backoff, BackoffBase: millis(ns.BackoffBase), MaxBackoff: millis(ns.MaxBackoff),
		Timeout: millis(ns.Timeout), Inputs: inputs, FailureStrategy: ns.FailureStrategy,
		CreatedAt: tx.now, UpdatedAt: tx.now,
	}}
	if ns.BatchGroup != uuid.Nil {
		g := ns.BatchGroup
		st.s.BatchGroup = &g
	}
	if err := checkStep(st); err != nil {
		return nil, err
	}
	s.steps[ns.StepID] = st
	t.byName[ns.Name] = st
	set(tx, &t.steps, append(t.steps, st))
	tx.onUndo(func() { delete(s.steps, ns.StepID); delete(t.byName, ns.Name) })
	return st, nil
}

// addEdge records that child waits for parent; the caller counts the parent in the child's
// counters.
func (tx *txn) addEdge(parent, child *stepRow) error {
	if parent == child {
		return fmt.Errorf(`new row for relation "edges" violates check constraint "edges_no_self": %q`, child.s.Name)
	}
	key := [2]uuid.UUID{parent.s.ID, child.s.ID}
	if _, ok := tx.s.edges[key]; ok {
		return fmt.Errorf(`duplicate key value violates unique constraint "edges_pkey": %q -> %q`, parent.s.Name, child.s.Name)
	}
	tx.s.edges[key] = struct{}{}
	tx.onUndo(func() { delete(tx.s.edges, key) })
	set(tx, &parent.children, append(parent.children, child))
	set(tx, &child.parents, append(child.parents, parent))
	return nil
}

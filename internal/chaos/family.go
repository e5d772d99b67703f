package chaos

// The family: what the child-task crash test (family_test.go) and the worker program's -family
// mode share. A parent task's one step runs a child task of another template (Step.Child) and
// completes with the child's result; the child's one step returns a token drawn afresh at every
// run, so that the test can tell which run's result reached the parent. Both handlers can be held
// at chosen points (Holds) until the test opens a gate (a row of chaos_gates), so that the test
// SIGKILLs a worker exactly there; every run, and every point it reaches, is a row of
// chaos_family_runs.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/tasker"
)

// The family's templates, handlers and gates.
const (
	ParentNamespace = "chaos_parent"
	ParentName      = "parent"
	ParentStep      = "spawn"
	ParentHandler   = "chaos_spawn_child"

	ChildNamespace = "chaos_child"
	ChildName      = "child"
	ChildStep      = "work"
	ChildHandler   = "chaos_child_work"

	// ParentGate releases the parent's holds, ChildGate the child's.
	ParentGate = "parent"
	ChildGate  = "child"
)

// Hold points: where a handler waits for its gate when the worker is told to (-hold).
const (
	// HoldChild: the child's handler, after its start row, before it returns its result.
	HoldChild = "child"
	// HoldParentCreated: the parent's handler, after Child created the child (or found it) and
	// said to wait, before the handler returns, so before the park commits.
	HoldParentCreated = "parent-created"
	// HoldParentResult: the parent's handler, after Child returned the completed child, before
	// the handler returns the child's result, so before the completion commits.
	HoldParentResult = "parent-result"
)

// Phases of chaos_family_runs rows.
const (
	PhaseStart  = "start"  // the handler began (token: the child's fresh token)
	PhaseHold   = "hold"   // the handler waits at its hold point for its gate
	PhaseParked = "parked" // the parent's handler returns Child's wait
	PhaseDone   = "done"   // the handler returns its result (token: the result's token)
)

// ParentYAML and ChildYAML are the family's templates. Attempts are generous and the backoff
// short: a step whose worker was killed spends an attempt when it is rescued.
const (
	ParentYAML = `
name: parent
namespace_name: chaos_parent
version: 1.0.0
description: "one step that runs a child task and completes with its result, for the child crash test"
steps:
  - name: spawn
    handler: {callable: chaos_spawn_child}
    retry: {max_attempts: 10, backoff: exponential, backoff_base_ms: 50, max_backoff_ms: 400}
`
	ChildYAML = `
name: child
namespace_name: chaos_child
version: 1.0.0
description: "the child of the child crash test: one step that returns a fresh token"
steps:
  - name: work
    handler: {callable: chaos_child_work}
    retry: {max_attempts: 10, backoff: exponential, backoff_base_ms: 50, max_backoff_ms: 400}
`
)

// FamilyTemplates parses ParentYAML and ChildYAML.
func FamilyTemplates() ([]*tasker.Template, error) {
	var out []*tasker.Template
	for _, y := range []string{ParentYAML, ChildYAML} {
		t, err := tasker.ParseTemplate([]byte(y))
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// ChildResult is the child's result, which the parent's step returns as is.
type ChildResult struct {
	Token   string `json:"token"`
	Attempt int    `json:"attempt"`
	PID     int    `json:"pid"`
}

// CreateFamilyTables creates <schema>.chaos_family_runs (one row per handler run and per point it
// reached) and <schema>.chaos_gates (a row opens the gate of its name).
func CreateFamilyTables(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	_, err := pool.Exec(ctx, `CREATE TABLE `+pgx.Identifier{schema, "chaos_family_runs"}.Sanitize()+` (
		id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		task_id    uuid        NOT NULL,
		step_id    uuid        NOT NULL,
		step_name  text        NOT NULL,
		attempt    integer     NOT NULL,
		worker_id  text        NOT NULL,
		worker_pid integer     NOT NULL,
		phase      text        NOT NULL,
		token      text,
		at         timestamptz NOT NULL DEFAULT clock_timestamp()
	);
	CREATE TABLE `+pgx.Identifier{schema, "chaos_gates"}.Sanitize()+` (
		name      text        PRIMARY KEY,
		opened_at timestamptz NOT NULL DEFAULT clock_timestamp()
	)`)
	if err != nil {
		return fmt.Errorf("create the family tables: %w", err)
	}
	return nil
}

// OpenGate opens the gate name: the handlers held there go on, and later runs pass it.
func OpenGate(ctx context.Context, pool *pgxpool.Pool, schema, name string) error {
	_, err := pool.Exec(ctx, `INSERT INTO `+pgx.Identifier{schema, "chaos_gates"}.Sanitize()+
		` (name) VALUES ($1) ON CONFLICT DO NOTHING`, name)
	return err
}

// family holds what the two handlers share.
type family struct {
	pool          *pgxpool.Pool
	insert, gate  string
	workerID      string
	pid           int
	holds         map[string]bool
	gatePollEvery time.Duration
	minSleep      time.Duration
	maxSleep      time.Duration
}

// FamilyHandlers returns the parent's and the child's handlers; holds names the hold points
// (HoldChild, ...) at which they wait for their gates, and the child's handler sleeps a random
// time in [minSleep, maxSleep) before it returns, and so does the parent's (after Child), so that
// random kills land while they run.
func FamilyHandlers(pool *pgxpool.Pool, schema, workerID string, holds []string, minSleep, maxSleep time.Duration) (parent, child tasker.HandlerFunc) {
	f := &family{
		pool: pool,
		insert: `INSERT INTO ` + pgx.Identifier{schema, "chaos_family_runs"}.Sanitize() +
			` (task_id, step_id, step_name, attempt, worker_id, worker_pid, phase, token) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		gate:          `SELECT EXISTS (SELECT 1 FROM ` + pgx.Identifier{schema, "chaos_gates"}.Sanitize() + ` WHERE name = $1)`,
		workerID:      workerID,
		pid:           os.Getpid(),
		holds:         map[string]bool{},
		gatePollEvery: 10 * time.Millisecond,
		minSleep:      minSleep,
		maxSleep:      maxSleep,
	}
	for _, h := range holds {
		f.holds[h] = true
	}
	return f.parent, f.child
}

// record writes one chaos_family_runs row in a transaction of its own; a failure is retryable.
func (f *family) record(ctx context.Context, s *tasker.Step, phase, token string) error {
	var tok *string
	if token != "" {
		tok = &token
	}
	if _, err := f.pool.Exec(ctx, f.insert, s.TaskID, s.ID, s.Name, s.Attempt, f.workerID, f.pid, phase, tok); err != nil {
		return fmt.Errorf("record %s of %s: %w", phase, s.Name, err)
	}
	return nil
}

// hold waits at point until its gate opens, when the worker holds there.
func (f *family) hold(ctx context.Context, s *tasker.Step, point, gate string) error {
	if !f.holds[point] {
		return nil
	}
	if err := f.record(ctx, s, PhaseHold, ""); err != nil {
		return err
	}
	for {
		var open bool
		if err := f.pool.QueryRow(ctx, f.gate, gate).Scan(&open); err != nil {
			return fmt.Errorf("read gate %s: %w", gate, err)
		}
		if open {
			return nil
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(f.gatePollEvery):
		}
	}
}

// sleep sleeps a random time in [minSleep, maxSleep), or until ctx ends.
func (f *family) sleep(ctx context.Context) error {
	d := f.minSleep
	if f.maxSleep > f.minSleep {
		d += mrand.N(f.maxSleep - f.minSleep)
	}
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (f *family) child(ctx context.Context, s *tasker.Step) (any, error) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	r := ChildResult{Token: hex.EncodeToString(b[:]), Attempt: s.Attempt, PID: f.pid}
	if err := f.record(ctx, s, PhaseStart, r.Token); err != nil {
		return nil, err
	}
	if err := f.hold(ctx, s, HoldChild, ChildGate); err != nil {
		return nil, err
	}
	if err := f.sleep(ctx); err != nil {
		return nil, err
	}
	if err := f.record(ctx, s, PhaseDone, r.Token); err != nil {
		return nil, err
	}
	return r, nil
}

func (f *family) parent(ctx context.Context, s *tasker.Step) (any, error) {
	if err := f.record(ctx, s, PhaseStart, ""); err != nil {
		return nil, err
	}
	child, err := s.Child(ctx, tasker.TaskRequest{Namespace: ChildNamespace, Name: ChildName,
		Context: map[string]any{"parent_task": s.TaskID, "parent_step": s.ID}})
	if err != nil {
		if errors.Is(err, tasker.ErrChildFailed) {
			return nil, err // a child that failed: the step's retry policy runs a new one
		}
		if child != nil {
			return nil, tasker.Permanent(fmt.Errorf("step.Child returned the child %s with the error %w", child.ID, err))
		}
		if !strings.Contains(err.Error(), "waiting for child task") {
			return nil, err // the child could not be created or read: retryable
		}
		// Child's wait (the park error is not exported): hold, then return it as is.
		if err := f.hold(ctx, s, HoldParentCreated, ParentGate); err != nil {
			return nil, err
		}
		if err := f.sleep(ctx); err != nil {
			return nil, err
		}
		if rerr := f.record(ctx, s, PhaseParked, ""); rerr != nil {
			return nil, rerr
		}
		return nil, err
	}
	var r ChildResult
	if err := child.Result(ChildStep, &r); err != nil {
		return nil, tasker.Permanent(fmt.Errorf("the result of child %s: %w", child.ID, err))
	}
	if err := f.hold(ctx, s, HoldParentResult, ParentGate); err != nil {
		return nil, err
	}
	if err := f.sleep(ctx); err != nil {
		return nil, err
	}
	if err := f.record(ctx, s, PhaseDone, r.Token); err != nil {
		return nil, err
	}
	return r, nil
}

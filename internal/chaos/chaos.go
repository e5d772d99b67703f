// Package chaos holds what the chaos test's worker program and its harness share: the diamond
// template, the handler and its side-effect log.
//
// The test (chaos_test.go) builds the worker program (./worker), runs several OS processes of it
// against one schema, creates diamond tasks, SIGKILLs a random process at a fixed interval and
// restarts it, and then checks that nothing was lost: every task and step complete, every step
// complete exactly once, every recorded transition legal, and every step's handler run at least
// once according to the handlers' own log, the chaos_effects table.
//
// The handlers' log is application data, as a user's own table would be, so its SQL lives here
// rather than in store/postgres.
package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/tasker"
)

// Namespace and TaskName select the diamond template.
const (
	Namespace = "chaos"
	TaskName  = "diamond"
)

// Handler is the callable every step of the diamond runs.
const Handler = "chaos_work"

// TemplateYAML is the diamond a → (b, c) → d. Attempts are generous and the backoff short: a step
// whose worker was killed spends an attempt when it is rescued, and the test is about losing
// nothing, not about exhausting retries.
const TemplateYAML = `
name: diamond
namespace_name: chaos
version: 1.0.0
description: "a -> (b, c) -> d, for the chaos test"
steps:
  - name: a
    handler: {callable: chaos_work}
    retry: {max_attempts: 20, backoff: exponential, backoff_base_ms: 100, max_backoff_ms: 1000}
  - name: b
    handler: {callable: chaos_work}
    dependencies: [a]
    retry: {max_attempts: 20, backoff: exponential, backoff_base_ms: 100, max_backoff_ms: 1000}
  - name: c
    handler: {callable: chaos_work}
    dependencies: [a]
    retry: {max_attempts: 20, backoff: exponential, backoff_base_ms: 100, max_backoff_ms: 1000}
  - name: d
    handler: {callable: chaos_work}
    dependencies: [b, c]
    retry: {max_attempts: 20, backoff: exponential, backoff_base_ms: 100, max_backoff_ms: 1000}
`

// Steps are the diamond's step names, and Parents the steps each one reads the results of.
var (
	Steps   = []string{"a", "b", "c", "d"}
	Parents = map[string][]string{"b": {"a"}, "c": {"a"}, "d": {"a", "b", "c"}}
)

// Template parses TemplateYAML.
func Template() (*tasker.Template, error) { return tasker.ParseTemplate([]byte(TemplateYAML)) }

// CreateEffectsTable creates <schema>.chaos_effects: one row per handler run that got as far as
// its write, so that the test can tell how often each step's handler ran.
func CreateEffectsTable(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	_, err := pool.Exec(ctx, `CREATE TABLE `+pgx.Identifier{schema, "chaos_effects"}.Sanitize()+` (
		id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		task_id    uuid        NOT NULL,
		step_id    uuid        NOT NULL,
		step_name  text        NOT NULL,
		attempt    integer     NOT NULL,
		worker_id  text        NOT NULL,
		worker_pid integer     NOT NULL,
		at         timestamptz NOT NULL DEFAULT clock_timestamp()
	)`)
	if err != nil {
		return fmt.Errorf("create chaos_effects: %w", err)
	}
	return nil
}

// Result is what a step's handler returns.
type Result struct {
	Step    string `json:"step"`
	Attempt int    `json:"attempt"`
	PID     int    `json:"pid"`
}

// Work returns the handler of every diamond step. It checks that the step sees the results of its
// parents (a permanent failure otherwise, which blocks the task and fails the test), writes one
// row to chaos_effects in a transaction of its own (an autocommitted INSERT), then sleeps a random
// time in [minSleep, maxSleep) so that kills land while handlers run, and returns.
func Work(pool *pgxpool.Pool, schema, workerID string, minSleep, maxSleep time.Duration) tasker.HandlerFunc {
	pid := os.Getpid()
	insert := `INSERT INTO ` + pgx.Identifier{schema, "chaos_effects"}.Sanitize() +
		` (task_id, step_id, step_name, attempt, worker_id, worker_pid) VALUES ($1, $2, $3, $4, $5, $6)`
	return func(ctx context.Context, s *tasker.Step) (any, error) {
		for _, p := range Parents[s.Name] {
			var r Result
			if err := s.DependencyResult(p, &r); err != nil {
				return nil, tasker.Permanent(err)
			}
			if r.Step != p {
				return nil, tasker.Permanent(fmt.Errorf("the result of %s says it is %q's", p, r.Step))
			}
		}
		if _, err := pool.Exec(ctx, insert, s.TaskID, s.ID, s.Name, s.Attempt, workerID, pid); err != nil {
			return nil, fmt.Errorf("write chaos effect: %w", err) // retryable
		}
		d := minSleep
		if maxSleep > minSleep {
			d += rand.N(maxSleep - minSleep)
		}
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
		return Result{Step: s.Name, Attempt: s.Attempt, PID: pid}, nil
	}
}

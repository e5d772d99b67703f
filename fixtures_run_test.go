package tasker_test

// Templates in Tasker Core's YAML layout run here to the outcome their comments describe, with Go
// handlers registered under their handler.callable names. Every test runs over two sets
// (corefixture.Each): tasker's own templates in testdata/corelayout, in every run, and Tasker
// Core's own e2e fixtures, read in place (never copied) from the folder that TASKER_CORE_FIXTURES
// names; those subtests skip when it is unset and fail when it is set but unreadable. Templates
// with a "test" environment are loaded with it applied (it only shortens timeouts, lowers
// max_attempts or merges mock flags into handler.initialization; the tests assert what it
// changes). Every backoff is short enough to run as written (the longest wait is one 1 s backoff
// of mathematical_sequence), so no template is modified.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/corefixture"
)

// fixturesRunHere are the templates of a set with standard steps only, each run to its outcome
// below.
func fixturesRunHere(set corefixture.Set) []string {
	return corefixture.Pick(set, []string{
		"mathematical_sequence.yaml", "diamond_pattern.yaml", "hierarchical_tree.yaml", "complex_dag.yaml",
		"retry_mechanics_test.yaml", "retry_exhaustion_test.yaml",
		"boundary_max_attempts_zero.yaml", "boundary_max_attempts_one.yaml", "boundary_max_attempts_three.yaml",
		"boundary_non_retryable_first.yaml", "boundary_non_retryable_retries.yaml",
		"ecommerce_order_processing_rs.yaml", "customer_success_process_refund_rs.yaml",
		"payments_process_refund_rs.yaml", "data_pipeline_analytics_pipeline_rs.yaml",
		"microservices_user_registration_rs.yaml", "business_workflow.yaml", "domain_event_publishing.yaml",
		"method_dispatch_rust.yaml", "dlq_staleness_test.yaml",
	}, []string{
		"power_chain.yaml", "split_join.yaml", "fan_tree.yaml", "mixed_graph.yaml",
		"retry_recovers.yaml", "retry_runs_out.yaml",
		"attempts_limit_zero.yaml", "attempts_limit_one.yaml", "attempts_limit_three.yaml",
		"attempts_no_retry_single.yaml", "attempts_no_retry_with_limit.yaml",
		"parcel_dispatch.yaml", "expense_claim.yaml", "signup_events.yaml", "handler_methods.yaml", "stale_limits.yaml",
	})
}

// fixturesUnsupported are the templates of a set with decision, deferred_convergence, batchable
// or batch_worker steps, which fixtures_dynamic_test.go runs (the name dates from before those
// features were implemented).
func fixturesUnsupported(set corefixture.Set) []string {
	return corefixture.Pick(set, []string{
		"batch_processing_example.yaml", "batch_processing_products_csv.yaml", "batch_resumption_test.yaml",
		"conditional_approval_rust.yaml", "diamond_decision_batch.yaml",
	}, []string{
		"range_batches.yaml", "stock_count_csv.yaml", "checkpoint_resume.yaml", "spend_approval.yaml", "parity_batches.yaml",
	})
}

// loadFixture parses a fixture with its "test" environment applied when it has one, and says
// whether it had one.
func loadFixture(t *testing.T, set corefixture.Set, file string) (*tasker.Template, bool) {
	t.Helper()
	path := set.Path(file)
	tmpl, err := tasker.ParseTemplateFile(path)
	require.NoError(t, err, file)
	if _, ok := tmpl.Environments["test"]; !ok {
		return tmpl, false
	}
	tmpl, err = tasker.ParseTemplateFile(path, tasker.WithEnvironment("test"))
	require.NoError(t, err, file)
	return tmpl, true
}

// fixtureEngine is setup(t) with the template registered.
func fixtureEngine(t *testing.T, tmpl *tasker.Template, opts ...setupOpt) *bundle {
	t.Helper()
	return fixtureEngineOn(t, setupB, tmpl, opts...)
}

// fixtureEngineOn is fixtureEngine on the backend of setup.
func fixtureEngineOn(t *testing.T, setup setupFunc, tmpl *tasker.Template, opts ...setupOpt) *bundle {
	t.Helper()
	b := setup(t, opts...)
	require.NoError(t, b.engine.Register(tmpl))
	return b
}

// templateAncestors lists every step before name in the DAG, sorted.
func templateAncestors(tmpl *tasker.Template, name string) []string {
	seen := map[string]bool{}
	var visit func(string)
	visit = func(n string) {
		st, _ := tmpl.Step(n)
		for _, d := range st.Dependencies {
			if !seen[d] {
				seen[d] = true
				visit(d)
			}
		}
	}
	visit(name)
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// describeSteps formats a task's steps for failure messages.
func describeSteps(task *tasker.Task) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "task %s/%s is %s", task.Namespace, task.Name, task.State)
	for _, s := range task.Steps {
		fmt.Fprintf(&sb, "\n  %-32s %-18s attempts=%d/%d", s.Name, s.State, s.Attempts, s.MaxAttempts)
		if s.LastError != nil {
			fmt.Fprintf(&sb, " last_error[%s, attempt %d]=%q", s.LastError.Kind, s.LastError.Attempt, s.LastError.Message)
		}
	}
	return sb.String()
}

// requireTaskComplete checks that the task and every step of its template completed, and that
// each step's attempt limit is the (environment-resolved) template's.
func requireTaskComplete(t *testing.T, tmpl *tasker.Template, task *tasker.Task) {
	t.Helper()
	require.Equal(t, tasker.TaskComplete, task.State, describeSteps(task))
	require.NotNil(t, task.CompletedAt)
	require.Len(t, task.Steps, len(tmpl.Steps))
	for _, st := range tmpl.Steps {
		s, ok := task.Step(st.Name)
		require.True(t, ok, "step %s missing", st.Name)
		require.Equal(t, tasker.StepComplete, s.State, "step %s\n%s", st.Name, describeSteps(task))
		require.Equal(t, st.Retry.MaxAttempts, s.MaxAttempts, "step %s", st.Name)
		require.NotEmpty(t, s.Result, "step %s", st.Name)
	}
}

// stepTransitionsTo counts a step's transitions into a state.
func stepTransitionsTo(trs []tasker.Transition, step string, to tasker.StepState) int {
	n := 0
	for _, tr := range trs {
		if tr.StepName == step && tr.To == string(to) {
			n++
		}
	}
	return n
}

func permanentf(format string, args ...any) error {
	return tasker.Permanent(fmt.Errorf(format, args...))
}

// ---------------------------------------------------------------------------------------------
// Mathematical fixtures: every step squares the product of its parents' results (a root squares
// the input). Results can exceed int64 (6^64), so they are computed with math/big and must survive
// the engine and PostgreSQL as exact JSON integers.

// powerHandler serves every step of the mathematical fixtures, checking the operation that the
// step's handler.initialization names against the number of its parents.
func powerHandler(tmpl *tasker.Template) tasker.HandlerFunc {
	return func(ctx context.Context, s *tasker.Step) (any, error) {
		st, ok := tmpl.Step(s.Name)
		if !ok {
			return nil, permanentf("step %q is not in the template", s.Name)
		}
		// The handler's deadline is the step's (environment-resolved) timeout.
		dl, ok := ctx.Deadline()
		if rem := time.Until(dl); !ok || rem > st.Timeout || rem < st.Timeout-5*time.Second {
			return nil, permanentf("handler deadline in %s (set: %v), want the step timeout %s", time.Until(dl), ok, st.Timeout)
		}
		op, _ := s.Config()["operation"].(string)
		parents := map[string]int{"square": 1, "multiply_and_square": 2, "multiply_three_and_square": 3}
		if lc, ok := s.Config()["leaf_count"].(float64); ok && op == "multiply_all_and_square" {
			parents[op] = int(lc)
		}
		want, known := parents[op]
		if !known {
			return nil, permanentf("unknown operation %q", op)
		}
		prod := new(big.Int)
		if len(st.Dependencies) == 0 {
			var in struct {
				EvenNumber *int64 `json:"even_number"`
			}
			if err := s.Input(&in); err != nil || in.EvenNumber == nil {
				return nil, permanentf("task context must contain an even number (%v)", err)
			}
			if *in.EvenNumber%2 != 0 {
				return nil, permanentf("number must be even, got %d", *in.EvenNumber)
			}
			prod.SetInt64(*in.EvenNumber)
		} else {
			if len(st.Dependencies) != want {
				return nil, permanentf("operation %s wants %d parents, step has %d", op, want, len(st.Dependencies))
			}
			prod.SetInt64(1)
			for _, p := range st.Dependencies {
				var v big.Int
				if err := s.DependencyResult(p, &v); err != nil {
					return nil, tasker.Permanent(err)
				}
				prod.Mul(prod, &v)
			}
		}
		return new(big.Int).Mul(prod, prod), nil
	}
}

func pow6(k int64) *big.Int { return new(big.Int).Exp(big.NewInt(6), big.NewInt(k), nil) }

// requireBigResult checks that a step's stored result is exactly the JSON integer 6^k.
func requireBigResult(t *testing.T, task *tasker.Task, step string, k int64) {
	t.Helper()
	s, ok := task.Step(step)
	require.True(t, ok, step)
	got, ok := new(big.Int).SetString(strings.TrimSpace(string(s.Result)), 10)
	require.True(t, ok, "result of %s is not a plain JSON integer: %s", step, s.Result)
	require.Equal(t, pow6(k).String(), got.String(), "%s should be 6^%d", step, k)
}

func TestFixtureMathematicalSequence(t *testing.T) {
	t.Parallel()
	corefixture.Each(t, func(t *testing.T, set corefixture.Set) {
		file := corefixture.Pick(set, "mathematical_sequence.yaml", "power_chain.yaml")
		// What the test environment makes of every step: 2 attempts, a shorter timeout, the
		// template's own backoff.
		testTimeout := corefixture.Pick(set, 10*time.Second, 8*time.Second)
		backoffBase := corefixture.Pick(set, time.Second, 250*time.Millisecond)
		// chain returns the four steps of the template in chain order, checking that each depends
		// on the one before.
		chain := func(t *testing.T, tmpl *tasker.Template) []string {
			require.Len(t, tmpl.Steps, 4)
			var names []string
			for i, st := range tmpl.Steps {
				if i > 0 {
					require.Equal(t, []string{names[i-1]}, st.Dependencies, st.Name)
				}
				names = append(names, st.Name)
			}
			return names
		}
		run := func(t *testing.T, handler func(tmpl *tasker.Template) tasker.HandlerFunc, input any) (*bundle, *tasker.Template, *tasker.Task) {
			tmpl, env := loadFixture(t, set, file)
			require.True(t, env)
			for _, st := range tmpl.Steps { // what the test environment changes
				require.Equal(t, 2, st.Retry.MaxAttempts, st.Name)
				require.Equal(t, testTimeout, st.Timeout, st.Name)
				require.Equal(t, backoffBase, st.Retry.BackoffBase, st.Name)
			}
			b := fixtureEngine(t, tmpl)
			for _, st := range tmpl.Steps {
				b.engine.Handle(st.Handler.Callable, handler(tmpl))
			}
			b.start(t)
			task := b.create(t, tmpl.Namespace, tmpl.Name, input)
			return b, tmpl, b.wait(t, task.ID)
		}

		t.Run("input 6 gives 6^16", func(t *testing.T) {
			t.Parallel()
			b, tmpl, task := run(t, powerHandler, map[string]any{"even_number": 6})
			requireTaskComplete(t, tmpl, task)
			steps := chain(t, tmpl)
			// 6 → 36 → 1,296 → 1,679,616 → 2,821,109,907,456
			for i, k := range []int64{2, 4, 8, 16} {
				requireBigResult(t, task, steps[i], k)
				s, _ := task.Step(steps[i])
				require.Equal(t, 1, s.Attempts)
			}
			var final int64
			require.NoError(t, task.Result(steps[3], &final))
			require.Equal(t, int64(2821109907456), final)
			requireLegalTransitions(t, b.engine, task.ID)
		})

		// One transient failure is retried after the template's own backoff; the test
		// environment's max_attempts: 2 leaves room for exactly one.
		t.Run("one transient failure is retried", func(t *testing.T) {
			t.Parallel()
			var failed atomic.Bool
			var third atomic.Value
			flaky := func(tmpl *tasker.Template) tasker.HandlerFunc {
				third.Store(tmpl.Steps[2].Name)
				h := powerHandler(tmpl)
				return func(ctx context.Context, s *tasker.Step) (any, error) {
					if s.Name == third.Load() && failed.CompareAndSwap(false, true) {
						return nil, errors.New("transient: connection reset")
					}
					return h(ctx, s)
				}
			}
			b, tmpl, task := run(t, flaky, map[string]any{"even_number": 6})
			requireTaskComplete(t, tmpl, task)
			steps := chain(t, tmpl)
			requireBigResult(t, task, steps[3], 16)
			s, _ := task.Step(steps[2])
			require.Equal(t, 2, s.Attempts)
			trs := requireLegalTransitions(t, b.engine, task.ID)
			require.Equal(t, 1, stepTransitionsTo(trs, steps[2], tasker.StepWaitingForRetry))
		})

		t.Run("a step failing twice exhausts the test environment's 2 attempts", func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int32
			var second atomic.Value
			failing := func(tmpl *tasker.Template) tasker.HandlerFunc {
				second.Store(tmpl.Steps[1].Name)
				h := powerHandler(tmpl)
				return func(ctx context.Context, s *tasker.Step) (any, error) {
					if s.Name == second.Load() {
						calls.Add(1)
						return nil, errors.New("transient: upstream unavailable")
					}
					return h(ctx, s)
				}
			}
			b, tmpl, task := run(t, failing, map[string]any{"even_number": 6})
			steps := chain(t, tmpl)
			require.Equal(t, tasker.TaskBlockedByFailures, task.State, describeSteps(task))
			s, _ := task.Step(steps[1])
			require.Equal(t, tasker.StepError, s.State)
			require.Equal(t, 2, s.Attempts)
			require.Equal(t, 2, s.MaxAttempts)
			require.NotNil(t, s.LastError)
			require.Equal(t, "exhausted", s.LastError.Kind)
			require.Equal(t, 2, s.LastError.Attempt)
			require.EqualValues(t, 2, calls.Load())
			for _, name := range steps[2:] {
				d, _ := task.Step(name)
				require.Equal(t, tasker.StepPending, d.State, "%s never runs", name)
			}
			requireLegalTransitions(t, b.engine, task.ID)
		})

		// Like Tasker Core's handler, an odd number is a validation error: not retried.
		t.Run("odd input is refused without retry", func(t *testing.T) {
			t.Parallel()
			b, tmpl, task := run(t, powerHandler, map[string]any{"even_number": 7})
			require.Equal(t, tasker.TaskBlockedByFailures, task.State, describeSteps(task))
			s, _ := task.Step(chain(t, tmpl)[0])
			require.Equal(t, tasker.StepError, s.State)
			require.Equal(t, 1, s.Attempts)
			require.Equal(t, "permanent", s.LastError.Kind)
			require.Contains(t, s.LastError.Message, "must be even")
			requireLegalTransitions(t, b.engine, task.ID)
		})

		t.Run("input outside the schema is rejected", func(t *testing.T) {
			t.Parallel()
			tmpl, _ := loadFixture(t, set, file)
			b := fixtureEngine(t, tmpl)
			_, err := b.engine.CreateTask(context.Background(), tasker.TaskRequest{
				Namespace: tmpl.Namespace, Name: tmpl.Name, Context: map[string]any{"even_number": 102}})
			require.ErrorIs(t, err, tasker.ErrInvalidInput)
			tasks, err := b.engine.ListTasks(context.Background(), tasker.ListOptions{})
			require.NoError(t, err)
			require.Empty(t, tasks)
		})
	})
}

func TestFixtureParallelPatterns(t *testing.T) {
	t.Parallel()
	type pattern struct {
		file string
		// exponents: step → k such that its result is 6^k with input 6.
		exponents map[string]int64
		// maxAttempts under the test environment (it changes only timeouts for the last two).
		maxAttempts int
	}
	core := []pattern{
		// start 36; branches 1,296 each; end (1,296 × 1,296)² = 6^16 = 2,821,109,907,456.
		{"diamond_pattern.yaml", map[string]int64{
			"diamond_start": 2, "diamond_branch_b": 4, "diamond_branch_c": 4, "diamond_end": 16}, 2},
		// root 36; branches 1,296; leaves 1,679,616; final (d × e × f × g)² = (6^32)² = 6^64.
		// (The header's "input^32" is the product before the final squaring; the step's own
		// convergence_pattern ((leaf_d × leaf_e × leaf_f × leaf_g)²) gives 6^64.)
		{"hierarchical_tree.yaml", map[string]int64{
			"tree_root": 2, "tree_branch_left": 4, "tree_branch_right": 4,
			"tree_leaf_d": 8, "tree_leaf_e": 8, "tree_leaf_f": 8, "tree_leaf_g": 8,
			"tree_final_convergence": 64}, 3},
		// init 36; left/right 1,296; validate (1,296 × 1,296)² = 6^16; transform and analyze
		// 1,679,616; finalize (6^16 × 6^8 × 6^8)² = 6^64, the "input^64" of the header.
		{"complex_dag.yaml", map[string]int64{
			"dag_init": 2, "dag_process_left": 4, "dag_process_right": 4, "dag_validate": 16,
			"dag_transform": 8, "dag_analyze": 8, "dag_finalize": 64}, 3},
	}
	own := []pattern{
		// root 6^2; branches 6^4; join (6^4 × 6^4)² = 6^16.
		{"split_join.yaml", map[string]int64{"split_root": 2, "split_left": 4, "split_right": 4, "split_join": 16}, 2},
		// trunk 6^2; boughs 6^4; twigs 6^8; canopy (6^8)^4 squared = 6^64.
		{"fan_tree.yaml", map[string]int64{
			"trunk": 2, "bough_north": 4, "bough_south": 4,
			"twig_north_east": 8, "twig_north_west": 8, "twig_south_east": 8, "twig_south_west": 8,
			"canopy": 64}, 3},
		// source 6^2; alpha, beta 6^4; meet (6^4 × 6^4)² = 6^16; after_meet 6^32;
		// skip (6^2 × 6^16)² = 6^36; sink (6^32 × 6^36 × 6^4)² = 6^144.
		{"mixed_graph.yaml", map[string]int64{
			"mix_source": 2, "mix_alpha": 4, "mix_beta": 4, "mix_meet": 16, "mix_after_meet": 32,
			"mix_skip": 36, "mix_sink": 144}, 3},
	}
	corefixture.Each(t, func(t *testing.T, set corefixture.Set) {
		for _, c := range corefixture.Pick(set, core, own) {
			t.Run(c.file, func(t *testing.T) {
				t.Parallel()
				tmpl, env := loadFixture(t, set, c.file)
				require.True(t, env)
				require.Len(t, tmpl.Steps, len(c.exponents))
				b := fixtureEngine(t, tmpl)
				for _, st := range tmpl.Steps {
					require.Equal(t, c.maxAttempts, st.Retry.MaxAttempts, st.Name)
					b.engine.Handle(st.Handler.Callable, powerHandler(tmpl))
				}
				b.start(t)
				task := b.create(t, tmpl.Namespace, tmpl.Name, map[string]any{"even_number": 6})
				task = b.wait(t, task.ID)
				requireTaskComplete(t, tmpl, task)
				for step, k := range c.exponents {
					requireBigResult(t, task, step, k)
					s, _ := task.Step(step)
					require.Equal(t, 1, s.Attempts, step)
				}
				requireLegalTransitions(t, b.engine, task.ID)
			})
		}
	})
	t.Run("6^64 is exact", func(t *testing.T) {
		t.Parallel()
		require.Equal(t, "63340286662973277706162286946811886609896461828096", pow6(64).String())
		require.Equal(t, "2821109907456", pow6(16).String())
	})
}

// ---------------------------------------------------------------------------------------------
// Retry fixtures: FailNTimesHandler fails attempts 1..fail_count (1-based, as in Tasker Core's
// error_injection/fail_n_times_handler.rs) with a retryable error, then succeeds.

type attemptLog struct {
	mu       sync.Mutex
	attempts []int
	at       []time.Time
}

func (l *attemptLog) add(attempt int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.attempts = append(l.attempts, attempt)
	l.at = append(l.at, time.Now())
}

func (l *attemptLog) snapshot() ([]int, []time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.attempts), slices.Clone(l.at)
}

func failNTimesHandler(log *attemptLog) tasker.HandlerFunc {
	return func(_ context.Context, s *tasker.Step) (any, error) {
		log.add(s.Attempt)
		failCount := 1
		if v, ok := s.Config()["fail_count"].(float64); ok {
			failCount = int(v)
		}
		if s.Attempt <= failCount {
			return nil, fmt.Errorf("simulated failure on attempt %d (will succeed after %d failures)", s.Attempt, failCount)
		}
		return map[string]any{
			"attempts_before_success": s.Attempt,
			"fail_count_configured":   failCount,
			"message":                 "Succeeded after simulated failures",
		}, nil
	}
}

// requireBackoffGaps checks that attempt i+1 started at least the exponential backoff after
// attempt i, less the jitter.
func requireBackoffGaps(t *testing.T, at []time.Time, base, maxWait time.Duration) {
	t.Helper()
	for i := 1; i < len(at); i++ {
		wait := min(base<<(i-1), maxWait)
		floor := time.Duration(float64(wait) * (1 - tasker.BackoffJitter))
		require.GreaterOrEqual(t, at[i].Sub(at[i-1]), floor, "gap before attempt %d", i+1)
	}
}

func TestFixtureRetry(t *testing.T) {
	t.Parallel()
	corefixture.Each(t, func(t *testing.T, set corefixture.Set) {
		callable := corefixture.Pick(set, "FailNTimesHandler", "corelayout.FailFirstAttempts")

		t.Run("a step recovers after two failures", func(t *testing.T) {
			t.Parallel()
			tmpl, env := loadFixture(t, set, corefixture.Pick(set, "retry_mechanics_test.yaml", "retry_recovers.yaml"))
			require.True(t, env)
			st := tmpl.Steps[0]
			require.Equal(t, callable, st.Handler.Callable)
			maxAttempts := corefixture.Pick(set, 5, 4)
			require.Equal(t, corefixture.Pick(set,
				tasker.RetryPolicy{MaxAttempts: 5, Backoff: tasker.BackoffExponential, BackoffBase: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond},
				tasker.RetryPolicy{MaxAttempts: 4, Backoff: tasker.BackoffExponential, BackoffBase: 40 * time.Millisecond, MaxBackoff: 150 * time.Millisecond}),
				st.Retry)
			require.Equal(t, corefixture.Pick(set, 10*time.Second, 9*time.Second), st.Timeout, "the test environment's timeout")

			b := fixtureEngine(t, tmpl)
			var log attemptLog
			b.engine.Handle(callable, failNTimesHandler(&log))
			b.start(t)
			task := b.create(t, tmpl.Namespace, tmpl.Name, map[string]any{"test_id": "retry-mechanics"})
			task = b.wait(t, task.ID)

			// The step fails attempts 1 and 2 (fail_count: 2) and succeeds on the 3rd.
			requireTaskComplete(t, tmpl, task)
			s, _ := task.Step(st.Name)
			require.Equal(t, 3, s.Attempts)
			require.Equal(t, maxAttempts, s.MaxAttempts)
			var res struct {
				AttemptsBeforeSuccess int `json:"attempts_before_success"`
				FailCountConfigured   int `json:"fail_count_configured"`
			}
			require.NoError(t, json.Unmarshal(s.Result, &res))
			require.Equal(t, 3, res.AttemptsBeforeSuccess)
			require.Equal(t, 2, res.FailCountConfigured)
			// The last failure stays on record: a retryable one, of attempt 2.
			require.NotNil(t, s.LastError)
			require.Equal(t, "retryable", s.LastError.Kind)
			require.Equal(t, 2, s.LastError.Attempt)
			require.Contains(t, s.LastError.Message, "simulated failure on attempt 2")

			attempts, at := log.snapshot()
			require.Equal(t, []int{1, 2, 3}, attempts, "the handler really ran again")
			requireBackoffGaps(t, at, st.Retry.BackoffBase, st.Retry.MaxBackoff)
			trs := requireLegalTransitions(t, b.engine, task.ID)
			require.Equal(t, 2, stepTransitionsTo(trs, st.Name, tasker.StepWaitingForRetry))
			require.Equal(t, 3, stepTransitionsTo(trs, st.Name, tasker.StepInProgress))
		})

		t.Run("a step runs out of attempts", func(t *testing.T) {
			t.Parallel()
			tmpl, env := loadFixture(t, set, corefixture.Pick(set, "retry_exhaustion_test.yaml", "retry_runs_out.yaml"))
			require.True(t, env)
			st := tmpl.Steps[0]
			require.Equal(t, callable, st.Handler.Callable)
			limit := corefixture.Pick(set, 3, 4)
			require.Equal(t, corefixture.Pick(set,
				tasker.RetryPolicy{MaxAttempts: 3, Backoff: tasker.BackoffExponential, BackoffBase: 50 * time.Millisecond, MaxBackoff: 100 * time.Millisecond},
				tasker.RetryPolicy{MaxAttempts: 4, Backoff: tasker.BackoffExponential, BackoffBase: 30 * time.Millisecond, MaxBackoff: 80 * time.Millisecond}),
				st.Retry)

			b := fixtureEngine(t, tmpl)
			var log attemptLog
			b.engine.Handle(callable, failNTimesHandler(&log))
			b.start(t)
			task := b.create(t, tmpl.Namespace, tmpl.Name, map[string]any{"test_id": "retry-exhaustion"})
			task = b.wait(t, task.ID)

			// The step would fail more often than its attempts allow: it ends in error, which
			// blocks the task.
			require.Equal(t, tasker.TaskBlockedByFailures, task.State, describeSteps(task))
			s, _ := task.Step(st.Name)
			require.Equal(t, tasker.StepError, s.State)
			require.Equal(t, limit, s.Attempts)
			require.Equal(t, limit, s.MaxAttempts)
			require.Empty(t, s.Result)
			require.NotNil(t, s.LastError)
			require.Equal(t, "exhausted", s.LastError.Kind)
			require.Equal(t, limit, s.LastError.Attempt)
			require.Contains(t, s.LastError.Message, fmt.Sprintf("simulated failure on attempt %d", limit))

			attempts, at := log.snapshot()
			var want []int
			for a := 1; a <= limit; a++ {
				want = append(want, a)
			}
			require.Equal(t, want, attempts)
			requireBackoffGaps(t, at, st.Retry.BackoffBase, st.Retry.MaxBackoff)
			trs := requireLegalTransitions(t, b.engine, task.ID)
			require.Equal(t, limit-1, stepTransitionsTo(trs, st.Name, tasker.StepWaitingForRetry))
			require.Equal(t, 1, stepTransitionsTo(trs, st.Name, tasker.StepError))
		})
	})
}

// ---------------------------------------------------------------------------------------------
// Boundary fixtures: one step served by TestHandlers::NoOpHandler. In Tasker Core they test the
// SQL readiness rules; here each runs with a handler that succeeds, always fails (retryable
// error), fails twice, or fails permanently, and the attempt count must match the limit.

func TestFixtureBoundaries(t *testing.T) {
	t.Parallel()
	type behaviour string
	const (
		succeeds    behaviour = "succeeds"
		alwaysFails behaviour = "always fails"
		failsTwice  behaviour = "fails twice then succeeds"
		permanent   behaviour = "fails permanently"
	)
	// The boundary templates of each set, by role.
	files := map[bool]map[string]string{
		true: {"zero": "boundary_max_attempts_zero.yaml", "one": "boundary_max_attempts_one.yaml",
			"three": "boundary_max_attempts_three.yaml", "no_retry": "boundary_non_retryable_first.yaml",
			"no_retry_limit": "boundary_non_retryable_retries.yaml"},
		false: {"zero": "attempts_limit_zero.yaml", "one": "attempts_limit_one.yaml",
			"three": "attempts_limit_three.yaml", "no_retry": "attempts_no_retry_single.yaml",
			"no_retry_limit": "attempts_no_retry_with_limit.yaml"},
	}
	cases := []struct {
		role        string // a key of files
		maxAttempts int    // effective limit after parsing
		do          behaviour
		state       tasker.TaskState
		attempts    int
		kind        string // LastError.Kind, "" for none
	}{
		// max_attempts: 0 still allows the first execution, and only that one.
		{"zero", 1, succeeds, tasker.TaskComplete, 1, ""},
		{"zero", 1, alwaysFails, tasker.TaskBlockedByFailures, 1, "exhausted"},
		// max_attempts: 1 means exactly one total attempt.
		{"one", 1, succeeds, tasker.TaskComplete, 1, ""},
		{"one", 1, alwaysFails, tasker.TaskBlockedByFailures, 1, "exhausted"},
		// max_attempts: 3 allows three attempts, then blocks.
		{"three", 3, succeeds, tasker.TaskComplete, 1, ""},
		{"three", 3, failsTwice, tasker.TaskComplete, 3, "retryable"},
		{"three", 3, alwaysFails, tasker.TaskBlockedByFailures, 3, "exhausted"},
		// retryable: false still allows the first execution.
		{"no_retry", 1, succeeds, tasker.TaskComplete, 1, ""},
		{"no_retry", 1, alwaysFails, tasker.TaskBlockedByFailures, 1, "exhausted"},
		// retryable: false with max_attempts: 3 blocks every retry after the first attempt.
		{"no_retry_limit", 1, succeeds, tasker.TaskComplete, 1, ""},
		{"no_retry_limit", 1, alwaysFails, tasker.TaskBlockedByFailures, 1, "exhausted"},
		{"no_retry_limit", 1, permanent, tasker.TaskBlockedByFailures, 1, "permanent"},
	}
	corefixture.Each(t, func(t *testing.T, set corefixture.Set) {
		for _, c := range cases {
			file := files[set.Core][c.role]
			t.Run(strings.TrimSuffix(file, ".yaml")+"/"+string(c.do), func(t *testing.T) {
				t.Parallel()
				tmpl, env := loadFixture(t, set, file)
				require.False(t, env, "the boundary fixtures have no environments")
				require.Len(t, tmpl.Steps, 1)
				st := tmpl.Steps[0]
				require.Equal(t, corefixture.Pick(set, "TestHandlers::NoOpHandler", "corelayout.Lone"), st.Handler.Callable)
				require.Equal(t, c.maxAttempts, st.Retry.MaxAttempts)

				b := fixtureEngine(t, tmpl)
				var calls atomic.Int32
				b.engine.HandleFunc(st.Handler.Callable, func(_ context.Context, s *tasker.Step) (any, error) {
					calls.Add(1)
					switch c.do {
					case alwaysFails:
						return nil, fmt.Errorf("no-op failure on attempt %d", s.Attempt)
					case failsTwice:
						if s.Attempt <= 2 {
							return nil, fmt.Errorf("no-op failure on attempt %d", s.Attempt)
						}
					case permanent:
						return nil, tasker.Permanent(errors.New("no-op permanent failure"))
					}
					return map[string]any{"noop": true, "attempt": s.Attempt}, nil
				})
				b.start(t)
				task := b.create(t, tmpl.Namespace, tmpl.Name, nil)
				task = b.wait(t, task.ID)

				require.Equal(t, c.state, task.State, describeSteps(task))
				s, _ := task.Step(st.Name)
				require.Equal(t, c.attempts, s.Attempts)
				require.Equal(t, c.maxAttempts, s.MaxAttempts)
				require.EqualValues(t, c.attempts, calls.Load(), "handler calls")
				if c.state == tasker.TaskComplete {
					require.Equal(t, tasker.StepComplete, s.State)
					require.JSONEq(t, fmt.Sprintf(`{"noop":true,"attempt":%d}`, c.attempts), string(s.Result))
				} else {
					require.Equal(t, tasker.StepError, s.State)
				}
				if c.kind == "" {
					require.Nil(t, s.LastError)
				} else {
					require.NotNil(t, s.LastError)
					require.Equal(t, c.kind, s.LastError.Kind, s.LastError.Message)
				}
				trs := requireLegalTransitions(t, b.engine, task.ID)
				require.Equal(t, c.attempts, stepTransitionsTo(trs, st.Name, tasker.StepInProgress))
			})
		}
	})
}

// ---------------------------------------------------------------------------------------------
// Business-shaped fixtures: each step's handler checks that it sees exactly its ancestors'
// results, records its parents' tokens, and computes a small deterministic business value from
// the task context and its ancestors' values. The final steps' values prove the data flowed.

// flowResult is what every business handler returns.
type flowResult struct {
	Step string `json:"step"`
	// Token is name(parent tokens…): the final step's token encodes every edge of the DAG.
	Token   string            `json:"token"`
	Parents map[string]string `json:"parents"`
	Data    map[string]any    `json:"data,omitempty"`
}

// depFunc returns a value from an ancestor's data, or nil.
type depFunc func(step, key string) any

// flowFunc is one step's business logic.
type flowFunc func(s *tasker.Step, st *tasker.StepTemplate, in map[string]any, dep depFunc) (map[string]any, error)

func flowToken(name string, parentTokens []string) string {
	sort.Strings(parentTokens)
	return name + "(" + strings.Join(parentTokens, ",") + ")"
}

// expectedToken computes the token a step should produce from the template alone.
func expectedToken(tmpl *tasker.Template, name string) string {
	st, _ := tmpl.Step(name)
	var ps []string
	for _, p := range st.Dependencies {
		ps = append(ps, expectedToken(tmpl, p))
	}
	return flowToken(name, ps)
}

func flowHandler(tmpl *tasker.Template, steps map[string]flowFunc, calls *sync.Map) tasker.HandlerFunc {
	return func(_ context.Context, s *tasker.Step) (any, error) {
		n, _ := calls.LoadOrStore(s.Name, new(atomic.Int32))
		n.(*atomic.Int32).Add(1)
		st, ok := tmpl.Step(s.Name)
		if !ok {
			return nil, permanentf("step %q is not in the template", s.Name)
		}
		want := templateAncestors(tmpl, s.Name)
		if got := s.DependencyNames(); !slices.Equal(got, want) {
			return nil, permanentf("step %s sees results of %v, want its ancestors %v", s.Name, got, want)
		}
		results := map[string]flowResult{}
		for _, a := range want {
			var r flowResult
			if err := s.DependencyResult(a, &r); err != nil {
				return nil, tasker.Permanent(err)
			}
			if r.Step != a {
				return nil, permanentf("result of %s claims to be from %s", a, r.Step)
			}
			results[a] = r
		}
		parents := map[string]string{}
		var tokens []string
		for _, p := range st.Dependencies {
			parents[p] = results[p].Token
			tokens = append(tokens, results[p].Token)
		}
		var in map[string]any
		if err := s.Input(&in); err != nil {
			return nil, tasker.Permanent(err)
		}
		fn := steps[s.Name]
		if fn == nil {
			return nil, permanentf("the test has no business logic for step %s", s.Name)
		}
		data, err := fn(s, st, in, func(step, key string) any { return results[step].Data[key] })
		if err != nil {
			return nil, err
		}
		return flowResult{Step: s.Name, Token: flowToken(s.Name, tokens), Parents: parents, Data: data}, nil
	}
}

// field walks nested maps of a decoded JSON value.
func field(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func num(v any) float64 {
	f, _ := v.(float64)
	return f
}

type flowSpec struct {
	file  string
	input map[string]any
	steps map[string]flowFunc
	// want holds the expected data (JSON) of some steps.
	want map[string]string
	// opts configure the engine.
	opts []setupOpt
	// rawTemplate registers the template as parsed, without its test environment (for a test
	// of Config.Environment).
	rawTemplate bool
}

// runFlow runs a business fixture to completion and checks the flow of results.
func runFlow(t *testing.T, setup setupFunc, set corefixture.Set, spec flowSpec) (*bundle, *tasker.Template, *tasker.Task, *sync.Map) {
	t.Helper()
	tmpl, _ := loadFixture(t, set, spec.file)
	registered := tmpl
	if spec.rawTemplate {
		var err error
		registered, err = tasker.ParseTemplateFile(set.Path(spec.file))
		require.NoError(t, err)
	}
	for _, st := range tmpl.Steps {
		require.Equal(t, tasker.StepStandard, st.Type, "%s: %s", spec.file, st.Name)
		require.Contains(t, spec.steps, st.Name, "no business logic for %s", st.Name)
	}
	b := fixtureEngineOn(t, setup, registered, spec.opts...)
	calls := &sync.Map{}
	h := flowHandler(tmpl, spec.steps, calls)
	for _, st := range tmpl.Steps {
		b.engine.Handle(st.Handler.Callable, h)
	}
	b.start(t)
	task := b.create(t, tmpl.Namespace, tmpl.Name, spec.input)
	task = b.wait(t, task.ID)
	return b, tmpl, task, calls
}

func requireFlow(t *testing.T, spec flowSpec, tmpl *tasker.Template, task *tasker.Task, calls *sync.Map) {
	t.Helper()
	requireTaskComplete(t, tmpl, task)
	for _, st := range tmpl.Steps {
		s, _ := task.Step(st.Name)
		require.Equal(t, 1, s.Attempts, st.Name)
		require.Nil(t, s.LastError, st.Name)
		n, ok := calls.Load(st.Name)
		require.True(t, ok, "handler of %s never ran", st.Name)
		require.EqualValues(t, 1, n.(*atomic.Int32).Load(), "handler calls of %s", st.Name)
		var r flowResult
		require.NoError(t, json.Unmarshal(s.Result, &r), st.Name)
		require.Equal(t, st.Name, r.Step)
		require.Len(t, r.Parents, len(st.Dependencies), st.Name)
		for _, p := range st.Dependencies {
			require.Equal(t, expectedToken(tmpl, p), r.Parents[p], "%s saw %s's result", st.Name, p)
		}
		require.Equal(t, expectedToken(tmpl, st.Name), r.Token, st.Name)
	}
	for step, want := range spec.want {
		s, ok := task.Step(step)
		require.True(t, ok, step)
		var r struct {
			Data json.RawMessage `json:"data"`
		}
		require.NoError(t, json.Unmarshal(s.Result, &r))
		require.JSONEq(t, want, string(r.Data), "data of %s", step)
	}
}

func ecommerceSpec() flowSpec {
	prices := map[float64]float64{101: 1999, 205: 2499} // cents
	return flowSpec{
		file: "ecommerce_order_processing_rs.yaml",
		input: map[string]any{
			"cart_items":    []any{map[string]any{"product_id": 101, "quantity": 2}, map[string]any{"product_id": 205, "quantity": 1}},
			"customer_info": map[string]any{"email": "ada@example.com", "name": "Ada Lovelace"},
			"payment_info":  map[string]any{"method": "credit_card", "token": "tok_visa", "amount": 64.97},
		},
		steps: map[string]flowFunc{
			"validate_cart": func(_ *tasker.Step, _ *tasker.StepTemplate, in map[string]any, _ depFunc) (map[string]any, error) {
				var subtotal, units float64
				items, _ := in["cart_items"].([]any)
				for _, it := range items {
					p, ok := prices[num(field(it, "product_id"))]
					if !ok {
						return nil, permanentf("unknown product %v", field(it, "product_id"))
					}
					subtotal += p * num(field(it, "quantity"))
					units += num(field(it, "quantity"))
				}
				if math.Round(num(field(in, "payment_info", "amount"))*100) != subtotal {
					return nil, permanentf("payment amount does not match the cart's %v cents", subtotal)
				}
				return map[string]any{"subtotal_cents": subtotal, "units": units}, nil
			},
			"process_payment": func(_ *tasker.Step, _ *tasker.StepTemplate, in map[string]any, dep depFunc) (map[string]any, error) {
				return map[string]any{"payment_id": "pay_" + field(in, "payment_info", "token").(string),
					"charged_cents": dep("validate_cart", "subtotal_cents")}, nil
			},
			"update_inventory": func(_ *tasker.Step, _ *tasker.StepTemplate, _ map[string]any, dep depFunc) (map[string]any, error) {
				return map[string]any{"reserved_units": dep("validate_cart", "units"), "for_payment": dep("process_payment", "payment_id")}, nil
			},
			"create_order": func(_ *tasker.Step, _ *tasker.StepTemplate, _ map[string]any, dep depFunc) (map[string]any, error) {
				return map[string]any{
					"order_number": fmt.Sprintf("ORD-%v-%v", dep("process_payment", "charged_cents"), dep("update_inventory", "reserved_units")),
					"payment_id":   dep("update_inventory", "for_payment"),
				}, nil
			},
			"send_confirmation": func(_ *tasker.Step, _ *tasker.StepTemplate, in map[string]any, dep depFunc) (map[string]any, error) {
				return map[string]any{"to": field(in, "customer_info", "email"), "order_number": dep("create_order", "order_number"),
					"payment_id": dep("create_order", "payment_id")}, nil
			},
		},
		want: map[string]string{
			"validate_cart":     `{"subtotal_cents":6497,"units":3}`,
			"send_confirmation": `{"to":"ada@example.com","order_number":"ORD-6497-3","payment_id":"pay_tok_visa"}`,
		},
	}
}

func customerSuccessSpec() flowSpec {
	return flowSpec{
		file: "customer_success_process_refund_rs.yaml",
		input: map[string]any{"ticket_id": "TICKET-42", "customer_id": "cust_7", "refund_amount": 2500,
			"customer_email": "cs@example.com", "refund_reason": "damaged", "requires_approval": true, "payment_id": "pay_abc123"},
		steps: map[string]flowFunc{
			"validate_refund_request": func(_ *tasker.Step, _ *tasker.StepTemplate, in map[string]any, _ depFunc) (map[string]any, error) {
				return map[string]any{"ticket_id": in["ticket_id"], "amount": in["refund_amount"]}, nil
			},
			"check_refund_policy": func(_ *tasker.Step, _ *tasker.StepTemplate, _ map[string]any, dep depFunc) (map[string]any, error) {
				return map[string]any{"within_policy": num(dep("validate_refund_request", "amount")) <= 10000}, nil
			},
			"get_manager_approval": func(_ *tasker.Step, _ *tasker.StepTemplate, in map[string]any, dep depFunc) (map[string]any, error) {
				if dep("check_refund_policy", "within_policy") != true {
					return nil, permanentf("refund is outside the policy")
				}
				return map[string]any{"approved": true, "approver": "mgr_1", "required": in["requires_approval"]}, nil
			},
			"execute_refund_workflow": func(_ *tasker.Step, _ *tasker.StepTemplate, in map[string]any, dep depFunc) (map[string]any, error) {
				if dep("get_manager_approval", "approved") != true {
					return nil, permanentf("refund not approved")
				}
				return map[string]any{"refund_id": fmt.Sprintf("rf_%v", dep("validate_refund_request", "ticket_id")),
					"payment_id": in["payment_id"], "amount": dep("validate_refund_request", "amount")}, nil
			},
			"update_ticket_status": func(_ *tasker.Step, _ *tasker.StepTemplate, _ map[string]any, dep depFunc) (map[string]any, error) {
				return map[string]any{"ticket_id": dep("validate_refund_request", "ticket_id"), "status": "resolved",
					"refund_id": dep("execute_refund_workflow", "refund_id"), "amount": dep("execute_refund_workflow", "amount")}, nil
			},
		},
		want: map[string]string{
			"update_ticket_status": `{"ticket_id":"TICKET-42","status":"resolved","refund_id":"rf_TICKET-42","amount":2500}`,
		},
	}
}

func paymentsSpec() flowSpec {
	return flowSpec{
		file: "payments_process_refund_rs.yaml",
		input: map[string]any{"payment_id": "pay_abc123", "refund_amount": 1500, "refund_reason": "customer_request",
			"customer_email": "pay@example.com"},
		steps: map[string]flowFunc{
			"validate_payment_eligibility": func(_ *tasker.Step, _ *tasker.StepTemplate, in map[string]any, _ depFunc) (map[string]any, error) {
				return map[string]any{"eligible": true, "payment_id": in["payment_id"], "amount": in["refund_amount"]}, nil
			},
			"process_gateway_refund": func(_ *tasker.Step, _ *tasker.StepTemplate, _ map[string]any, dep depFunc) (map[string]any, error) {
				if dep("validate_payment_eligibility", "eligible") != true {
					return nil, permanentf("payment not eligible")
				}
				return map[string]any{"gateway_refund_id": fmt.Sprintf("re_%v", dep("validate_payment_eligibility", "payment_id")),
					"amount": dep("validate_payment_eligibility", "amount")}, nil
			},
			"update_payment_records": func(_ *tasker.Step, _ *tasker.StepTemplate, _ map[string]any, dep depFunc) (map[string]any, error) {
				return map[string]any{"record_id": fmt.Sprintf("rec_%v", dep("process_gateway_refund", "gateway_refund_id")), "status": "refunded"}, nil
			},
			"notify_customer": func(_ *tasker.Step, _ *tasker.StepTemplate, in map[string]any, dep depFunc) (map[string]any, error) {
				return map[string]any{"to": in["customer_email"], "refund_id": dep("process_gateway_refund", "gateway_refund_id"),
					"record_id": dep("update_payment_records", "record_id"), "amount": dep("process_gateway_refund", "amount")}, nil
			},
		},
		want: map[string]string{
			"notify_customer": `{"to":"pay@example.com","refund_id":"re_pay_abc123","record_id":"rec_re_pay_abc123","amount":1500}`,
		},
	}
}

func dataPipelineSpec() flowSpec {
	sum := func(v any) float64 {
		var s float64
		xs, _ := v.([]any)
		for _, x := range xs {
			s += num(x)
		}
		return s
	}
	return flowSpec{
		file:  "data_pipeline_analytics_pipeline_rs.yaml",
		input: map[string]any{"pipeline_id": "pl-1", "date_range": map[string]any{"start_date": "2026-01-01", "end_date": "2026-01-31"}},
		steps: map[string]flowFunc{
			"extract_sales_data": func(_ *tasker.Step, _ *tasker.StepTemplate, _ map[string]any, _ depFunc) (map[string]any, error) {
				return map[string]any{"amounts": []int{100, 200, 300}}, nil
			},
			"extract_inventory_data": func(_ *tasker.Step, _ *tasker.StepTemplate, _ map[string]any, _ depFunc) (map[string]any, error) {
				return map[string]any{"quantities": []int{5, 0, 12}}, nil
			},
			"extract_customer_data": func(_ *tasker.Step, _ *tasker.StepTemplate, _ map[string]any, _ depFunc) (map[string]any, error) {
				return map[string]any{"tiers": []string{"gold", "silver", "gold"}}, nil
			},
			"transform_sales": func(_ *tasker.Step, _ *tasker.StepTemplate, _ map[string]any, dep depFunc) (map[string]any, error) {
				return map[string]any{"revenue": sum(dep("extract_sales_data", "amounts"))}, nil
			},
			"transform_inventory": func(_ *tasker.Step, _ *tasker.StepTemplate, _ map[string]any, dep depFunc) (map[string]any, error) {
				qs, _ := dep("extract_inventory_data", "quantities").([]any)
				alerts := 0
				for _, q := range qs {
					if num(q) == 0 {
						alerts++
					}
				}
				return map[string]any{"units": sum(qs), "reorder_alerts": alerts}, nil
			},
			"transform_customers": func(_ *tasker.Step, _ *tasker.StepTemplate, _ map[string]any, dep depFunc) (map[string]any, error) {
				ts, _ := dep("extract_customer_data", "tiers").([]any)
				gold := 0
				for _, x := range ts {
					if x == "gold" {
						gold++
					}
				}
				return map[string]any{"customers": len(ts), "gold": gold}, nil
			},
			"aggregate_metrics": func(_ *tasker.Step, _ *tasker.StepTemplate, in map[string]any, dep depFunc) (map[string]any, error) {
				return map[string]any{"pipeline_id": in["pipeline_id"], "revenue": dep("transform_sales", "revenue"),
					"units": dep("transform_inventory", "units"), "reorder_alerts": dep("transform_inventory", "reorder_alerts"),
					"customers": dep("transform_customers", "customers"), "gold": dep("transform_customers", "gold")}, nil
			},
			"generate_insights": func(_ *tasker.Step, _ *tasker.StepTemplate, _ map[string]any, dep depFunc) (map[string]any, error) {
				customers := num(dep("aggregate_metrics", "customers"))
				if customers == 0 {
					return nil, permanentf("no customers aggregated")
				}
				return map[string]any{"pipeline_id": dep("aggregate_metrics", "pipeline_id"),
					"revenue_per_customer": num(dep("aggregate_metrics", "revenue")) / customers,
					"needs_reorder":        num(dep("aggregate_metrics", "reorder_alerts")) > 0}, nil
			},
		},
		want: map[string]string{
			"aggregate_metrics": `{"pipeline_id":"pl-1","revenue":600,"units":17,"reorder_alerts":1,"customers":3,"gold":2}`,
			"generate_insights": `{"pipeline_id":"pl-1","revenue_per_customer":200,"needs_reorder":true}`,
		},
	}
}

func microservicesSpec() flowSpec {
	return flowSpec{
		file:  "microservices_user_registration_rs.yaml",
		input: map[string]any{"user_info": map[string]any{"email": "grace@example.com", "name": "Grace Hopper", "plan": "pro"}},
		steps: map[string]flowFunc{
			"create_user_account": func(_ *tasker.Step, _ *tasker.StepTemplate, in map[string]any, _ depFunc) (map[string]any, error) {
				return map[string]any{"user_id": fmt.Sprintf("usr_%v", field(in, "user_info", "email")), "plan": field(in, "user_info", "plan")}, nil
			},
			"setup_billing_profile": func(_ *tasker.Step, _ *tasker.StepTemplate, _ map[string]any, dep depFunc) (map[string]any, error) {
				price := map[any]int{"free": 0, "pro": 2900, "enterprise": 29900}[dep("create_user_account", "plan")]
				return map[string]any{"billing_id": fmt.Sprintf("bill_%v", dep("create_user_account", "user_id")), "monthly_cents": price}, nil
			},
			"initialize_preferences": func(_ *tasker.Step, _ *tasker.StepTemplate, _ map[string]any, dep depFunc) (map[string]any, error) {
				return map[string]any{"prefs_id": fmt.Sprintf("pref_%v", dep("create_user_account", "user_id"))}, nil
			},
			"send_welcome_sequence": func(_ *tasker.Step, _ *tasker.StepTemplate, in map[string]any, dep depFunc) (map[string]any, error) {
				return map[string]any{"to": field(in, "user_info", "email"), "billing_id": dep("setup_billing_profile", "billing_id"),
					"prefs_id": dep("initialize_preferences", "prefs_id"), "monthly_cents": dep("setup_billing_profile", "monthly_cents")}, nil
			},
			"update_user_status": func(_ *tasker.Step, _ *tasker.StepTemplate, _ map[string]any, dep depFunc) (map[string]any, error) {
				if dep("send_welcome_sequence", "billing_id") == nil || dep("send_welcome_sequence", "prefs_id") == nil {
					return nil, permanentf("welcome sequence incomplete")
				}
				return map[string]any{"user_id": dep("create_user_account", "user_id"), "status": "active"}, nil
			},
		},
		want: map[string]string{
			"send_welcome_sequence": `{"to":"grace@example.com","billing_id":"bill_usr_grace@example.com","prefs_id":"pref_usr_grace@example.com","monthly_cents":2900}`,
			"update_user_status":    `{"user_id":"usr_grace@example.com","status":"active"}`,
		},
	}
}

// businessWorkflowSpec registers the template without its environment and sets
// Config.Environment = "test": the engine must merge the environment's mock flags into each
// handler's initialization, keeping the fixture's own keys.
func businessWorkflowSpec() flowSpec {
	needConfig := func(st *tasker.StepTemplate, s *tasker.Step, flag, original string) error {
		cfg := s.Config()
		if cfg[flag] != true || cfg[original] == nil {
			return permanentf("step %s: initialization %v lacks the test environment's %s or the fixture's %s", st.Name, cfg, flag, original)
		}
		return nil
	}
	return flowSpec{
		file:        "business_workflow.yaml",
		rawTemplate: true,
		opts:        []setupOpt{func(c *tasker.Config) { c.Environment = "test" }},
		input: map[string]any{
			"customer": map[string]any{"id": 1, "name": "Ada Lovelace", "email": "ada@example.com"},
			"items":    []any{map[string]any{"sku": "SKU-1", "quantity": 2, "price": 10.5}, map[string]any{"sku": "SKU-2", "quantity": 1, "price": 4}},
			"payment":  map[string]any{"method": "credit_card", "token": "tok_123"},
			"shipping": map[string]any{"method": "express", "address": map[string]any{"city": "London"}},
		},
		steps: map[string]flowFunc{
			"validate_order": func(s *tasker.Step, st *tasker.StepTemplate, in map[string]any, _ depFunc) (map[string]any, error) {
				if err := needConfig(st, s, "fast_validation", "validation_rules"); err != nil {
					return nil, err
				}
				var total, units float64
				items, _ := in["items"].([]any)
				for _, it := range items {
					total += num(field(it, "price")) * num(field(it, "quantity"))
					units += num(field(it, "quantity"))
				}
				return map[string]any{"customer_id": field(in, "customer", "id"), "total": total, "units": units}, nil
			},
			"reserve_inventory": func(s *tasker.Step, st *tasker.StepTemplate, _ map[string]any, dep depFunc) (map[string]any, error) {
				if err := needConfig(st, s, "instant_reservations", "inventory_rules"); err != nil {
					return nil, err
				}
				return map[string]any{"reservation_id": fmt.Sprintf("res-%v", dep("validate_order", "units"))}, nil
			},
			"process_payment": func(s *tasker.Step, st *tasker.StepTemplate, in map[string]any, dep depFunc) (map[string]any, error) {
				if err := needConfig(st, s, "always_approve", "payment_processing"); err != nil {
					return nil, err
				}
				return map[string]any{"payment_id": fmt.Sprintf("pay_%v", field(in, "payment", "token")),
					"amount": dep("validate_order", "total"), "reservation_id": dep("reserve_inventory", "reservation_id")}, nil
			},
			"ship_order": func(s *tasker.Step, st *tasker.StepTemplate, in map[string]any, dep depFunc) (map[string]any, error) {
				if err := needConfig(st, s, "instant_scheduling", "shipping_configuration"); err != nil {
					return nil, err
				}
				return map[string]any{
					"tracking":    fmt.Sprintf("TRK-%v-%v", field(in, "shipping", "method"), dep("reserve_inventory", "reservation_id")),
					"amount_paid": dep("process_payment", "amount"), "payment_id": dep("process_payment", "payment_id"),
					"customer_id": dep("validate_order", "customer_id"),
				}, nil
			},
		},
		want: map[string]string{
			"ship_order": `{"tracking":"TRK-express-res-3","amount_paid":25,"payment_id":"pay_tok_123","customer_id":1}`,
		},
	}
}

func domainEventsSpec(simulateFailure bool) flowSpec {
	return flowSpec{
		file: "domain_event_publishing.yaml",
		input: map[string]any{"order_id": "0b6f0c84-2a4e-4c55-9d7a-6f1f3c1d2e3f", "customer_id": "cust-1", "amount": 99.5,
			"simulate_failure": simulateFailure},
		steps: map[string]flowFunc{
			"domain_events_validate_order": func(_ *tasker.Step, _ *tasker.StepTemplate, in map[string]any, _ depFunc) (map[string]any, error) {
				return map[string]any{"order_id": in["order_id"], "validation_checks": []string{"order_id", "customer_id", "amount"}}, nil
			},
			"domain_events_process_payment": func(_ *tasker.Step, _ *tasker.StepTemplate, in map[string]any, dep depFunc) (map[string]any, error) {
				if in["simulate_failure"] == true {
					return nil, errors.New("payment declined (simulated failure)")
				}
				return map[string]any{"transaction_id": fmt.Sprintf("txn_%v", dep("domain_events_validate_order", "order_id")),
					"amount": in["amount"], "payment_method": "mock"}, nil
			},
			"domain_events_update_inventory": func(_ *tasker.Step, _ *tasker.StepTemplate, in map[string]any, dep depFunc) (map[string]any, error) {
				return map[string]any{"order_id": in["order_id"], "success": dep("domain_events_process_payment", "transaction_id") != nil}, nil
			},
			"domain_events_send_notification": func(_ *tasker.Step, _ *tasker.StepTemplate, in map[string]any, dep depFunc) (map[string]any, error) {
				return map[string]any{"notification_id": fmt.Sprintf("ntf_%v", dep("domain_events_process_payment", "transaction_id")),
					"channel": "email", "recipient": in["customer_id"], "inventory_ok": dep("domain_events_update_inventory", "success")}, nil
			},
		},
		want: map[string]string{
			"domain_events_send_notification": `{"notification_id":"ntf_txn_0b6f0c84-2a4e-4c55-9d7a-6f1f3c1d2e3f","channel":"email","recipient":"cust-1","inventory_ok":true}`,
		},
	}
}

// stepMethod asks the engine which handler.method a step's handler is to run, through a
// `Method() string` (or `HandlerMethod() string`) accessor on *tasker.Step; ok is false when the
// engine offers none.
func stepMethod(s *tasker.Step) (string, bool) {
	for _, name := range []string{"Method", "HandlerMethod"} {
		m := reflect.ValueOf(s).MethodByName(name)
		if m.IsValid() && m.Type().NumIn() == 0 && m.Type().NumOut() == 1 && m.Type().Out(0).Kind() == reflect.String {
			return m.Call(nil)[0].String(), true
		}
	}
	return "", false
}

// methodDispatchSpec serves the four steps with one handler (resolver_tests_multi_method) that
// dispatches on the step's handler.method ("" meaning Tasker Core's default, "call"). What the
// engine tells the handler is recorded in seen.
func methodDispatchSpec(seen *sync.Map) flowSpec {
	multi := func(s *tasker.Step, st *tasker.StepTemplate, in map[string]any, dep depFunc) (map[string]any, error) {
		if m, ok := stepMethod(s); ok {
			seen.Store(s.Name, m)
		}
		method := st.Handler.Method
		if method == "" {
			method = "call"
		}
		if exp := s.Config()["expected_method"]; exp != method {
			return nil, permanentf("step %s: method %q, but its initialization expects %v", s.Name, method, exp)
		}
		amount := field(in, "data", "amount")
		switch method {
		case "validate":
			return map[string]any{"method": method, "valid": amount != nil}, nil
		case "process":
			return map[string]any{"method": method, "processed": amount, "valid": dep("validate_step_rust", "valid")}, nil
		case "refund":
			return map[string]any{"method": method, "refunded": dep("process_step_rust", "processed"), "reason": field(in, "data", "reason")}, nil
		case "call":
			return map[string]any{"method": method, "refunded": dep("refund_step_rust", "refunded"), "reason": dep("refund_step_rust", "reason")}, nil
		}
		return nil, permanentf("unknown method %q", method)
	}
	return flowSpec{
		file:  "method_dispatch_rust.yaml",
		input: map[string]any{"data": map[string]any{"amount": 42.5, "reason": "duplicate charge"}},
		steps: map[string]flowFunc{"validate_step_rust": multi, "process_step_rust": multi, "refund_step_rust": multi, "default_call_step_rust": multi},
		want: map[string]string{
			"validate_step_rust":     `{"method":"validate","valid":true}`,
			"default_call_step_rust": `{"method":"call","refunded":42.5,"reason":"duplicate charge"}`,
		},
	}
}

func dlqStalenessSpec() flowSpec {
	returnInput := func(s *tasker.Step, _ *tasker.StepTemplate, in map[string]any, dep depFunc) (map[string]any, error) {
		if s.Config()["operation"] != "return_input" {
			return nil, permanentf("unexpected operation %v", s.Config()["operation"])
		}
		if s.Name == "dlq_step_2" {
			return map[string]any{"value": dep("dlq_step_1", "value")}, nil
		}
		return map[string]any{"value": in["test_input"]}, nil
	}
	return flowSpec{
		file:  "dlq_staleness_test.yaml",
		input: map[string]any{"test_input": 42},
		steps: map[string]flowFunc{"dlq_step_1": returnInput, "dlq_step_2": returnInput},
		want:  map[string]string{"dlq_step_1": `{"value":42}`, "dlq_step_2": `{"value":42}`},
	}
}

// ---------------------------------------------------------------------------------------------
// The business flows of tasker's own templates (testdata/corelayout), the counterparts of the
// flows above.

func parcelDispatchSpec() flowSpec {
	zones := map[any]string{"NZ": "oceania", "FR": "europe"}
	surcharge := map[string]float64{"oceania": 200, "europe": 80}
	return flowSpec{
		file:  "parcel_dispatch.yaml",
		input: map[string]any{"parcel": map[string]any{"grams": 1250, "country": "NZ"}},
		steps: map[string]flowFunc{
			"receive_parcel": func(_ *tasker.Step, _ *tasker.StepTemplate, in map[string]any, _ depFunc) (map[string]any, error) {
				grams, country := field(in, "parcel", "grams"), field(in, "parcel", "country")
				return map[string]any{"parcel_id": fmt.Sprintf("P-%v-%v", grams, country), "grams": grams, "country": country}, nil
			},
			"weigh_parcel": func(s *tasker.Step, _ *tasker.StepTemplate, _ map[string]any, dep depFunc) (map[string]any, error) {
				if s.Config()["scale"] != "bench_2" {
					return nil, permanentf("initialization %v names no scale", s.Config())
				}
				return map[string]any{"grams_rounded": math.Ceil(num(dep("receive_parcel", "grams"))/100) * 100}, nil
			},
			"check_address": func(_ *tasker.Step, _ *tasker.StepTemplate, _ map[string]any, dep depFunc) (map[string]any, error) {
				zone, ok := zones[dep("receive_parcel", "country")]
				if !ok {
					return nil, permanentf("no postal zone for %v", dep("receive_parcel", "country"))
				}
				return map[string]any{"zone": zone}, nil
			},
			"quote_postage": func(s *tasker.Step, _ *tasker.StepTemplate, _ map[string]any, dep depFunc) (map[string]any, error) {
				rate := num(s.Config()["cents_per_100g"])
				zone, _ := dep("check_address", "zone").(string)
				return map[string]any{"cents": num(dep("weigh_parcel", "grams_rounded"))/100*rate + surcharge[zone], "zone": zone}, nil
			},
			"print_label": func(_ *tasker.Step, _ *tasker.StepTemplate, _ map[string]any, dep depFunc) (map[string]any, error) {
				return map[string]any{"label": fmt.Sprintf("%v/%v/%v", dep("receive_parcel", "parcel_id"), dep("check_address", "zone"),
					dep("quote_postage", "cents")), "zone": dep("check_address", "zone")}, nil
			},
		},
		want: map[string]string{
			// 1,250 g rounds up to 1,300 g: 13 × 35 cents, plus oceania's 200.
			"quote_postage": `{"cents":655,"zone":"oceania"}`,
			"print_label":   `{"label":"P-1250-NZ/oceania/655","zone":"oceania"}`,
		},
	}
}

// expenseClaimSpec registers the template without its environment and sets Config.Environment =
// "test": the engine must merge the environment's dry_run flag into each handler's
// initialization, keeping the template's own keys.
func expenseClaimSpec() flowSpec {
	needConfig := func(s *tasker.Step, original string) error {
		cfg := s.Config()
		if cfg["dry_run"] != true || cfg[original] == nil {
			return permanentf("step %s: initialization %v lacks the test environment's dry_run or the template's %s", s.Name, cfg, original)
		}
		return nil
	}
	return flowSpec{
		file:        "expense_claim.yaml",
		rawTemplate: true,
		opts:        []setupOpt{func(c *tasker.Config) { c.Environment = "test" }},
		input: map[string]any{"claimant": "rangi", "lines": []any{map[string]any{"cents": 1250}, map[string]any{"cents": 4300},
			map[string]any{"cents": 61000}}},
		steps: map[string]flowFunc{
			"submit_claim": func(s *tasker.Step, _ *tasker.StepTemplate, in map[string]any, _ depFunc) (map[string]any, error) {
				if err := needConfig(s, "policy"); err != nil {
					return nil, err
				}
				limit := num(field(s.Config(), "policy", "max_line_cents"))
				var total, capped float64
				lines, _ := in["lines"].([]any)
				for _, l := range lines {
					c := num(field(l, "cents"))
					if c > limit {
						capped++
						c = limit
					}
					total += c
				}
				return map[string]any{"claimant": in["claimant"], "total_cents": total, "capped_lines": capped}, nil
			},
			"audit_claim": func(s *tasker.Step, _ *tasker.StepTemplate, _ map[string]any, dep depFunc) (map[string]any, error) {
				if err := needConfig(s, "auditor_pool"); err != nil {
					return nil, err
				}
				pool, _ := s.Config()["auditor_pool"].([]any)
				return map[string]any{"auditor": pool[int(num(dep("submit_claim", "capped_lines")))%len(pool)],
					"approved_cents": dep("submit_claim", "total_cents")}, nil
			},
			"pay_claim": func(s *tasker.Step, _ *tasker.StepTemplate, _ map[string]any, dep depFunc) (map[string]any, error) {
				if err := needConfig(s, "ledger"); err != nil {
					return nil, err
				}
				return map[string]any{"account": field(s.Config(), "ledger", "account"), "cents": dep("audit_claim", "approved_cents"),
					"payee": dep("submit_claim", "claimant"), "audited_by": dep("audit_claim", "auditor"), "dry_run": s.Config()["dry_run"]}, nil
			},
		},
		want: map[string]string{
			// 1,250 + 4,300 + 50,000 (61,000 capped at the policy's limit).
			"pay_claim": `{"account":"6100","cents":55550,"payee":"rangi","audited_by":"south","dry_run":true}`,
		},
	}
}

// signupSpec runs the sign-up flow; with failCharge the card is declined.
func signupSpec(failCharge bool) flowSpec {
	return flowSpec{
		file:  "signup_events.yaml",
		input: map[string]any{"email": "aroha@example.org", "plan": "team", "decline": failCharge},
		steps: map[string]flowFunc{
			"open_account": func(_ *tasker.Step, _ *tasker.StepTemplate, in map[string]any, _ depFunc) (map[string]any, error) {
				return map[string]any{"account_id": fmt.Sprintf("acct_%v", in["email"]), "plan": in["plan"]}, nil
			},
			"charge_fee": func(_ *tasker.Step, _ *tasker.StepTemplate, in map[string]any, dep depFunc) (map[string]any, error) {
				if in["decline"] == true {
					return nil, errors.New("card declined (simulated)")
				}
				fee := map[any]int{"solo": 900, "team": 4900}[dep("open_account", "plan")]
				return map[string]any{"charge_id": fmt.Sprintf("ch_%v", dep("open_account", "account_id")), "cents": fee}, nil
			},
			"grant_access": func(_ *tasker.Step, _ *tasker.StepTemplate, _ map[string]any, dep depFunc) (map[string]any, error) {
				return map[string]any{"seats": map[any]int{"solo": 1, "team": 5}[dep("open_account", "plan")],
					"paid_by": dep("charge_fee", "charge_id")}, nil
			},
			"email_receipt": func(_ *tasker.Step, _ *tasker.StepTemplate, in map[string]any, dep depFunc) (map[string]any, error) {
				return map[string]any{"to": in["email"], "cents": dep("charge_fee", "cents"), "seats": dep("grant_access", "seats"),
					"account_id": dep("open_account", "account_id")}, nil
			},
		},
		want: map[string]string{
			"email_receipt": `{"to":"aroha@example.org","cents":4900,"seats":5,"account_id":"acct_aroha@example.org"}`,
		},
	}
}

// handlerMethodsSpec serves the four steps with one handler (vouchers.Multi) that dispatches on
// the step's handler.method ("" meaning the default, "call"). What the engine tells the handler is
// recorded in seen.
func handlerMethodsSpec(seen *sync.Map) flowSpec {
	multi := func(s *tasker.Step, st *tasker.StepTemplate, in map[string]any, dep depFunc) (map[string]any, error) {
		if m, ok := stepMethod(s); ok {
			seen.Store(s.Name, m)
		}
		method := st.Handler.Method
		if method == "" {
			method = "call"
		}
		if exp := s.Config()["expected_method"]; exp != method {
			return nil, permanentf("step %s: method %q, but its initialization expects %v", s.Name, method, exp)
		}
		switch method {
		case "check":
			return map[string]any{"method": method, "code": in["voucher"], "valid": in["voucher"] != nil}, nil
		case "apply":
			return map[string]any{"method": method, "discount_cents": 1500, "code": dep("check_voucher", "code")}, nil
		case "undo":
			return map[string]any{"method": method, "restored_cents": dep("apply_voucher", "discount_cents")}, nil
		case "call":
			return map[string]any{"method": method, "net_cents": num(dep("apply_voucher", "discount_cents")) - num(dep("undo_voucher", "restored_cents")),
				"code": dep("check_voucher", "code")}, nil
		}
		return nil, permanentf("unknown method %q", method)
	}
	return flowSpec{
		file:  "handler_methods.yaml",
		input: map[string]any{"voucher": "WINTER15"},
		steps: map[string]flowFunc{"check_voucher": multi, "apply_voucher": multi, "undo_voucher": multi, "report_voucher": multi},
		want: map[string]string{
			"check_voucher":  `{"method":"check","code":"WINTER15","valid":true}`,
			"report_voucher": `{"method":"call","net_cents":0,"code":"WINTER15"}`,
		},
	}
}

func staleLimitsSpec() flowSpec {
	echo := func(s *tasker.Step, _ *tasker.StepTemplate, in map[string]any, dep depFunc) (map[string]any, error) {
		if s.Config()["operation"] != "return_input" {
			return nil, permanentf("unexpected operation %v", s.Config()["operation"])
		}
		if s.Name == "echo_second" {
			return map[string]any{"value": dep("echo_first", "value")}, nil
		}
		return map[string]any{"value": in["echo"]}, nil
	}
	return flowSpec{
		file:  "stale_limits.yaml",
		input: map[string]any{"echo": -7},
		steps: map[string]flowFunc{"echo_first": echo, "echo_second": echo},
		want:  map[string]string{"echo_first": `{"value":-7}`, "echo_second": `{"value":-7}`},
	}
}

// flowFailure is a business flow whose test environment allows one attempt per step, run with a
// step that fails: the task blocks at once and the steps after it never run.
type flowFailure struct {
	spec    flowSpec
	done    string   // the step before the failure, complete
	failing string   // the step that fails
	message string   // part of its error
	never   []string // the steps after it
}

func TestFixtureBusinessWorkflows(t *testing.T) {
	t.Parallel()
	corefixture.Each(t, func(t *testing.T, set corefixture.Set) {
		specs := corefixture.Pick(set, []flowSpec{
			ecommerceSpec(), customerSuccessSpec(), paymentsSpec(), dataPipelineSpec(), microservicesSpec(),
			businessWorkflowSpec(), domainEventsSpec(false), dlqStalenessSpec(),
		}, []flowSpec{parcelDispatchSpec(), expenseClaimSpec(), signupSpec(false), staleLimitsSpec()})
		eachBackend(t, func(t *testing.T, setup setupFunc) {
			for _, spec := range specs {
				t.Run(spec.file, func(t *testing.T) {
					t.Parallel()
					b, tmpl, task, calls := runFlow(t, setup, set, spec)
					requireFlow(t, spec, tmpl, task, calls)
					requireLegalTransitions(t, b.engine, task.ID)
				})
			}
		})

		f := corefixture.Pick(set, flowFailure{
			spec: domainEventsSpec(true), done: "domain_events_validate_order", failing: "domain_events_process_payment",
			message: "payment declined", never: []string{"domain_events_update_inventory", "domain_events_send_notification"},
		}, flowFailure{
			spec: signupSpec(true), done: "open_account", failing: "charge_fee",
			message: "card declined", never: []string{"grant_access", "email_receipt"},
		})
		t.Run(f.spec.file+"/simulated failure", func(t *testing.T) {
			t.Parallel()
			b, _, task, calls := runFlow(t, setupB, set, f.spec)
			require.Equal(t, tasker.TaskBlockedByFailures, task.State, describeSteps(task))
			v, _ := task.Step(f.done)
			require.Equal(t, tasker.StepComplete, v.State)
			p, _ := task.Step(f.failing)
			require.Equal(t, tasker.StepError, p.State)
			require.Equal(t, 1, p.Attempts)
			require.Equal(t, 1, p.MaxAttempts)
			require.NotNil(t, p.LastError)
			require.Equal(t, "exhausted", p.LastError.Kind)
			require.Contains(t, p.LastError.Message, f.message)
			for _, name := range f.never {
				s, _ := task.Step(name)
				require.Equal(t, tasker.StepPending, s.State, name)
				_, ran := calls.Load(name)
				require.False(t, ran, "%s must not run", name)
			}
			requireLegalTransitions(t, b.engine, task.ID)
		})

		var seen sync.Map
		spec := corefixture.Pick(set, methodDispatchSpec(&seen), handlerMethodsSpec(&seen))
		t.Run(spec.file, func(t *testing.T) {
			t.Parallel()
			b, tmpl, task, calls := runFlow(t, setupB, set, spec)
			requireFlow(t, spec, tmpl, task, calls)
			requireLegalTransitions(t, b.engine, task.ID)

			// Tasker Core invokes handler.method on the handler. The Go handler can only dispatch
			// on it if the engine tells it which method its step names.
			t.Run("engine tells the handler its handler.method", func(t *testing.T) {
				if _, ok := stepMethod(&tasker.Step{}); !ok {
					t.Fatalf("ENGINE GAP: templates parse handler.method (HandlerSpec.Method) but *tasker.Step offers no " +
						"accessor for it (expected `func (s *Step) Method() string`), so a handler registered under " +
						"one callable cannot tell its methods apart; this test dispatched on the template it holds instead")
				}
				for _, st := range tmpl.Steps {
					want := st.Handler.Method
					if want == "" {
						want = "call"
					}
					got, ok := seen.Load(st.Name)
					require.True(t, ok, "handler of %s saw no method", st.Name)
					if got != want && !(got == "" && want == "call") {
						t.Errorf("step %s: handler saw method %q, want %q", st.Name, got, want)
					}
				}
			})
		})
	})
}

// ---------------------------------------------------------------------------------------------

// stepTypes returns the non-standard step types of a template.
func nonStandardTypes(tmpl *tasker.Template) []string {
	var out []string
	for _, st := range tmpl.Steps {
		if st.Type != tasker.StepStandard {
			out = append(out, fmt.Sprintf("%s:%s", st.Name, st.Type))
		}
	}
	return out
}

// TestFixtureUnsupportedStepTypes accounts for every fixture: each either runs above (standard
// steps only) or has a decision / deferred_convergence / batchable / batch_worker step and is
// refused by CreateTask with ErrUnsupported, writing nothing.
// TestFixtureInventory checks that every fixture is either run here with standard steps only or
// listed among the decision and batch fixtures, which fixtures_dynamic_test.go runs.
func TestFixtureInventory(t *testing.T) {
	t.Parallel()
	corefixture.Each(t, func(t *testing.T, set corefixture.Set) {
		files, err := filepath.Glob(set.Path("*.yaml"))
		require.NoError(t, err)
		var all []string
		for _, f := range files {
			all = append(all, filepath.Base(f))
		}
		accounted := append(slices.Clone(fixturesRunHere(set)), fixturesUnsupported(set)...)
		sort.Strings(accounted)
		require.Equal(t, accounted, all, "every template must be run here or listed as unsupported")

		for _, f := range fixturesRunHere(set) {
			tmpl, _ := loadFixture(t, set, f)
			require.Empty(t, nonStandardTypes(tmpl), f)
		}

		for _, f := range fixturesUnsupported(set) {
			tmpl, _ := loadFixture(t, set, f)
			require.NotEmpty(t, nonStandardTypes(tmpl), f)
		}
	})
}

package chaos_test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/chaos"
	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/store/postgres"
)

// The defaults are small enough for every go test ./... run; raise -chaos.family-parents for a
// heavier one.
var (
	flagFamilyParents  = flag.Int("chaos.family-parents", 2, "parent tasks each TestChildCrash scenario runs at once")
	flagFamilyLease    = flag.Duration("chaos.family-lease", time.Second, "the workers' tasker.Config.Lease in TestChildCrash")
	flagFamilyLostWake = flag.Bool("chaos.family-lost-wake", false, "also run the TestChildCrash scenario whose kill loses a wake-up (it waits out ChildPollInterval)")
	flagFamilySettle   = flag.Duration("chaos.family-settle", 60*time.Second, "bound on the wait for the families to complete after the kill")
)

// crashScenario is one kill of TestChildCrash.
type crashScenario struct {
	name string
	// split: the parent's namespace and the child's are served by two processes (fleets "parent"
	// and "child"); otherwise one process serves both (fleet "both").
	split bool
	holds []string // the workers' hold points
	kill  string   // the fleet whose process is SIGKILLed
	// killWhen is a query with $1 = the number of parents: the test kills once it returns true.
	killWhen string
	// rescued is how many times each parent's step and each child's step is to be rescued after
	// its lease expired: the kills that land on a running handler.
	rescuedParent, rescuedChild int
	// lostWake: the kill loses the child's wake-up, which costs the parent its poll
	// (ChildPollInterval, 30 s); the scenario runs with -chaos.family-lost-wake only.
	lostWake bool
}

// The moments the scenarios kill at; each query counts the parents (or children) that are there.
const (
	sqlParentsParked = `(SELECT count(*) FROM {s}.steps s JOIN {s}.tasks t ON t.task_id = s.task_id
		 WHERE t.namespace = 'chaos_parent' AND s.state = 'waiting_for_retry'
		   AND EXISTS (SELECT 1 FROM {s}.chaos_family_runs r WHERE r.step_id = s.step_id AND r.phase = 'parked')) = $1`
	sqlChildrenHeld = `(SELECT count(DISTINCT step_id) FROM {s}.chaos_family_runs WHERE step_name = 'work' AND phase = 'hold') = $1`
	sqlParentsHeld  = `(SELECT count(DISTINCT step_id) FROM {s}.chaos_family_runs WHERE step_name = 'spawn' AND phase = 'hold') = $1`
	sqlChildrenDone = `(SELECT count(*) FROM {s}.tasks WHERE namespace = 'chaos_child' AND state = 'complete') = $1`
)

var crashScenarios = []crashScenario{
	{
		// The parent's process dies while its step is parked waiting for the child, whose handler
		// runs in the other process: nothing of the parent is in flight.
		name: "parent-parked", split: true, holds: []string{chaos.HoldChild}, kill: "parent",
		killWhen: sqlParentsParked + ` AND ` + sqlChildrenHeld,
	},
	{
		// The parent's process dies after Child created the child and before the park committed:
		// the step is in progress under a dead lease while the child, held until the kill (else
		// it may complete before Child reads it), runs to its end (its wake-up finds the parent in
		// progress); the retry must find the same child, not make a second.
		name: "parent-created", split: true, holds: []string{chaos.HoldParentCreated, chaos.HoldChild}, kill: "parent",
		killWhen: sqlParentsHeld, rescuedParent: 1,
	},
	{
		// The parent's process dies holding the completed child's result, before the parent's
		// completion committed: the retry must read the same result again.
		name: "parent-result", split: true, holds: []string{chaos.HoldParentResult}, kill: "parent",
		killWhen: sqlParentsHeld, rescuedParent: 1,
	},
	{
		// The child's process dies while the child's handler runs and the parent is parked.
		name: "child-running", split: true, holds: []string{chaos.HoldChild}, kill: "child",
		killWhen: sqlParentsParked + ` AND ` + sqlChildrenHeld, rescuedChild: 1,
	},
	{
		// One process holds both: its death leaves the parent parked and the child in progress.
		name: "one-process", holds: []string{chaos.HoldChild}, kill: "both",
		killWhen: sqlParentsParked + ` AND ` + sqlChildrenHeld, rescuedChild: 1,
	},
	{
		// The child's process dies right after the child's completion committed, while its
		// wake-up waits for the parent, still in its handler (held after Child found the child
		// running), to park: the parent parks, nobody wakes it, and its poll finds the child's
		// result ChildPollInterval later. Nothing is lost; the test logs how long it took.
		name: "child-after-commit", split: true, holds: []string{chaos.HoldParentCreated}, kill: "child",
		killWhen: sqlParentsHeld + ` AND ` + sqlChildrenDone, lostWake: true,
	},
}

// TestChildCrash: a parent task's step runs a child task (Step.Child) and completes with its
// result; a worker process is SIGKILLed at a chosen point of that (the crashScenarios), a new
// process takes its place on the same schema, and the test checks from the database that nothing
// of the child's result was lost: one child per parent step, each child completed once, the
// parent step's result the completing child run's result, every task and step complete once,
// every handler run accounted for by one recorded outcome (its own, or the rescue of its lease),
// the rescues exactly the kills that landed on a running handler, no attempt run twice, and
// nothing left in progress, leased or dead-lettered.
func TestChildCrash(t *testing.T) {
	n := *flagFamilyParents
	require.Positive(t, n)
	bin := buildWorker(t)
	for _, sc := range crashScenarios {
		t.Run(sc.name, func(t *testing.T) { runChildCrash(t, bin, sc, n) })
	}
}

// familySetup makes a schema with the family tables, an engine that creates parents and runs no
// workers, and the environment of the worker processes (with extra appended).
func familySetup(t *testing.T, extra ...string) (*testdb.DB, func(string) string, *tasker.Engine, []string) {
	t.Helper()
	ctx := context.Background()
	db := testdb.New(t, testdb.WithMaxConns(4))
	require.NoError(t, chaos.CreateFamilyTables(ctx, db.Pool, db.Schema))
	workerURL, err := withPoolSize(db.URL, *flagPoolConns)
	require.NoError(t, err)
	creator, err := tasker.NewEngine(tasker.Config{Store: postgres.New(db.Pool, postgres.WithSchema(db.Schema))})
	require.NoError(t, err)
	tmpls, err := chaos.FamilyTemplates()
	require.NoError(t, err)
	for _, tm := range tmpls {
		require.NoError(t, creator.Register(tm))
	}
	env := append(os.Environ(),
		"TASKER_CHAOS_DATABASE_URL="+workerURL,
		"TASKER_CHAOS_SCHEMA="+db.Schema,
		"TASKER_CHAOS_FAMILY=1",
		"TASKER_CHAOS_LEASE="+flagFamilyLease.String(),
		"TASKER_CHAOS_LEADER_TTL=500ms",
	)
	if *flagVerbose {
		env = append(env, "TASKER_CHAOS_VERBOSE=1")
	}
	// slices.Clip: each fleet's appends to it get their own array.
	return db, schemaQuery(db.Schema), creator, slices.Clip(append(env, extra...))
}

func runChildCrash(t *testing.T, bin string, sc crashScenario, n int) {
	if sc.lostWake && !*flagFamilyLostWake {
		t.Skip("it waits out ChildPollInterval: run it with -chaos.family-lost-wake")
	}
	began := time.Now()
	ctx := context.Background()
	db, sq, creator, env := familySetup(t,
		"TASKER_CHAOS_HOLD="+strings.Join(sc.holds, ","),
		fmt.Sprintf("TASKER_CHAOS_CONCURRENCY=%d", max(8, n)),
		"TASKER_CHAOS_MIN_SLEEP=0s", "TASKER_CHAOS_MAX_SLEEP=0s")
	fleets := map[string]*fleet{}
	if sc.split {
		fleets["parent"] = newNamedFleet(t, "parent", bin, append(env, "TASKER_CHAOS_NAMESPACES="+chaos.ParentNamespace), 1)
		fleets["child"] = newNamedFleet(t, "child", bin, append(env, "TASKER_CHAOS_NAMESPACES="+chaos.ChildNamespace), 1)
	} else {
		fleets["both"] = newNamedFleet(t, "both", bin, env, 1)
	}
	victim := fleets[sc.kill]
	require.NotNil(t, victim, "scenario %s kills fleet %q", sc.name, sc.kill)

	for i := range n {
		_, err := creator.CreateTask(ctx, tasker.TaskRequest{Namespace: chaos.ParentNamespace, Name: chaos.ParentName,
			Context: map[string]any{"i": i}})
		require.NoError(t, err)
	}
	if _, ok := waitUntil(t, ctx, db.Pool, sq, "the kill moment", sq(`SELECT `+sc.killWhen), n, 30*time.Second); !ok {
		t.FailNow()
	}
	reached := time.Now()
	pid, err := victim.killAndRestart(0)
	require.NoError(t, err)
	killed := time.Now()
	t.Logf("SIGKILL %s worker (pid %d) %s after the start; a new one started", sc.kill, pid, killed.Sub(began).Round(time.Millisecond))
	require.NoError(t, chaos.OpenGate(ctx, db.Pool, db.Schema, chaos.ParentGate))
	require.NoError(t, chaos.OpenGate(ctx, db.Pool, db.Schema, chaos.ChildGate))

	// Settled: every parent complete, and every task there is (children included) complete.
	settled, _ := waitUntil(t, ctx, db.Pool, sq, "every parent and child complete", sq(`
		SELECT count(*) FILTER (WHERE namespace = 'chaos_parent' AND state = 'complete') = $1 AND bool_and(state = 'complete')
		  FROM {s}.tasks`), n, *flagFamilySettle)
	var stopErrs []string
	for _, name := range []string{"parent", "child", "both"} {
		if f := fleets[name]; f != nil {
			stopErrs = append(stopErrs, f.stop(20*time.Second)...)
		}
	}
	for _, msg := range stopErrs {
		t.Errorf("%s", msg)
	}
	for _, f := range fleets {
		f.mu.Lock()
		unexpected := f.unexpected
		f.mu.Unlock()
		for _, msg := range unexpected {
			t.Errorf("%s", msg)
		}
		if races := f.grepLogs("DATA RACE", 5); len(races) > 0 {
			t.Errorf("the race detector fired in a worker:\n%s", strings.Join(races, "\n"))
		}
	}

	verifyFamilies(t, ctx, db.Pool, sq, n, &sc)
	var parentRuns, childRuns int
	require.NoError(t, db.Pool.QueryRow(ctx, sq(`
		SELECT count(*) FILTER (WHERE step_name = 'spawn'), count(*) FILTER (WHERE step_name = 'work')
		  FROM {s}.chaos_family_runs WHERE phase = 'start'`)).Scan(&parentRuns, &childRuns))
	t.Logf("%s: %d families; kill moment reached %s after the start; all complete %s after the kill; "+
		"handler runs: parents %d, children %d; total %s",
		sc.name, n, reached.Sub(began).Round(time.Millisecond), settled.Sub(killed).Round(time.Millisecond),
		parentRuns, childRuns, time.Since(began).Round(time.Millisecond))
	if t.Failed() {
		t.Logf("state:\n%s", diagnose(ctx, db.Pool, sq))
		for _, f := range fleets {
			t.Logf("errors the %s workers logged:\n%s", f.name, strings.Join(f.grepLogs("level=ERROR", 20), "\n"))
		}
	}
}

// waitUntil polls query (with $1 = n) until it returns true, at most bound, and returns when; it
// fails the test (and returns false) when bound passes first.
func waitUntil(t *testing.T, ctx context.Context, pool *pgxpool.Pool, sq func(string) string, what, query string, n int, bound time.Duration) (time.Time, bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for {
		var ok bool
		require.NoError(t, pool.QueryRow(ctx, query, n).Scan(&ok), query)
		if ok {
			return time.Now(), true
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: not reached within %s\n%s", what, bound, diagnose(ctx, pool, sq))
			return time.Now(), false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// verifyFamilies checks the end state of n families; each check reports on its own. sc is the
// scenario of a kill at a chosen point, which allows exact counts; nil means random kills.
func verifyFamilies(t *testing.T, ctx context.Context, pool *pgxpool.Pool, sq func(string) string, n int, sc *crashScenario) {
	t.Helper()
	// Every task and step complete, once, along legal paths; nothing leased or dead-lettered.
	assert.Equal(t, map[string]int{"chaos_parent/complete": n, "chaos_child/complete": n},
		countBy(t, ctx, pool, sq(`SELECT namespace || '/' || state, count(*) FROM {s}.tasks GROUP BY 1`)), "tasks by namespace and state")
	assert.Equal(t, map[string]int{"spawn/complete": n, "work/complete": n},
		countBy(t, ctx, pool, sq(`SELECT name || '/' || state, count(*) FROM {s}.steps GROUP BY 1`)), "steps by name and state")
	checkExactlyOnce(t, ctx, pool, sq)
	var r report
	checkStepPaths(t, ctx, pool, sq, &r)
	checkTaskPaths(t, ctx, pool, sq)
	expectNone(t, ctx, pool, sq(`
		SELECT task_id, name, state, lease_owner, lease_expires_at FROM {s}.steps
		 WHERE lease_owner IS NOT NULL OR lease_expires_at IS NOT NULL`), "steps that still hold a lease")
	expectNone(t, ctx, pool, sq(`SELECT task_id, step_id FROM {s}.dead_letters`), "dead letters")
	expectNone(t, ctx, pool, sq(`
		SELECT t.task_id, t.namespace, t.steps_unfinished, t.steps_active, t.steps_failed FROM {s}.tasks t
		 WHERE t.steps_unfinished <> 0 OR t.steps_active <> 0 OR t.steps_failed <> 0 OR t.completed_at IS NULL`),
		"tasks whose counters are not at rest")

	// What the queue still holds (a parked step's poll message, due later) names complete steps
	// only: the engine acks it as done when it comes due.
	expectNone(t, ctx, pool, sq(`
		SELECT m.msg_id, m.queue_name, m.payload, s.state FROM {s}.queue_messages m
		  LEFT JOIN {s}.steps s ON s.step_id::text = m.payload->>'step_id'
		 WHERE s.step_id IS NULL OR s.state <> 'complete'`), "queue messages for steps that are not complete")

	// Exactly one child per parent step: the first round's identity, tagged with its parent.
	expectNone(t, ctx, pool, sq(`
		SELECT * FROM (
			SELECT p.task_id, p.step_id,
			       (SELECT count(*) FROM {s}.tasks c WHERE c.namespace = 'chaos_child'
			           AND (c.idempotency_key LIKE 'child:' || p.step_id || ':%'
			                OR 'tasker:parent=' || p.task_id || '/spawn' = ANY (c.tags))) AS children,
			       (SELECT count(*) FROM {s}.tasks c WHERE c.namespace = 'chaos_child'
			           AND c.idempotency_key = 'child:' || p.step_id || ':0'
			           AND 'tasker:parent=' || p.task_id || '/spawn' = ANY (c.tags)) AS first_round
			  FROM {s}.steps p WHERE p.name = 'spawn') x
		 WHERE children <> 1 OR first_round <> 1`), "parent steps without exactly one child (round 0, tagged with them)")

	// The parent step's result is its child's, and that is the result of the child's completing
	// run (its last attempt), which the parent's last run returned.
	expectNone(t, ctx, pool, sq(`
		SELECT p.task_id, p.result AS parent_result, cs.result AS child_result, cs.attempts AS child_attempts
		  FROM {s}.steps p
		  JOIN {s}.tasks c ON c.idempotency_key = 'child:' || p.step_id || ':0'
		  JOIN {s}.steps cs ON cs.task_id = c.task_id
		 WHERE p.name = 'spawn'
		   AND (p.result IS DISTINCT FROM cs.result
		        OR NOT EXISTS (SELECT 1 FROM {s}.chaos_family_runs r WHERE r.step_id = cs.step_id
		                        AND r.attempt = cs.attempts AND r.phase = 'done' AND r.token = cs.result->>'token')
		        OR NOT EXISTS (SELECT 1 FROM {s}.chaos_family_runs r WHERE r.step_id = p.step_id
		                        AND r.attempt = p.attempts AND r.phase = 'done' AND r.token = cs.result->>'token'))`),
		"parent steps whose result is not their child's completing run's")

	// At least once, and no more than the kills allow: every claim into in_progress ends in one
	// recorded way out of it (the run's outcome, a park, or the rescue of its lease); every handler
	// run (a start row) is a claim, and a claim without a run was rescued (killed between its
	// claim and its handler's first write); no attempt ran twice; no failure but rescues and parks.
	expectNone(t, ctx, pool, sq(`
		SELECT * FROM (
			SELECT s.task_id, s.name, s.attempts,
			       (SELECT count(*) FROM {s}.chaos_family_runs r WHERE r.step_id = s.step_id AND r.phase = 'start') AS runs,
			       (SELECT count(*) FROM {s}.step_transitions tr WHERE tr.step_id = s.step_id AND tr.to_state = 'in_progress') AS claims,
			       (SELECT count(*) FROM {s}.step_transitions tr WHERE tr.step_id = s.step_id AND tr.from_state = 'in_progress') AS ends,
			       (SELECT count(*) FROM {s}.step_transitions tr WHERE tr.step_id = s.step_id
			           AND tr.metadata->'error'->>'kind' = 'lease_expired') AS rescues
			  FROM {s}.steps s) x
		 WHERE claims <> ends OR runs > claims OR claims - runs > rescues`),
		"steps whose claims, ends, handler runs and rescues do not add up")
	expectNone(t, ctx, pool, sq(`
		SELECT step_id, step_name, attempt, count(*) AS runs, array_agg(worker_id) AS workers
		  FROM {s}.chaos_family_runs WHERE phase = 'start' GROUP BY 1, 2, 3 HAVING count(*) > 1`),
		"attempts whose handler ran more than once")
	expectNone(t, ctx, pool, sq(`
		SELECT s.task_id, s.name, s.attempts, tr.metadata->'error' AS error FROM {s}.step_transitions tr
		  JOIN {s}.steps s ON s.step_id = tr.step_id
		 WHERE tr.metadata ? 'error' AND tr.metadata->'error'->>'kind' NOT IN ('lease_expired', 'parked')`),
		"failures other than lease rescues and parks")
	if sc == nil {
		return
	}
	// A kill at a chosen point: every run is a claim, the rescues are exactly the kills that
	// landed on a running handler of the step, and each child ran once more per such kill.
	expectNone(t, ctx, pool, sq(`
		SELECT s.task_id, s.name, s.attempts,
		       (SELECT count(*) FROM {s}.chaos_family_runs r WHERE r.step_id = s.step_id AND r.phase = 'start') AS runs,
		       (SELECT count(*) FROM {s}.step_transitions tr WHERE tr.step_id = s.step_id AND tr.to_state = 'in_progress') AS claims
		  FROM {s}.steps s
		 WHERE (SELECT count(*) FROM {s}.chaos_family_runs r WHERE r.step_id = s.step_id AND r.phase = 'start') <>
		       (SELECT count(*) FROM {s}.step_transitions tr WHERE tr.step_id = s.step_id AND tr.to_state = 'in_progress')`),
		"steps whose handler runs are not their claims")
	assert.Equal(t, map[string]int{fmt.Sprintf("spawn/%d", sc.rescuedParent): n, fmt.Sprintf("work/%d", sc.rescuedChild): n},
		countBy(t, ctx, pool, sq(`
			SELECT s.name || '/' || (SELECT count(*) FROM {s}.step_transitions tr WHERE tr.step_id = s.step_id
			                          AND tr.metadata->'error'->>'kind' = 'lease_expired'), count(*)
			  FROM {s}.steps s GROUP BY 1`)),
		"steps by name and lease rescues")
	assert.Equal(t, map[string]int{fmt.Sprint(1 + sc.rescuedChild): n},
		countBy(t, ctx, pool, sq(`
			SELECT runs::text, count(*) FROM (
				SELECT count(*) AS runs FROM {s}.chaos_family_runs WHERE step_name = 'work' AND phase = 'start' GROUP BY step_id) x
			 GROUP BY runs`)),
		"child steps by handler runs")
}

// The random-kill run of the families, TestChildChaos, which runs only when asked for:
//
//	go test -race ./internal/chaos -run TestChildChaos -v -chaos.family-chaos-tasks 200 \
//		-chaos.family-chaos-duration 25s -chaos.family-chaos-kill-every 500ms -chaos.family-settle 120s
var (
	flagFamilyChaosTasks = flag.Int("chaos.family-chaos-tasks", 0, "parent tasks TestChildChaos creates; 0 skips it")
	flagFamilyChaosDur   = flag.Duration("chaos.family-chaos-duration", 10*time.Second, "how long TestChildChaos kills workers; the parents are created throughout")
	flagFamilyChaosKill  = flag.Duration("chaos.family-chaos-kill-every", 700*time.Millisecond, "interval between two SIGKILLs of TestChildChaos")
)

// TestChildChaos is TestChaos for child tasks: three worker processes (one serving the parents'
// namespace, one the children's, one both), one of them SIGKILLed at random every
// -chaos.family-chaos-kill-every and restarted, while parents are created; the handlers sleep a
// random time so that the kills land anywhere (in a parent's handler before its park or its
// completion, in a child's, between a commit and the wake-up). The end state is checked as
// TestChildCrash's, without the exact counts a chosen kill point allows.
//
// It is off by default (TestChildCrash is the small version every run has): a kill of the child's
// process after the child's commit and before its wake-up reached the parked parent (the parent
// may still be in its handler then, up to a lease) costs the parent its poll, ChildPollInterval
// (30 s), which at these kill rates happens to several families a run (it logs them).
func TestChildChaos(t *testing.T) {
	began := time.Now()
	n := *flagFamilyChaosTasks
	if n <= 0 {
		t.Skip("TestChildChaos runs with -chaos.family-chaos-tasks N (N > 0)")
	}
	ctx := context.Background()
	bin := buildWorker(t)
	db, sq, creator, env := familySetup(t, "TASKER_CHAOS_CONCURRENCY=8",
		"TASKER_CHAOS_MIN_SLEEP=20ms", "TASKER_CHAOS_MAX_SLEEP=200ms")
	fleets := []*fleet{
		newNamedFleet(t, "parent", bin, append(env, "TASKER_CHAOS_NAMESPACES="+chaos.ParentNamespace), 1),
		newNamedFleet(t, "child", bin, append(env, "TASKER_CHAOS_NAMESPACES="+chaos.ChildNamespace), 1),
		newNamedFleet(t, "both", bin, env, 1),
	}

	created := make(chan error, 1)
	go func() {
		start := time.Now()
		for i := range n {
			if d := time.Until(start.Add(*flagFamilyChaosDur * time.Duration(i) / time.Duration(n))); d > 0 {
				time.Sleep(d)
			}
			if _, err := creator.CreateTask(ctx, tasker.TaskRequest{Namespace: chaos.ParentNamespace, Name: chaos.ParentName,
				Context: map[string]any{"i": i}}); err != nil {
				created <- fmt.Errorf("parent %d: %w", i, err)
				return
			}
		}
		created <- nil
	}()
	kills := map[string]int{}
	var killLog []killEvent
	end := time.Now().Add(*flagFamilyChaosDur)
	for time.Now().Before(end) {
		time.Sleep(*flagFamilyChaosKill)
		f := fleets[rand.IntN(len(fleets))]
		at := time.Now()
		pid, err := f.killAndRestart(0)
		require.NoError(t, err)
		kills[f.name]++
		killLog = append(killLog, killEvent{at: at, fleet: f.name, pid: pid})
	}
	chaosEnd := time.Now()
	require.NoError(t, <-created)

	settled, _ := waitUntil(t, ctx, db.Pool, sq, "every parent and child complete", sq(`
		SELECT count(*) FILTER (WHERE namespace = 'chaos_parent' AND state = 'complete') = $1 AND bool_and(state = 'complete')
		  FROM {s}.tasks`), n, *flagFamilySettle)
	for _, f := range fleets {
		for _, msg := range f.stop(20 * time.Second) {
			t.Errorf("%s", msg)
		}
		f.mu.Lock()
		unexpected := f.unexpected
		f.mu.Unlock()
		for _, msg := range unexpected {
			t.Errorf("%s", msg)
		}
		if races := f.grepLogs("DATA RACE", 5); len(races) > 0 {
			t.Errorf("the race detector fired in a worker:\n%s", strings.Join(races, "\n"))
		}
	}
	verifyFamilies(t, ctx, db.Pool, sq, n, nil)

	rescues := countBy(t, ctx, db.Pool, sq(`
		SELECT s.name, count(*) FROM {s}.step_transitions tr JOIN {s}.steps s ON s.step_id = tr.step_id
		 WHERE tr.metadata->'error'->>'kind' = 'lease_expired' GROUP BY 1`))
	runs := countBy(t, ctx, db.Pool, sq(`SELECT step_name, count(*) FROM {s}.chaos_family_runs WHERE phase = 'start' GROUP BY 1`))
	// From a child's completion to its parent's next claim: a wake-up at once, or (lost with a
	// kill between the child's commit and the wake-up) ChildPollInterval.
	var slow int
	var worst float64
	require.NoError(t, db.Pool.QueryRow(ctx, sq(`
		SELECT count(*) FILTER (WHERE wait > 5), coalesce(max(wait), 0) FROM (
			SELECT extract(epoch FROM (SELECT min(tr.created_at) FROM {s}.step_transitions tr
			                            WHERE tr.step_id = p.step_id AND tr.to_state = 'in_progress'
			                              AND tr.created_at >= c.completed_at) - c.completed_at) AS wait
			  FROM {s}.steps p JOIN {s}.tasks c ON c.idempotency_key = 'child:' || p.step_id || ':0'
			 WHERE p.name = 'spawn') x`)).Scan(&slow, &worst))
	if slow > 0 {
		logSlowWakes(t, ctx, db.Pool, sq, fleets, killLog, 3)
	}
	t.Logf("child chaos: %d families; kills %v over %s; handler runs %v; lease rescues %v; "+
		"child done to parent claimed: max %.1fs, %d over 5s (a wake-up lost); settled %s after the chaos; total %s",
		n, kills, chaosEnd.Sub(began).Round(time.Millisecond), runs, rescues, worst, slow,
		settled.Sub(chaosEnd).Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
	if t.Failed() {
		t.Logf("state:\n%s", diagnose(ctx, db.Pool, sq))
		for _, f := range fleets {
			t.Logf("errors the %s workers logged:\n%s", f.name, strings.Join(f.grepLogs("level=ERROR", 20), "\n"))
		}
	}
}

// logSlowWakes logs, for up to max parents that were claimed again more than 5 s after their
// child completed, what happened to the parent's step and the child's, and the workers' lines
// about them.
func logSlowWakes(t *testing.T, ctx context.Context, pool *pgxpool.Pool, sq func(string) string, fleets []*fleet, kills []killEvent, max int) {
	t.Helper()
	rows, err := pool.Query(ctx, sq(`
		SELECT p.step_id::text, cs.step_id::text, c.task_id::text, c.completed_at FROM {s}.steps p
		  JOIN {s}.tasks c ON c.idempotency_key = 'child:' || p.step_id || ':0'
		  JOIN {s}.steps cs ON cs.task_id = c.task_id
		 WHERE p.name = 'spawn'
		   AND (SELECT min(tr.created_at) FROM {s}.step_transitions tr WHERE tr.step_id = p.step_id
		         AND tr.to_state = 'in_progress' AND tr.created_at >= c.completed_at) > c.completed_at + interval '5 s'
		 LIMIT $1`), max)
	require.NoError(t, err)
	type slowWake struct {
		parentStep, childStep, childTask string
		childDone                        time.Time
	}
	var list []slowWake
	for rows.Next() {
		var w slowWake
		require.NoError(t, rows.Scan(&w.parentStep, &w.childStep, &w.childTask, &w.childDone))
		list = append(list, w)
	}
	require.NoError(t, rows.Err())
	for _, w := range list {
		_, parent := listRows(t, ctx, pool, sq(`
			SELECT tr.sort_key, tr.from_state, tr.to_state, tr.event, tr.created_at, tr.metadata->'error'->>'kind' AS kind,
			       tr.metadata->>'worker_id' AS worker
			  FROM {s}.step_transitions tr WHERE tr.step_id = '`+w.parentStep+`' ORDER BY tr.sort_key`))
		_, child := listRows(t, ctx, pool, sq(`
			SELECT tr.sort_key, tr.from_state, tr.to_state, tr.event, tr.created_at, tr.metadata->'error'->>'kind' AS kind,
			       tr.metadata->>'worker_id' AS worker
			  FROM {s}.step_transitions tr WHERE tr.step_id = '`+w.childStep+`' ORDER BY tr.sort_key`))
		_, runs := listRows(t, ctx, pool, sq(`
			SELECT step_name, attempt, phase, worker_id, at FROM {s}.chaos_family_runs
			 WHERE step_id IN ('`+w.parentStep+`', '`+w.childStep+`') ORDER BY at`))
		var lines []string
		for _, f := range fleets {
			lines = append(lines, f.grepLogs(w.childTask, 10)...)
			lines = append(lines, f.grepLogs(w.parentStep, 10)...)
		}
		var near []string
		for _, k := range kills {
			if d := k.at.Sub(w.childDone); d > -2*time.Second && d < 2*time.Second {
				near = append(near, fmt.Sprintf("  %s: SIGKILL %s (pid %d)", k.at.Format(time.RFC3339Nano), k.fleet, k.pid))
			}
		}
		t.Logf("slow wake-up: child task %s completed at %s\nparent step transitions:\n%s\nchild step transitions:\n%s\nhandler runs:\n%s\nkills within 2s:\n%s\nworker lines:\n%s",
			w.childTask, w.childDone.Format(time.RFC3339Nano), parent, child, runs, strings.Join(near, "\n"), strings.Join(lines, "\n"))
	}
}

// killEvent is one SIGKILL of TestChildChaos.
type killEvent struct {
	at    time.Time
	fleet string
	pid   int
}

package memory_test

// The scenarios below drive a store through its operations directly, recording every result, every
// Enqueuer call and snapshots of the task, its steps and its audit trail. They run on store/memory,
// whose invariants are checked after every operation, and on store/postgres, the specification:
// the two recordings must be identical, byte for byte in the JSON documents.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/statemachine"
	"github.com/tasker-systems/tasker/store"
	"github.com/tasker-systems/tasker/store/memory"
	"github.com/tasker-systems/tasker/store/postgres"
)

type recEnq struct{ calls *[]string }

func (r recEnq) EnqueueTx(_ context.Context, _ pgx.Tx, ns string, refs []store.StepRef, delay time.Duration) error {
	var parts []string
	for _, x := range refs {
		parts = append(parts, fmt.Sprintf("%s/%s/%s/%s/%v", x.StepID.String()[:8], x.TaskName, x.Version, x.Name, x.Retry))
	}
	sort.Strings(parts)
	*r.calls = append(*r.calls, fmt.Sprintf("enqueue %s [%s] delayed=%v", ns, strings.Join(parts, " "), delay > 0))
	return nil
}

type ids struct {
	all []uuid.UUID
	i   int
}

func (g *ids) next() uuid.UUID {
	if g.i == len(g.all) {
		u, _ := uuid.NewV7()
		g.all = append(g.all, u)
	}
	g.i++
	return g.all[g.i-1]
}

type tracer struct {
	t     *testing.T
	s     store.Store
	lines []string
	calls []string
	names map[uuid.UUID]string
}

func (tr *tracer) enq() store.Enqueuer { return recEnq{&tr.calls} }

func kind(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, store.ErrNotFound):
		return "notfound"
	case errors.Is(err, store.ErrConflict):
		return "conflict"
	case errors.Is(err, store.ErrNotDue):
		return "notdue"
	}
	return "error"
}

func (tr *tracer) log(name string, v any, err error) {
	tr.t.Helper()
	if m, ok := tr.s.(*memory.Store); ok {
		if ierr := memory.CheckInvariants(m); ierr != nil {
			tr.t.Errorf("after %s: %v", name, ierr)
		}
	}
	b, _ := json.Marshal(v)
	tr.lines = append(tr.lines, fmt.Sprintf("%s: %s %s", name, kind(err), b))
	tr.lines = append(tr.lines, tr.calls...)
	tr.calls = nil
	if err != nil && kind(err) == "error" {
		tr.t.Logf("%T %s: %v", tr.s, name, err)
	}
}

func tp(p *time.Time) bool { return p != nil }

func (tr *tracer) snap(taskID uuid.UUID) {
	ctx := context.Background()
	task, err := tr.s.GetTask(ctx, taskID)
	if err != nil {
		tr.log("snap task", nil, err)
		return
	}
	tr.lines = append(tr.lines, fmt.Sprintf("task %s %s ctx=%s tags=%v total=%d unf=%d act=%d fail=%d done=%v idem=%q corr=%q prio=%d hash=%s",
		task.Name, task.State, task.Context, task.Tags, task.StepsTotal, task.StepsUnfinished, task.StepsActive, task.StepsFailed,
		tp(task.CompletedAt), task.IdempotencyKey, task.CorrelationID, task.Priority, task.IdentityHash))
	steps, err := tr.s.GetSteps(ctx, taskID)
	require.NoError(tr.t, err)
	for _, st := range steps {
		tr.names[st.ID] = st.Name
		bg := ""
		if st.BatchGroup != nil {
			bg = tr.names[*st.BatchGroup]
		}
		tr.lines = append(tr.lines, fmt.Sprintf("  step %s ts=%s h=%s type=%s %s att=%d/%d retry=%v %s %v %v %v res=%s err=%s cp=%s in=%s next=%v lease=%q/%v start=%v done=%v bg=%s fs=%s",
			st.Name, st.TemplateStep, st.Handler, st.Type, st.State, st.Attempts, st.MaxAttempts, st.Retryable, st.Backoff, st.BackoffBase, st.MaxBackoff, st.Timeout,
			st.Result, st.LastError, st.Checkpoint, st.Inputs, tp(st.NextRetryAt), st.LeaseOwner, tp(st.LeaseExpiresAt), tp(st.StartedAt), tp(st.CompletedAt), bg, st.FailureStrategy))
	}
	trs, err := tr.s.Transitions(ctx, taskID)
	require.NoError(tr.t, err)
	per := map[string][]string{}
	var keys []string
	for _, x := range trs {
		k := "task"
		if x.StepID != uuid.Nil {
			k = x.StepName
		}
		if _, ok := per[k]; !ok {
			keys = append(keys, k)
		}
		per[k] = append(per[k], fmt.Sprintf("%d:%s->%s(%s)%s", x.SortKey, x.From, x.To, x.Event, x.Metadata))
	}
	sort.Strings(keys)
	for _, k := range keys {
		tr.lines = append(tr.lines, "  tr "+k+" "+strings.Join(per[k], " | "))
	}
}

func newStep(g *ids, name string, parents ...int) store.NewStep {
	return store.NewStep{StepID: g.next(), Name: name, TemplateStep: name, Handler: "h_" + name, Type: "standard",
		MaxAttempts: 3, Retryable: true, Backoff: "exponential", BackoffBase: 1500 * time.Microsecond * 1000, MaxBackoff: 30 * time.Second,
		Timeout: 2500 * time.Millisecond, Parents: parents}
}

func tmplRow(name string) *store.RegisterTemplateParams {
	return &store.RegisterTemplateParams{Namespace: "ns", Name: name, Version: "1.0", Definition: json.RawMessage(`{"b":1,"a":[1,2]}`), Checksum: "c1"}
}

type env struct {
	tr *tracer
	g  *ids
}

func (e *env) create(name, hash string, ctxJSON string, steps ...store.NewStep) uuid.UUID {
	id := e.g.next()
	res, err := e.tr.s.CreateTask(context.Background(), nil, store.CreateTaskParams{TaskID: id, Namespace: "ns", Name: name, Version: "1.0",
		Context: json.RawMessage(ctxJSON), IdentityHash: hash, Steps: steps, Enqueuer: e.tr.enq(), Template: tmplRow(name),
		Tags: []string{"x"}, CorrelationID: "corr", Priority: 3})
	if res != nil {
		e.tr.log("create "+name, map[string]any{"dup": res.Duplicate, "state": res.Task.State, "same": res.Task.ID == id}, err)
		return res.Task.ID
	}
	e.tr.log("create "+name, nil, err)
	return id
}

func (e *env) stepID(taskID uuid.UUID, name string) uuid.UUID {
	steps, err := e.tr.s.GetSteps(context.Background(), taskID)
	require.NoError(e.tr.t, err)
	for _, s := range steps {
		if s.Name == name {
			return s.ID
		}
	}
	e.tr.t.Fatalf("no step %s", name)
	return uuid.Nil
}

func (e *env) claim(taskID uuid.UUID, name, worker string, lease time.Duration, anc []string) int {
	c, err := e.tr.s.ClaimStep(context.Background(), store.ClaimStepParams{StepID: e.stepID(taskID, name), WorkerID: worker, Lease: lease, Ancestors: anc})
	if err != nil {
		e.tr.log("claim "+name, nil, err)
		return 0
	}
	res := map[string]string{}
	for k, v := range c.Results {
		res[k] = string(v)
	}
	e.tr.log("claim "+name, map[string]any{"att": c.Step.Attempts, "state": c.Step.State, "task": c.Task.State, "res": res, "cp": string(c.Step.Checkpoint), "ctx": string(c.Task.Context)}, nil)
	return c.Step.Attempts
}

func (e *env) outcome(taskID uuid.UUID, name, worker string, att int, kind store.OutcomeKind, data string, delay time.Duration, mods ...func(*store.OutcomeParams)) {
	p := store.OutcomeParams{TaskID: taskID, StepID: e.stepID(taskID, name), WorkerID: worker, Attempt: att, Kind: kind, RetryDelay: delay,
		Namespace: "ns", Enqueuer: e.tr.enq()}
	if kind == store.OutcomeSuccess {
		p.Result = json.RawMessage(data)
	} else {
		p.Error = json.RawMessage(data)
	}
	for _, m := range mods {
		m(&p)
	}
	res, err := e.tr.s.RecordOutcome(context.Background(), p)
	if res != nil {
		e.tr.log(fmt.Sprintf("outcome %s %d", name, kind), map[string]any{"state": res.TaskState, "settled": res.Settled, "released": res.Released}, err)
		return
	}
	e.tr.log(fmt.Sprintf("outcome %s %d", name, kind), nil, err)
}

func (e *env) op(taskID uuid.UUID, name string, action store.OperatorAction, result string) {
	res, err := e.tr.s.OperatorAction(context.Background(), store.OperatorParams{StepID: e.stepID(taskID, name), Action: action, Result: json.RawMessage(result),
		Reason: "r", Operator: "alice", Namespace: "ns", Enqueuer: e.tr.enq()})
	if res != nil {
		e.tr.log(fmt.Sprintf("op %s %s", action, name), map[string]any{"state": res.TaskState, "settled": res.Settled}, err)
		return
	}
	e.tr.log(fmt.Sprintf("op %s %s", action, name), nil, err)
}

func (e *env) cancel(taskID uuid.UUID) {
	res, err := e.tr.s.CancelTask(context.Background(), store.CancelTaskParams{TaskID: taskID, Reason: "stop"})
	if res != nil {
		e.tr.log("cancel", map[string]any{"state": res.TaskState, "settled": res.Settled}, err)
		return
	}
	e.tr.log("cancel", nil, err)
}

func (e *env) promote(taskID uuid.UUID, name string) {
	err := e.tr.s.PromoteRetry(context.Background(), store.PromoteRetryParams{StepID: e.stepID(taskID, name)})
	e.tr.log("promote "+name, nil, err)
}

var scenarios = map[string]func(e *env){
	"linear": func(e *env) {
		ctx := context.Background()
		a := newStep(e.g, "a")
		b := newStep(e.g, "b", 0)
		c := newStep(e.g, "c", 1)
		task := e.create("lin", "h1", `{"z": 1, "a": [1, 2.50, 1e2, -0, 1.5e-3], "s": "é\n<>&\u2028 \\ \"q\" \u001f", "k": {"bb": null, "a": true, "ccc": false}}`, a, b, c)
		e.create("lin", "h1", `{}`, newStep(e.g, "a"))
		e.snap(task)
		e.claim(task, "a", "w1", time.Minute, nil)
		e.claim(task, "a", "w1", time.Minute, nil)
		e.outcome(task, "a", "w2", 1, store.OutcomeSuccess, `{}`, 0)
		e.outcome(task, "a", "w1", 2, store.OutcomeSuccess, `{}`, 0)
		e.outcome(task, "a", "w1", 1, store.OutcomeSuccess, `{"n":1,"b":true,"n":2, "x": 12345678901234567890123, "y": 1E+2}`, 0)
		att := e.claim(task, "b", "w1", time.Minute, nil)
		e.outcome(task, "b", "w1", att, store.OutcomeRetry, `{"message":"x","kind":"retryable"}`, 0)
		e.snap(task)
		e.promote(task, "b")
		e.promote(task, "b")
		att = e.claim(task, "b", "w1", time.Minute, []string{"a", "zz"})
		st, err := e.tr.s.Heartbeat(ctx, store.HeartbeatParams{StepID: e.stepID(task, "b"), WorkerID: "w1", Lease: time.Minute})
		e.tr.log("hb", st, err)
		st, err = e.tr.s.Heartbeat(ctx, store.HeartbeatParams{StepID: e.stepID(task, "b"), WorkerID: "other", Lease: time.Minute})
		e.tr.log("hb other", st, err)
		st, err = e.tr.s.Heartbeat(ctx, store.HeartbeatParams{StepID: uuid.New(), WorkerID: "w1", Lease: time.Minute})
		e.tr.log("hb none", st, err)
		e.tr.log("cp", nil, e.tr.s.SaveCheckpoint(ctx, store.CheckpointParams{StepID: e.stepID(task, "b"), WorkerID: "w1", Attempt: att, Checkpoint: json.RawMessage(`{"pos":5, "a":1}`)}))
		e.tr.log("cp bad", nil, e.tr.s.SaveCheckpoint(ctx, store.CheckpointParams{StepID: e.stepID(task, "b"), WorkerID: "w1", Attempt: att + 1, Checkpoint: json.RawMessage(`{}`)}))
		e.outcome(task, "b", "w1", att, store.OutcomePermanent, `{"message":"boom","kind":"permanent"}`, 0)
		e.snap(task)
		e.op(task, "a", store.OperatorRetry, "")
		e.op(task, "b", "bogus", "")
		e.op(task, "b", store.OperatorRetry, "")
		e.snap(task)
		att = e.claim(task, "b", "w1", time.Minute, nil)
		e.outcome(task, "b", "w1", att, store.OutcomeSuccess, `"done"`, 0)
		att = e.claim(task, "c", "w1", time.Minute, nil)
		e.outcome(task, "c", "w1", att, store.OutcomeSuccess, ``, 0)
		e.snap(task)
		e.cancel(task)
		e.op(task, "b", store.OperatorRetry, "")
		names, err := e.tr.s.StepNames(ctx, task)
		sort.Strings(names)
		e.tr.log("names", names, err)
		names, err = e.tr.s.StepNames(ctx, uuid.New())
		e.tr.log("names none", names, err)
		tid, ns, err := e.tr.s.StepTask(ctx, e.stepID(task, "c"))
		e.tr.log("steptask", []any{tid == task, ns}, err)
		_, _, err = e.tr.s.StepTask(ctx, uuid.New())
		e.tr.log("steptask none", nil, err)
		_, err = e.tr.s.GetTask(ctx, uuid.New())
		e.tr.log("gettask none", nil, err)
		ss, err := e.tr.s.GetSteps(ctx, uuid.New())
		e.tr.log("getsteps none", ss == nil, err)
		trs, err := e.tr.s.Transitions(ctx, uuid.New())
		e.tr.log("transitions none", trs == nil, err)
		e.tr.log("promote none", nil, e.tr.s.PromoteRetry(ctx, store.PromoteRetryParams{StepID: uuid.New()}))
	},
	"diamond_rearm": func(e *env) {
		s := newStep(e.g, "start")
		l := newStep(e.g, "left", 0)
		r := newStep(e.g, "right", 0)
		j := newStep(e.g, "join", 1, 2)
		task := e.create("dia", "h2", `{}`, s, l, r, j)
		e.outcome(task, "start", "w", e.claim(task, "start", "w", time.Minute, nil), store.OutcomeSuccess, `1`, 0)
		la := e.claim(task, "left", "w", time.Minute, nil)
		ra := e.claim(task, "right", "w", time.Minute, nil)
		e.outcome(task, "right", "w", ra, store.OutcomeRetry, `{"m":1}`, 10*time.Minute)
		e.snap(task)
		e.outcome(task, "left", "w", la, store.OutcomePermanent, `{"m":2}`, 0)
		e.snap(task)
		e.promote(task, "right")
		e.op(task, "left", store.OperatorResolve, "")
		e.snap(task)
		e.promote(task, "right")
		e.cancel(task)
		e.snap(task)
	},
	"blocked_release": func(e *env) {
		s := newStep(e.g, "start")
		x := newStep(e.g, "x", 0)
		y := newStep(e.g, "y", 0)
		z := newStep(e.g, "z", 2)
		task := e.create("blk", "h3", `{}`, s, x, y, z)
		e.outcome(task, "start", "w", e.claim(task, "start", "w", time.Minute, nil), store.OutcomeSuccess, `1`, 0)
		xa := e.claim(task, "x", "w", time.Minute, nil)
		ya := e.claim(task, "y", "w", time.Minute, nil)
		e.outcome(task, "x", "w", xa, store.OutcomePermanent, `{"m":2}`, 0)
		e.outcome(task, "y", "w", ya, store.OutcomeSuccess, `2`, 0)
		e.snap(task)
		e.op(task, "x", store.OperatorComplete, `{"v": 5.0}`)
		e.snap(task)
		e.outcome(task, "z", "w", e.claim(task, "z", "w", time.Minute, nil), store.OutcomeSuccess, `3`, 0)
		e.snap(task)
	},
	"cancel_mixed": func(e *env) {
		ctx := context.Background()
		a := newStep(e.g, "a")
		b := newStep(e.g, "b")
		c := newStep(e.g, "c")
		d := newStep(e.g, "d", 0, 1, 2)
		task := e.create("can", "h4", `{}`, a, b, c, d)
		e.claim(task, "a", "w", time.Minute, nil)
		ba := e.claim(task, "b", "w", time.Minute, nil)
		e.outcome(task, "b", "w", ba, store.OutcomeRetry, `{}`, time.Hour)
		e.snap(task)
		e.cancel(task)
		e.snap(task)
		st, err := e.tr.s.Heartbeat(ctx, store.HeartbeatParams{StepID: e.stepID(task, "a"), WorkerID: "w", Lease: time.Minute})
		e.tr.log("hb", st, err)
		e.outcome(task, "a", "w", 1, store.OutcomeSuccess, `1`, 0)
		e.claim(task, "c", "w", time.Minute, nil)
		e.cancel(task)
		e.promote(task, "b")
	},
	"decision": func(e *env) {
		v := newStep(e.g, "validate")
		r := newStep(e.g, "route", 0)
		r.Type = "decision"
		task := e.create("dec", "h5", `{}`, v, r)
		e.outcome(task, "validate", "w", e.claim(task, "validate", "w", time.Minute, nil), store.OutcomeSuccess, `"ok"`, 0)
		ra := e.claim(task, "route", "w", time.Minute, nil)
		a1 := newStep(e.g, "a1")
		a1.ParentNames = []string{"route"}
		a2 := newStep(e.g, "a2")
		a2.ParentNames = []string{"route"}
		fin := newStep(e.g, "fin")
		fin.Type = "deferred_convergence"
		fin.ParentNames = []string{"a1", "a2", "nope", "validate"}
		notify := newStep(e.g, "notify")
		notify.ParentNames = []string{"fin"}
		dupv := newStep(e.g, "validate")
		plan := &store.SpawnPlan{Steps: []store.NewStep{a1, a2, fin, notify, dupv}}
		e.outcome(task, "route", "w", ra, store.OutcomeSuccess, `{"decision_point_outcome": {"type": "create_steps"}}`, 0, func(p *store.OutcomeParams) { p.Spawn = plan })
		e.snap(task)
		e.outcome(task, "route", "w", ra, store.OutcomeSuccess, `{}`, 0, func(p *store.OutcomeParams) { p.Spawn = plan })
		e.outcome(task, "a1", "w", e.claim(task, "a1", "w", time.Minute, nil), store.OutcomeSuccess, `"a1"`, 0)
		e.outcome(task, "a2", "w", e.claim(task, "a2", "w", time.Minute, nil), store.OutcomeSuccess, `"a2"`, 0)
		e.outcome(task, "fin", "w", e.claim(task, "fin", "w", time.Minute, nil), store.OutcomeSuccess, `"f"`, 0)
		e.outcome(task, "notify", "w", e.claim(task, "notify", "w", time.Minute, nil), store.OutcomeSuccess, `"n"`, 0)
		e.snap(task)
	},
	"two_failures": func(e *env) {
		s := newStep(e.g, "start")
		x := newStep(e.g, "x", 0)
		y := newStep(e.g, "y", 0)
		z := newStep(e.g, "z", 1)
		w := newStep(e.g, "w", 2)
		task := e.create("two", "h8", `{}`, s, x, y, z, w)
		e.outcome(task, "start", "w", e.claim(task, "start", "w", time.Minute, nil), store.OutcomeSuccess, `1`, 0)
		xa := e.claim(task, "x", "w", time.Minute, nil)
		ya := e.claim(task, "y", "w", time.Minute, nil)
		e.outcome(task, "x", "w", xa, store.OutcomePermanent, `{"m":"x"}`, 0)
		e.outcome(task, "y", "w", ya, store.OutcomePermanent, `{"m":"y"}`, 0)
		e.snap(task)
		e.op(task, "x", store.OperatorResolve, "") // y still failed: z waits
		e.snap(task)
		e.op(task, "y", store.OperatorRetry, "") // the last failure: the task resumes, z is re-armed
		e.snap(task)
		e.outcome(task, "y", "w", e.claim(task, "y", "w", time.Minute, nil), store.OutcomeSuccess, `2`, 0)
		e.outcome(task, "z", "w", e.claim(task, "z", "w", time.Minute, nil), store.OutcomeSuccess, `3`, 0)
		e.outcome(task, "w", "w", e.claim(task, "w", "w", time.Minute, nil), store.OutcomeSuccess, `4`, 0)
		e.snap(task)
	},
	"retry_while_other_failed": func(e *env) {
		x := newStep(e.g, "x")
		y := newStep(e.g, "y")
		z := newStep(e.g, "z", 0)
		task := e.create("rwo", "h9", `{}`, x, y, z)
		xa := e.claim(task, "x", "w", time.Minute, nil)
		ya := e.claim(task, "y", "w", time.Minute, nil)
		e.outcome(task, "x", "w", xa, store.OutcomePermanent, `{}`, 0)
		e.outcome(task, "y", "w", ya, store.OutcomePermanent, `{}`, 0)
		e.op(task, "x", store.OperatorRetry, "") // enqueued although the task stays blocked
		e.snap(task)
		e.outcome(task, "x", "w", e.claim(task, "x", "w", time.Minute, nil), store.OutcomeSuccess, `1`, 0)
		e.snap(task)
		e.op(task, "y", store.OperatorComplete, `null`)
		e.snap(task)
		e.outcome(task, "z", "w", e.claim(task, "z", "w", time.Minute, nil), store.OutcomeSuccess, `1`, 0)
		e.snap(task)
	},
	"spawn_while_blocked": func(e *env) {
		f := newStep(e.g, "f")
		d := newStep(e.g, "d")
		d.Type = "decision"
		task := e.create("swb", "h10", `{}`, f, d)
		fa := e.claim(task, "f", "w", time.Minute, nil)
		da := e.claim(task, "d", "w", time.Minute, nil)
		e.outcome(task, "f", "w", fa, store.OutcomePermanent, `{}`, 0)
		b1 := newStep(e.g, "b1")
		b1.ParentNames = []string{"d"}
		e.outcome(task, "d", "w", da, store.OutcomeSuccess, `{}`, 0, func(p *store.OutcomeParams) { p.Spawn = &store.SpawnPlan{Steps: []store.NewStep{b1}} })
		e.snap(task)
		e.op(task, "f", store.OperatorResolve, "")
		e.snap(task)
		e.outcome(task, "b1", "w", e.claim(task, "b1", "w", time.Minute, nil), store.OutcomeSuccess, `1`, 0)
		e.snap(task)
	},
	"expired_permanent": func(e *env) {
		a := newStep(e.g, "a")
		a.MaxAttempts = 1
		task := e.create("exp", "h11", `{}`, a)
		aa := e.claim(task, "a", "dead", time.Millisecond, nil)
		time.Sleep(20 * time.Millisecond)
		e.outcome(task, "a", "dead", aa, store.OutcomePermanent, `{"kind":"lease_expired"}`, 0, func(p *store.OutcomeParams) { p.LeaseExpired = true })
		e.snap(task)
	},
	"batch_isolate":  func(e *env) { batch(e, "isolate") },
	"batch_failfast": func(e *env) { batch(e, "fail_fast") },
	"lease": func(e *env) {
		ctx := context.Background()
		a := newStep(e.g, "a")
		b := newStep(e.g, "b")
		task := e.create("lease", "h7", `{}`, a, b)
		aa := e.claim(task, "a", "dead", time.Millisecond, nil)
		ba := e.claim(task, "b", "alive", time.Minute, nil)
		time.Sleep(20 * time.Millisecond)
		ex, err := e.tr.s.ExpiredSteps(ctx, store.ExpiredStepsParams{})
		var names []string
		for _, x := range ex {
			names = append(names, x.Name+"/"+x.Namespace+"/"+x.TaskName+"/"+x.Version+"/"+x.LeaseOwner)
		}
		e.tr.log("expired", names, err)
		e.outcome(task, "b", "alive", ba, store.OutcomeRetry, `{}`, 0, func(p *store.OutcomeParams) { p.LeaseExpired = true })
		e.outcome(task, "a", "dead", aa, store.OutcomeRetry, `{"kind":"lease_expired"}`, 0, func(p *store.OutcomeParams) { p.LeaseExpired = true })
		e.tr.log("release bad", nil, e.tr.s.ReleaseStep(ctx, store.ReleaseStepParams{StepID: e.stepID(task, "b"), WorkerID: "alive", Attempt: ba + 1, Reason: "x"}))
		e.tr.log("release", nil, e.tr.s.ReleaseStep(ctx, store.ReleaseStepParams{StepID: e.stepID(task, "b"), WorkerID: "alive", Attempt: ba, Reason: "shutdown"}))
		e.snap(task)
		time.Sleep(300 * time.Millisecond)
		stale, err := e.tr.s.StaleSteps(ctx, store.StaleStepsParams{OlderThan: 200 * time.Millisecond})
		var sn []string
		for _, x := range stale {
			sn = append(sn, fmt.Sprintf("%s/%s/%s/%s/%v", x.Namespace, x.Ref.TaskName, x.Ref.Version, x.Ref.Name, x.Ref.Retry))
		}
		sort.Strings(sn)
		e.tr.log("stale", sn, err)
		// Touched: not stale again within OlderThan.
		stale, err = e.tr.s.StaleSteps(ctx, store.StaleStepsParams{OlderThan: 200 * time.Millisecond})
		e.tr.log("stale again", len(stale), err)
	},
	"leaders": func(e *env) {
		ctx := context.Background()
		l := func(id string, ttl time.Duration) {
			ok, err := e.tr.s.TryLead(ctx, store.LeadParams{Name: "m", LeaderID: id, TTL: ttl})
			e.tr.log("lead "+id, ok, err)
		}
		l("a", time.Minute)
		l("b", time.Minute)
		l("a", time.Minute)
		e.tr.log("resign b", nil, e.tr.s.Resign(ctx, store.LeadParams{Name: "m", LeaderID: "b"}))
		l("b", time.Minute)
		e.tr.log("resign a", nil, e.tr.s.Resign(ctx, store.LeadParams{Name: "m", LeaderID: "a"}))
		l("b", time.Millisecond)
		time.Sleep(10 * time.Millisecond)
		l("a", time.Minute)
	},
	"list": func(e *env) {
		ctx := context.Background()
		var tasks []uuid.UUID
		for i := range 5 {
			tasks = append(tasks, e.create("lst", fmt.Sprint("hl", i), `{}`, newStep(e.g, "a")))
		}
		list := func(name string, p store.ListTasksParams) {
			ts, err := e.tr.s.ListTasks(ctx, p)
			var idx []int
			for _, t := range ts {
				for i, id := range tasks {
					if id == t.ID {
						idx = append(idx, i)
					}
				}
			}
			e.tr.log("list "+name, idx, err)
		}
		list("all", store.ListTasksParams{})
		list("lim", store.ListTasksParams{Limit: 2})
		list("after", store.ListTasksParams{Limit: 2, AfterID: tasks[3]})
		list("after unknown", store.ListTasksParams{AfterID: uuid.New()})
		list("ns", store.ListTasksParams{Namespace: "other"})
		list("state", store.ListTasksParams{States: []statemachine.TaskState{statemachine.TaskStepsInProcess}})
		list("state2", store.ListTasksParams{States: []statemachine.TaskState{statemachine.TaskComplete}})
		list("future", store.ListTasksParams{CreatedAfter: time.Now().Add(time.Hour)})
		list("past", store.ListTasksParams{CreatedBefore: time.Now().Add(-time.Hour)})
		e.cancel(tasks[1])
		list("state3", store.ListTasksParams{States: []statemachine.TaskState{statemachine.TaskCancelled}})
	},
	"create_errors": func(e *env) {
		ctx := context.Background()
		_, err := e.tr.s.CreateTask(ctx, nil, store.CreateTaskParams{TaskID: e.g.next(), Namespace: "ns", Name: "unreg", Version: "1.0",
			Context: json.RawMessage(`{}`), IdentityHash: "e1", Steps: []store.NewStep{newStep(e.g, "a")}})
		e.tr.log("unregistered", nil, err)
		a := newStep(e.g, "a")
		a.Parents = []int{0}
		_, err = e.tr.s.CreateTask(ctx, nil, store.CreateTaskParams{TaskID: e.g.next(), Namespace: "ns", Name: "x", Version: "1.0",
			Context: json.RawMessage(`{}`), IdentityHash: "e2", Steps: []store.NewStep{a}, Template: tmplRow("x")})
		e.tr.log("no root", nil, err)
		_, err = e.tr.s.CreateTask(ctx, nil, store.CreateTaskParams{TaskID: e.g.next(), Namespace: "ns", Name: "x", Version: "1.0",
			Context: json.RawMessage(`{}`), IdentityHash: "e3", Steps: []store.NewStep{newStep(e.g, "a"), newStep(e.g, "a")}, Template: tmplRow("x")})
		e.tr.log("dup name", nil, err)
		bad := newStep(e.g, "a")
		bad.Backoff = "weird"
		_, err = e.tr.s.CreateTask(ctx, nil, store.CreateTaskParams{TaskID: e.g.next(), Namespace: "ns", Name: "x", Version: "1.0",
			Context: json.RawMessage(`{}`), IdentityHash: "e4", Steps: []store.NewStep{bad}, Template: tmplRow("x")})
		e.tr.log("bad backoff", nil, err)
		_, err = e.tr.s.CreateTask(ctx, nil, store.CreateTaskParams{TaskID: e.g.next(), Namespace: "ns", Name: "x", Version: "1.0",
			Context: json.RawMessage(`{"a": "\u0000"}`), IdentityHash: "e5", Steps: []store.NewStep{newStep(e.g, "a")}, Template: tmplRow("x")})
		e.tr.log("nul", nil, err)
		ts, err := e.tr.s.ListTasks(ctx, store.ListTasksParams{})
		e.tr.log("nothing written", len(ts), err)
	},
}

func batch(e *env, strategy string) {
	an := newStep(e.g, "analyze")
	an.Type = "batchable"
	task := e.create("bat"+strategy, "hb"+strategy, `{}`, an)
	aa := e.claim(task, "analyze", "w", time.Minute, nil)
	group := e.stepID(task, "analyze")
	var plan []store.NewStep
	var workers []string
	for i := 1; i <= 4; i++ {
		w := newStep(e.g, fmt.Sprintf("w_%03d", i))
		w.TemplateStep, w.Type = "w", "batch_worker"
		w.ParentNames, w.Held, w.BatchGroup, w.FailureStrategy = []string{"analyze"}, i > 2, group, strategy
		w.Inputs = json.RawMessage(fmt.Sprintf(`{"cursor": {"batch_id": "%03d"}}`, i))
		plan = append(plan, w)
		workers = append(workers, w.Name)
	}
	total := newStep(e.g, "total")
	total.Type, total.ParentNames = "deferred_convergence", workers
	plan = append(plan, total)
	e.outcome(task, "analyze", "w", aa, store.OutcomeSuccess, `{"batch_processing_outcome": {}}`, 0, func(p *store.OutcomeParams) { p.Spawn = &store.SpawnPlan{Steps: plan} })
	e.snap(task)
	a1 := e.claim(task, "w_001", "w", time.Minute, nil)
	a2 := e.claim(task, "w_002", "w", time.Minute, nil)
	e.claim(task, "w_003", "w", time.Minute, nil)
	e.outcome(task, "w_002", "w", a2, store.OutcomePermanent, `{"m":"bad"}`, 0, func(p *store.OutcomeParams) { p.Isolated = strategy == "isolate" })
	e.snap(task)
	e.outcome(task, "w_001", "w", a1, store.OutcomeSuccess, `{"count": 200}`, 0)
	e.snap(task)
	if strategy == "isolate" {
		e.outcome(task, "w_003", "w", e.claim(task, "w_003", "w", time.Minute, nil), store.OutcomeSuccess, `{"count": 200}`, 0)
		e.outcome(task, "w_004", "w", e.claim(task, "w_004", "w", time.Minute, nil), store.OutcomeSuccess, `{"count": 200}`, 0)
		e.snap(task)
		e.op(task, "w_002", store.OperatorResolve, "")
	} else {
		e.op(task, "w_002", store.OperatorRetry, "")
		e.snap(task)
		e.outcome(task, "w_002", "w", e.claim(task, "w_002", "w", time.Minute, nil), store.OutcomeSuccess, `{"count": 200}`, 0)
		e.outcome(task, "w_003", "w", e.claim(task, "w_003", "w", time.Minute, nil), store.OutcomeSuccess, `{"count": 200}`, 0)
		e.outcome(task, "w_004", "w", e.claim(task, "w_004", "w", time.Minute, nil), store.OutcomeSuccess, `{"count": 200}`, 0)
	}
	e.snap(task)
	e.outcome(task, "total", "w", e.claim(task, "total", "w", time.Minute, nil), store.OutcomeSuccess, `{"count": 800}`, 0)
	e.snap(task)
}

func (e *env) snap(id uuid.UUID) { e.tr.snap(id) }

func runScenario(t *testing.T, s store.Store, g *ids, sc func(e *env)) []string {
	t.Helper()
	g.i = 0
	tr := &tracer{t: t, s: s, names: map[uuid.UUID]string{}}
	sc(&env{tr: tr, g: g})
	return tr.lines
}

// TestScenariosKeepInvariants runs every scenario on the memory store alone.
func TestScenariosKeepInvariants(t *testing.T) {
	t.Parallel()
	for name, sc := range scenarios {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			lines := runScenario(t, memory.New(), &ids{}, sc)
			require.NotEmpty(t, lines)
		})
	}
}

// TestScenariosMatchPostgres runs every scenario on store/postgres and on store/memory, with the
// same IDs, and compares the recordings.
func TestScenariosMatchPostgres(t *testing.T) {
	t.Parallel()
	for name, sc := range scenarios {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db := testdb.New(t)
			g := &ids{}
			want := runScenario(t, postgres.New(db.Pool, postgres.WithSchema(db.Schema)), g, sc)
			got := runScenario(t, memory.New(), g, sc)
			require.Equal(t, strings.Join(want, "\n"), strings.Join(got, "\n"))
		})
	}
}

package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/google/uuid"

	"github.com/tasker-systems/tasker/internal/pgname"
	"github.com/tasker-systems/tasker/store"
)

// InvalidOutcomeError is a decision or batch outcome the template cannot honour: the step fails
// for good, with Msg as its error.
type InvalidOutcomeError struct{ Msg string }

func (e *InvalidOutcomeError) Error() string { return e.Msg }

func invalidOutcome(format string, args ...any) error {
	return &InvalidOutcomeError{Msg: fmt.Sprintf(format, args...)}
}

// StepNamer reads the names of a task's steps (store.Store does).
type StepNamer interface {
	StepNames(ctx context.Context, taskID uuid.UUID) ([]string, error)
}

// SpawnPlan turns a decision's or batchable step's result into the steps to create; a decision
// may create maxDecisionSteps steps at most. It returns nil for other steps.
func SpawnPlan(ctx context.Context, names StepNamer, t *Template, st *store.Step, result json.RawMessage, maxDecisionSteps int) (*store.SpawnPlan, error) {
	ts, ok := t.Step(st.TemplateStep)
	if !ok || (ts.Type != StepDecision && ts.Type != StepBatchable) {
		return nil, nil
	}
	existingNames, err := names.StepNames(ctx, st.TaskID)
	if err != nil {
		return nil, err
	}
	exists := map[string]bool{}
	for _, n := range existingNames {
		exists[n] = true
	}
	p := &planner{t: t, exists: exists, plan: &store.SpawnPlan{}, planned: map[string]int{}}
	switch ts.Type {
	case StepDecision:
		err = p.decision(ts, result, maxDecisionSteps)
	case StepBatchable:
		err = p.batch(ts, st, result)
	}
	if err != nil {
		return nil, err
	}
	if err := p.followers(); err != nil {
		return nil, err
	}
	return p.plan, nil
}

type planner struct {
	t       *Template
	exists  map[string]bool
	plan    *store.SpawnPlan
	planned map[string]int      // name -> index in plan.Steps
	workers map[string][]string // worker template -> worker names created now
}

func (p *planner) has(name string) bool { _, ok := p.planned[name]; return ok || p.exists[name] }

func (p *planner) add(ns store.NewStep) {
	if i, ok := p.planned[ns.Name]; ok {
		for _, parent := range ns.ParentNames {
			if !slices.Contains(p.plan.Steps[i].ParentNames, parent) {
				p.plan.Steps[i].ParentNames = append(p.plan.Steps[i].ParentNames, parent)
			}
		}
		return
	}
	p.planned[ns.Name] = len(p.plan.Steps)
	p.plan.Steps = append(p.plan.Steps, ns)
}

// parentsOf lists the existing or planned steps standing for a template step's dependencies:
// a batch_worker template dependency stands for the workers made from it.
func (p *planner) parentsOf(s *Step) (present, missing []string) {
	for _, d := range s.Dependencies {
		if ws, ok := p.workers[d]; ok {
			present = append(present, ws...)
			continue
		}
		if p.has(d) {
			present = append(present, d)
		} else {
			missing = append(missing, d)
		}
	}
	return present, missing
}

func (p *planner) decision(ts *Step, result json.RawMessage, limit int) error {
	var out struct {
		Outcome *decisionJSON `json:"decision_point_outcome"`
	}
	if err := json.Unmarshal(result, &out); err != nil || out.Outcome == nil {
		return invalidOutcome("decision step %q must return a decision outcome (tasker.CreateSteps / tasker.NoBranches, or {\"decision_point_outcome\": {...}})", ts.Name)
	}
	switch out.Outcome.Type {
	case "no_branches":
		return nil
	case "create_steps":
	default:
		return invalidOutcome("decision step %q: unknown outcome type %q (want create_steps or no_branches)", ts.Name, out.Outcome.Type)
	}
	if len(out.Outcome.StepNames) > limit {
		return invalidOutcome("decision step %q asks for %d steps; the limit is %d", ts.Name, len(out.Outcome.StepNames), limit)
	}
	di, _ := p.t.Graph.Index(ts.Name)
	descendants := map[string]bool{}
	for _, n := range p.t.Graph.Names(p.t.Graph.Descendants(di)) {
		descendants[n] = true
	}
	for _, name := range out.Outcome.StepNames {
		s, ok := p.t.Step(name)
		switch {
		case !ok:
			return invalidOutcome("decision step %q names %q, which is not a step of template %s", ts.Name, name, p.t.Key())
		case !descendants[name]:
			return invalidOutcome("decision step %q names %q, which does not descend from it", ts.Name, name)
		case s.Type == StepBatchWorker || s.Type == StepDeferredConvergence:
			return invalidOutcome("decision step %q names %q, a %s step that tasker creates by itself", ts.Name, name, s.Type)
		}
		if p.has(name) {
			continue // replayed or already created: names are unique per task
		}
		ns, err := s.NewStep(name)
		if err != nil {
			return err
		}
		p.add(ns)
	}
	// Parents are resolved once every chosen step is planned, so that chosen steps may depend on
	// each other.
	for _, name := range out.Outcome.StepNames {
		i, ok := p.planned[name]
		if !ok {
			continue
		}
		s, _ := p.t.Step(name)
		present, missing := p.parentsOf(s)
		if len(missing) > 0 {
			return invalidOutcome("decision step %q creates %q, whose dependencies %v do not exist in this task", ts.Name, name, missing)
		}
		p.plan.Steps[i].ParentNames = present
	}
	return nil
}

func (p *planner) batch(ts *Step, st *store.Step, result json.RawMessage) error {
	var out struct {
		Outcome *batchJSON `json:"batch_processing_outcome"`
	}
	if err := json.Unmarshal(result, &out); err != nil || out.Outcome == nil {
		return invalidOutcome("batchable step %q must return a batch outcome (tasker.CreateBatches / tasker.NoBatches, or {\"batch_processing_outcome\": {...}})", ts.Name)
	}
	// The worker template: named by the outcome, else the batch_worker step depending on this one.
	wname := out.Outcome.WorkerTemplateName
	var wt *Step
	for i := range p.t.Steps {
		s := &p.t.Steps[i]
		if s.Type == StepBatchWorker && slices.Contains(s.Dependencies, ts.Name) && (wname == "" || wname == s.Name) {
			wt = s
			break
		}
	}
	if wt == nil {
		return invalidOutcome("batchable step %q: no batch_worker step %q depends on it", ts.Name, wname)
	}
	cfg := Batch{}
	if wt.Batch != nil {
		cfg = *wt.Batch
	}
	cursors := out.Outcome.CursorConfigs
	var noOp bool
	switch out.Outcome.Type {
	case "create_batches":
		if len(cursors) == 0 {
			noOp = true
		}
	case "no_batches":
		noOp, cursors = true, nil
	default:
		return invalidOutcome("batchable step %q: unknown outcome type %q (want create_batches or no_batches)", ts.Name, out.Outcome.Type)
	}
	if noOp {
		cursors = []batchCursor{{BatchID: "000"}}
	}
	if cfg.MaxWorkers > 0 && len(cursors) > cfg.MaxWorkers {
		return invalidOutcome("batchable step %q asks for %d workers; batch_config.max_workers is %d", ts.Name, len(cursors), cfg.MaxWorkers)
	}
	parallelism := cfg.Parallelism
	if parallelism <= 0 {
		parallelism = len(cursors)
	}
	p.workers = map[string][]string{wt.Name: nil}
	for i, c := range cursors {
		if c.BatchID == "" {
			c.BatchID = fmt.Sprintf("%03d", i+1)
		}
		var in batchInputs
		in.Cursor, in.IsNoOp = c, noOp
		in.BatchMetadata.CursorField, in.BatchMetadata.FailureStrategy = cfg.CursorField, cfg.FailureStrategy
		raw, err := json.Marshal(in)
		if err != nil {
			return err
		}
		name := wt.Name + "_" + c.BatchID
		if why := pgname.Check(name); why != "" {
			return invalidOutcome("batch %q: the worker step's name %q %s", pgname.Truncate(c.BatchID), pgname.Truncate(name), why)
		}
		ns, err := wt.NewStep(name)
		if err != nil {
			return err
		}
		ns.Inputs, ns.Held, ns.BatchGroup, ns.FailureStrategy = raw, i >= parallelism, st.ID, cfg.FailureStrategy
		ns.ParentNames = []string{ts.Name}
		p.add(ns)
		p.workers[wt.Name] = append(p.workers[wt.Name], name)
	}
	return nil
}

// followers plans the convergence steps that now have an upstream step, and the dynamic steps
// whose every dependency now exists, until nothing changes.
func (p *planner) followers() error {
	for changed := true; changed; {
		changed = false
		for i := range p.t.Steps {
			s := &p.t.Steps[i]
			if !p.t.Dynamic[s.Name] || s.Type == StepBatchWorker {
				continue
			}
			if s.Type != StepDeferredConvergence {
				// Steps a decision chooses are created only by that decision.
				if p.isDecisionChild(s) || p.has(s.Name) {
					continue
				}
				present, missing := p.parentsOf(s)
				if len(missing) > 0 || len(present) == 0 {
					continue
				}
				ns, err := s.NewStep(s.Name)
				if err != nil {
					return err
				}
				ns.ParentNames = present
				p.add(ns)
				changed = true
				continue
			}
			// A convergence step waits on the intersection of its dependencies and what exists; it
			// is created (or gains edges) when this outcome creates one of its dependencies.
			var fresh []string
			for _, d := range s.Dependencies {
				if ws, ok := p.workers[d]; ok {
					fresh = append(fresh, ws...)
				} else if _, ok := p.planned[d]; ok {
					fresh = append(fresh, d)
				}
			}
			if len(fresh) == 0 {
				continue
			}
			if j, ok := p.planned[s.Name]; ok && len(p.plan.Steps[j].ParentNames) > 0 {
				continue // already planned in an earlier round
			}
			present, _ := p.parentsOf(s)
			ns, err := s.NewStep(s.Name)
			if err != nil {
				return err
			}
			ns.ParentNames = present
			p.add(ns)
			changed = true
		}
	}
	return nil
}

func (p *planner) isDecisionChild(s *Step) bool {
	for _, d := range s.Dependencies {
		if ds, ok := p.t.Step(d); ok && ds.Type == StepDecision {
			return true
		}
	}
	return false
}

// decisionJSON and batchJSON are the results a decision and a batchable step return, in Tasker
// Core's shape; tasker.DecisionOutcome and tasker.BatchOutcome encode them.
type decisionJSON struct {
	Type      string   `json:"type"`
	StepNames []string `json:"step_names,omitempty"`
}

type batchJSON struct {
	Type               string        `json:"type"`
	WorkerTemplateName string        `json:"worker_template_name,omitempty"`
	WorkerCount        int           `json:"worker_count,omitempty"`
	CursorConfigs      []batchCursor `json:"cursor_configs,omitempty"`
	TotalItems         int64         `json:"total_items,omitempty"`
}

// batchCursor and batchInputs are tasker.BatchCursor and tasker.BatchInputs, the inputs a batch
// worker is created with.
type batchCursor struct {
	BatchID   string `json:"batch_id"`
	Start     int64  `json:"start_cursor"`
	End       int64  `json:"end_cursor"`
	BatchSize int64  `json:"batch_size"`
}

type batchInputs struct {
	Cursor        batchCursor `json:"cursor"`
	BatchMetadata struct {
		CursorField     string `json:"cursor_field"`
		FailureStrategy string `json:"failure_strategy"`
	} `json:"batch_metadata"`
	IsNoOp bool `json:"is_no_op"`
}

package memory

import (
	"fmt"

	"github.com/tasker-systems/tasker/statemachine"
)

// CheckInvariants is checkInvariants for the external tests.
var CheckInvariants = checkInvariants

// checkInvariants checks what must hold between operations: each task and step has exactly one
// current transition, the latest, whose target is its state; sort keys count 1, 2, ...; the audit
// trail's times never go back; the task's counters and each step's unfinished parents agree with
// the steps; the index of steps in progress is exact.
func checkInvariants(s *Store) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	inProgress := 0
	for id, t := range s.tasks {
		if s.identities[identityKey{t.t.Namespace, t.t.Name, t.t.IdentityHash}] != t {
			return fmt.Errorf("task %s: not indexed by its identity", id)
		}
		last := map[*stepRow]*transition{}
		var lastTask *transition
		for i, tr := range t.trail {
			if i > 0 && (tr.createdAt.Before(t.trail[i-1].createdAt) || tr.id <= t.trail[i-1].id) {
				return fmt.Errorf("task %s: the audit trail goes back at %d", id, i)
			}
			prev := lastTask
			if tr.step != nil {
				prev = last[tr.step]
			}
			switch {
			case prev == nil && (tr.sortKey != 1 || tr.from != ""):
				return fmt.Errorf("task %s: first transition %+v", id, *tr)
			case prev != nil && (tr.sortKey != prev.sortKey+1 || tr.from != prev.to):
				return fmt.Errorf("task %s: transition %+v does not follow %+v", id, *tr, *prev)
			case prev != nil && prev.mostRecent:
				return fmt.Errorf("task %s: two current transitions", id)
			}
			if tr.step != nil {
				last[tr.step] = tr
			} else {
				lastTask = tr
			}
		}
		if lastTask == nil || lastTask != t.cur || !lastTask.mostRecent || lastTask.to != string(t.t.State) {
			return fmt.Errorf("task %s: current transition does not match its state %s", id, t.t.State)
		}
		var unfinished, active, failed int
		for _, st := range t.steps {
			tr := last[st]
			if tr == nil || tr != st.cur || !tr.mostRecent || tr.to != string(st.s.State) {
				return fmt.Errorf("step %s: current transition does not match its state %s", st.s.Name, st.s.State)
			}
			if s.steps[st.s.ID] != st || t.byName[st.s.Name] != st {
				return fmt.Errorf("step %s: not indexed", st.s.Name)
			}
			switch st.s.State {
			case statemachine.StepComplete, statemachine.StepResolvedManually, statemachine.StepCancelled:
			default:
				unfinished++
			}
			switch st.s.State {
			case statemachine.StepEnqueued, statemachine.StepInProgress, statemachine.StepEnqueuedForOrchestration:
				active++
			case statemachine.StepError:
				failed++
			}
			if st.s.State == statemachine.StepInProgress {
				inProgress++
				if s.inProgress[st.s.ID] != st || st.s.LeaseOwner == "" || st.s.LeaseExpiresAt == nil {
					return fmt.Errorf("step %s: in progress without its lease or index", st.s.Name)
				}
			}
			open := 0
			for _, p := range st.parents {
				if !p.s.State.Finished() {
					open++
				}
			}
			if st.parentsTotal != len(st.parents) || st.parentsUnfinished != open {
				return fmt.Errorf("step %s: parents %d/%d, edges say %d/%d", st.s.Name, st.parentsUnfinished, st.parentsTotal, open, len(st.parents))
			}
		}
		c := t.t
		if c.StepsTotal != len(t.steps) || c.StepsUnfinished != unfinished || c.StepsActive != active || c.StepsFailed != failed {
			return fmt.Errorf("task %s (%s): counters total %d unfinished %d active %d failed %d, steps say %d %d %d %d",
				id, c.State, c.StepsTotal, c.StepsUnfinished, c.StepsActive, c.StepsFailed, len(t.steps), unfinished, active, failed)
		}
		if t.isolated < 0 || t.isolated > c.StepsFailed {
			return fmt.Errorf("task %s: %d isolated of %d failed", id, t.isolated, c.StepsFailed)
		}
	}
	if inProgress != len(s.inProgress) {
		return fmt.Errorf("%d steps in progress, %d indexed", inProgress, len(s.inProgress))
	}
	return checkNoOrphans(s)
}

// checkNoOrphans checks that every indexed step, edge, identity and dead-letter entry belongs to
// a task the store holds: a purge (PurgeTasks) leaves nothing behind. Called with s.mu held.
func checkNoOrphans(s *Store) error {
	steps, edges := 0, 0
	for _, t := range s.tasks {
		steps += len(t.steps)
		for _, st := range t.steps {
			edges += len(st.parents)
		}
	}
	if steps != len(s.steps) || edges != len(s.edges) || len(s.identities) != len(s.tasks) {
		return fmt.Errorf("tasks hold %d steps, %d edges, %d identities; indexed %d, %d, %d",
			steps, edges, len(s.tasks), len(s.steps), len(s.edges), len(s.identities))
	}
	for _, d := range s.dead {
		if s.tasks[d.task.t.ID] != d.task {
			return fmt.Errorf("dead-letter entry %s of a task the store does not hold", d.d.ID)
		}
	}
	return nil
}

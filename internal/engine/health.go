package engine

import (
	"slices"
)

// Slots is what an engine's handler slots are doing at one moment, for health.
type Slots struct {
	// Running is true while Run's workers run: from the moment they have started (the schema
	// checked, the templates registered in the database, the fetch loops going) until they have
	// drained; Stopping is true once its context has ended and it takes no new work.
	Running, Stopping bool
	// Concurrency is the engine-wide cap (Config.Concurrency); Busy the slots held now, by
	// handlers running or about to run (a fetch holds slots for the steps it claims).
	Concurrency, Busy int
	// Namespaces lists each namespace the workers serve (while running) or would serve, sorted.
	Namespaces []NamespaceSlots
}

// NamespaceSlots is the slot use of one namespace.
type NamespaceSlots struct {
	Namespace string
	// Cap is the namespace's own cap (Config.NamespaceConcurrency), 0 when it has none beyond
	// the engine's; Busy the slots its handlers hold now.
	Cap, Busy int
}

// Slots reports the use of the engine's handler slots. It does no I/O.
func (e *Engine) Slots() Slots {
	e.mu.RLock()
	w := e.active
	e.mu.RUnlock()
	s := Slots{Concurrency: e.cfg.Concurrency}
	var nss []string
	if w != nil && w.started.Load() {
		s.Running, s.Stopping = true, w.stopping.Load()
		s.Busy = len(w.slots)
		nss = w.namespaces()
	} else {
		nss = e.namespaces()
		slices.Sort(nss)
	}
	for _, ns := range nss {
		n := NamespaceSlots{Namespace: ns, Cap: e.cfg.NamespaceConcurrency[ns]}
		if w != nil {
			if l := w.lane(ns); l != nil {
				n.Busy = int(l.held.Load())
			}
		}
		s.Namespaces = append(s.Namespaces, n)
	}
	return s
}

// Leading tells whether this engine holds the maintenance leadership now (its workers run and won
// the election).
func (e *Engine) Leading() bool {
	e.mu.RLock()
	w := e.active
	e.mu.RUnlock()
	return w != nil && w.leading.Load()
}

// Namespaces lists, sorted, the namespaces the workers serve while they run, or would serve
// (Config.Namespaces, else those of the registered templates).
func (e *Engine) Namespaces() []string {
	e.mu.RLock()
	w := e.active
	e.mu.RUnlock()
	if w != nil {
		return w.namespaces()
	}
	nss := e.namespaces()
	slices.Sort(nss)
	return nss
}

// MaintenanceLeadership is the name of the leadership the maintenance services run under (the
// name maintain elects with; store.Store's TryLead and Leader).
const MaintenanceLeadership = "maintenance"

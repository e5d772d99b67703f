package engine

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tasker-systems/tasker/internal/maintenance"
	"github.com/tasker-systems/tasker/queue"
)

// service is one maintenance service of the elected engine: run every interval while this engine
// leads. run returns the error that kept a pass from doing its work (nil when it did, or had none
// to do); the loop records it with the time of the pass (ServiceStatuses).
type service struct {
	name     string
	interval time.Duration
	run      func(ctx context.Context) error
	// due, when set, is also when the next pass is due, on the engine's clock (the scheduler's
	// next run), read after each pass; the zero time means none.
	due func() time.Time
}

// services lists the maintenance services this engine runs while it leads: the lease rescuer
// (rescue.go) always, the sweeper (sweep.go) with a queue outside the database, and the staleness
// detector (staleness.go) unless it is disabled.
func (w *workers) services() []service {
	e := w.e
	s := []service{{name: "rescuer", interval: e.cfg.RescueInterval, run: w.rescue}}
	s = append(s, service{name: "dead_letter_exhausted", interval: e.cfg.RescueInterval, run: w.deadLetterExhausted}) // exhausted.go
	if _, ok := e.queue.(queue.Publisher); ok {
		s = append(s, service{name: "sweeper", interval: e.cfg.RepublishAfter / 3, run: w.sweep})
	}
	if sc := e.cfg.Staleness; !sc.Disabled && sc.Interval > 0 {
		s = append(s, service{name: "staleness", interval: sc.Interval, run: w.staleness})
	}
	s = append(s, w.retentionServices()...) // retention.go: when Config.Retention.Period is set
	s = append(s, w.scheduleServices()...)  // schedule.go: when schedules are set
	return s
}

// maintain takes part in the maintenance election until ctx ends and, while this engine leads,
// runs each service on its own timer; a leadership lost stops them all.
func (w *workers) maintain(ctx context.Context) {
	e := w.e
	el := maintenance.Elector{Store: e.store, Name: "maintenance", ID: e.cfg.WorkerID, TTL: e.cfg.LeaderTTL, Log: e.log}
	el.Run(ctx, func(lctx context.Context) {
		w.leading.Store(true)
		defer w.leading.Store(false)
		e.tel.leaderChange("acquired") // telemetry.go
		defer e.tel.leaderChange("lost")
		var wg sync.WaitGroup
		for _, s := range w.services() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				e.log.V(1).Info("maintenance service running", "service", s.name, "interval", s.interval)
				pass := func(ctx context.Context) {
					start := time.Now()
					err := s.run(ctx)
					if ctx.Err() != nil {
						return // the leadership or the engine ended mid-pass: not this service's failure
					}
					e.svc.record(s.name, start, time.Since(start), err)
				}
				if s.due != nil {
					everyOrDue(lctx, e.cfg.Clock, s.interval, s.due, pass) // schedule.go
					return
				}
				maintenance.Every(lctx, s.interval, pass)
			}()
		}
		wg.Wait()
		e.svc.deactivate() // another engine leads now: this one's figures no longer describe the service
	})
}

// ServiceStatus is what one maintenance service's passes on this engine last did.
type ServiceStatus struct {
	Name string
	// LastRun is when its last pass began, and LastDuration how long it took; Runs counts its
	// passes since the engine started.
	LastRun      time.Time
	LastDuration time.Duration
	Runs         int64
	// LastError is the error of its last failed pass ("" when none failed), at LastErrorAt;
	// Failing is true when the last pass is that failed one.
	LastError   string
	LastErrorAt time.Time
	Failing     bool
	// Active is true while this engine leads and runs the service.
	Active bool
}

// serviceStatuses records the passes of the maintenance services this engine ran.
type serviceStatuses struct {
	mu sync.Mutex
	by map[string]*ServiceStatus
}

func (s *serviceStatuses) record(name string, start time.Time, took time.Duration, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.by == nil {
		s.by = map[string]*ServiceStatus{}
	}
	st := s.by[name]
	if st == nil {
		st = &ServiceStatus{Name: name}
		s.by[name] = st
	}
	st.LastRun, st.LastDuration, st.Runs, st.Active = start, took, st.Runs+1, true
	st.Failing = err != nil
	if err != nil {
		st.LastError, st.LastErrorAt = err.Error(), start
	}
}

// deactivate marks every service inactive: this engine no longer runs them.
func (s *serviceStatuses) deactivate() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.by {
		st.Active = false
	}
}

// ServiceStatuses returns, by name, what each maintenance service's passes on this engine last
// did; a service this engine never ran (it never led) is absent.
func (e *Engine) ServiceStatuses() []ServiceStatus {
	e.svc.mu.Lock()
	defer e.svc.mu.Unlock()
	out := make([]ServiceStatus, 0, len(e.svc.by))
	for _, st := range e.svc.by {
		out = append(out, *st)
	}
	slices.SortFunc(out, func(a, b ServiceStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}

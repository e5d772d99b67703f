package engine

import (
	"context"
	"sync"
	"time"

	"github.com/tasker-systems/tasker/internal/maintenance"
	"github.com/tasker-systems/tasker/queue"
)

// service is one maintenance service of the elected engine: run every interval while this engine
// leads.
type service struct {
	name     string
	interval time.Duration
	run      func(ctx context.Context)
}

// services lists the maintenance services this engine runs while it leads: the lease rescuer
// (rescue.go) always, and the sweeper (sweep.go) with a queue outside the database.
func (w *workers) services() []service {
	e := w.e
	s := []service{{name: "rescuer", interval: e.cfg.RescueInterval, run: w.rescue}}
	if _, ok := e.queue.(queue.Publisher); ok {
		s = append(s, service{name: "sweeper", interval: e.cfg.RepublishAfter / 3, run: w.sweep})
	}
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
		var wg sync.WaitGroup
		for _, s := range w.services() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				e.log.V(1).Info("maintenance service running", "service", s.name, "interval", s.interval)
				maintenance.Every(lctx, s.interval, s.run)
			}()
		}
		wg.Wait()
	})
}

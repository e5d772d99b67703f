package tasker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tasker-systems/tasker/internal/engine"
	"github.com/tasker-systems/tasker/queue"
	"github.com/tasker-systems/tasker/store"
)

// errDatabaseDown stands for the parts of a report skipped because the database does not answer.
var errDatabaseDown = errors.New("skipped: the database does not answer")

// Health reports the engine's health (see Health and HealthStatus). It pings the database first,
// within HealthCheckTimeout; when the database answers it reads the maintenance leader, the queue's
// backlog and the steps this engine declined (one round trip each, and one per task involved), and
// when it does not it skips what needs it. A part that fails is reported in its own field, so
// Health has an answer while the database, or the broker, is down. The error is non-nil only when
// ctx ended before the report was done; the report then holds what was gathered.
func (e *Engine) Health(ctx context.Context, opts ...HealthOption) (*Health, error) {
	o := healthOptions{queueWait: HealthQueueWaitDefault}
	for _, opt := range opts {
		opt(&o)
	}
	h := &Health{CheckedAt: time.Now(), WorkerID: e.cfg.WorkerID}
	h.Database = e.PingDatabase(ctx)
	h.Workers = e.WorkerSlots()
	h.Leader = e.leaderHealth(ctx, h.Database.OK)
	h.Queue = e.queueHealth(ctx, h.Database.OK)
	if pr, ok := e.store.(store.PoolReporter); ok {
		p := pr.PoolStats()
		h.Pool = &p
	}
	for _, s := range e.core.ServiceStatuses() {
		h.Services = append(h.Services, ServiceHealth(s))
	}
	h.WaitingForHandler = e.waitingForHandler(ctx, h.Database.OK)
	h.Status, h.Reasons = healthStatus(h, o)
	if err := ctx.Err(); err != nil {
		return h, fmt.Errorf("tasker: health: %w", err)
	}
	return h, nil
}

// PingDatabase pings the store, within HealthCheckTimeout whatever ctx allows, and reports how it
// went. It is the check behind a readiness probe: one round trip, nothing else.
func (e *Engine) PingDatabase(ctx context.Context) DatabaseHealth {
	pctx, cancel := context.WithTimeout(ctx, HealthCheckTimeout)
	defer cancel()
	start := time.Now()
	err := e.store.Ping(pctx)
	d := DatabaseHealth{OK: err == nil, Latency: time.Since(start)}
	if err != nil {
		d.Error = err.Error()
	}
	return d
}

// WorkerSlots reports the use of this engine's handler slots. It does no I/O.
func (e *Engine) WorkerSlots() WorkersHealth {
	s := e.core.Slots()
	w := WorkersHealth{Running: s.Running, Stopping: s.Stopping, Concurrency: s.Concurrency, Busy: s.Busy}
	if s.Running {
		w.Free = max(0, s.Concurrency-s.Busy)
	}
	for _, n := range s.Namespaces {
		nw := NamespaceWorkers{Namespace: n.Namespace, Cap: n.Cap, Busy: n.Busy}
		if s.Running {
			nw.Free = w.Free
			if n.Cap > 0 {
				nw.Free = max(0, min(nw.Free, n.Cap-n.Busy))
			}
		}
		w.Namespaces = append(w.Namespaces, nw)
	}
	return w
}

// leaderHealth reads who holds the maintenance leadership.
func (e *Engine) leaderHealth(ctx context.Context, dbOK bool) LeaderHealth {
	l := LeaderHealth{This: e.core.Leading()}
	if !dbOK {
		l.Error = errDatabaseDown.Error()
		return l
	}
	ctx, cancel := context.WithTimeout(ctx, HealthCheckTimeout)
	defer cancel()
	got, ok, err := e.store.Leader(ctx, engine.MaintenanceLeadership)
	switch {
	case err != nil:
		l.Error = err.Error()
	case ok:
		l.Held, l.LeaderID, l.ElectedAt, l.ExpiresAt = true, got.LeaderID, got.ElectedAt, got.ExpiresAt
	}
	return l
}

// queueHealth reads the backlog of the namespaces served. A queue that lives in the database is
// not asked while the database does not answer.
func (e *Engine) queueHealth(ctx context.Context, dbOK bool) QueueHealth {
	in, ok := e.queue.(queue.Inspector)
	if !ok {
		return QueueHealth{}
	}
	qh := QueueHealth{Inspected: true}
	if owner, ok := e.store.(store.QueueOwner); ok && !dbOK && owner.OwnsQueue(e.queue) {
		qh.Error = errDatabaseDown.Error()
		return qh
	}
	nss := e.core.Namespaces()
	if len(nss) == 0 {
		return qh
	}
	ctx, cancel := context.WithTimeout(ctx, HealthCheckTimeout)
	defer cancel()
	depths, err := in.Depths(ctx, nss)
	if err != nil {
		qh.Error = err.Error()
		return qh
	}
	for _, d := range depths {
		qh.Namespaces = append(qh.Namespaces, NamespaceQueue{Namespace: d.Queue, Ready: d.Ready, AgeKnown: d.AgeKnown,
			OldestAge: d.OldestAge, MaxWait: d.MaxWait})
	}
	return qh
}

// healthStatus applies HealthStatus's rules.
func healthStatus(h *Health, o healthOptions) (HealthStatus, []string) {
	if !h.Database.OK {
		return HealthDown, []string{"the database does not answer: " + h.Database.Error}
	}
	var reasons []string
	for _, s := range h.Services {
		if s.Failing && s.Active {
			reasons = append(reasons, fmt.Sprintf("maintenance service %s failed its last pass: %s", s.Name, s.LastError))
		}
	}
	if h.Queue.Error != "" {
		reasons = append(reasons, "the queue cannot be inspected: "+h.Queue.Error)
	}
	if o.queueWait > 0 {
		for _, q := range h.Queue.Namespaces {
			if q.MaxWait > o.queueWait {
				reasons = append(reasons, fmt.Sprintf("namespace %s: %d ready messages, one waiting for %s (limit %s)",
					q.Namespace, q.Ready, q.MaxWait.Round(time.Millisecond), o.queueWait))
			}
		}
	}
	if len(reasons) > 0 {
		return HealthDegraded, reasons
	}
	return HealthOK, nil
}

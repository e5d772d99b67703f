package healthhttp

import (
	"time"

	"github.com/tasker-systems/tasker"
)

// The JSON documents of the endpoints. Durations are in seconds (a number, fractions allowed),
// times in RFC 3339; a zero time, or an empty list or string, is left out.

// liveDoc is /health/live's answer.
type liveDoc struct {
	Status   string `json:"status"`
	WorkerID string `json:"worker_id"`
}

// readyDoc is /health/ready's answer.
type readyDoc struct {
	Ready    bool             `json:"ready"`
	Reasons  []string         `json:"reasons,omitempty"`
	WorkerID string           `json:"worker_id"`
	Database databaseDoc      `json:"database"`
	Workers  *readyWorkersDoc `json:"workers,omitempty"`
}

type readyWorkersDoc struct {
	Running  bool `json:"running"`
	Stopping bool `json:"stopping"`
}

// errorDoc answers a request the handler does not serve.
type errorDoc struct {
	Error string `json:"error"`
}

// reportDoc is /health/detailed's answer: tasker.Health, field by field.
type reportDoc struct {
	Status            string       `json:"status"`
	Reasons           []string     `json:"reasons,omitempty"`
	CheckedAt         time.Time    `json:"checked_at,omitzero"`
	WorkerID          string       `json:"worker_id"`
	Database          databaseDoc  `json:"database"`
	Queue             queueDoc     `json:"queue"`
	Leader            leaderDoc    `json:"leader"`
	Workers           workersDoc   `json:"workers"`
	Pool              *poolDoc     `json:"pool,omitempty"`
	Services          []serviceDoc `json:"services"`
	WaitingForHandler []waitingDoc `json:"waiting_for_handler"`
}

type databaseDoc struct {
	OK             bool    `json:"ok"`
	Error          string  `json:"error,omitempty"`
	LatencySeconds float64 `json:"latency_seconds"`
}

type queueDoc struct {
	Inspected  bool                `json:"inspected"`
	Error      string              `json:"error,omitempty"`
	Namespaces []namespaceQueueDoc `json:"namespaces"`
}

type namespaceQueueDoc struct {
	Namespace        string  `json:"namespace"`
	Ready            int     `json:"ready"`
	AgeKnown         bool    `json:"age_known"`
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
	MaxWaitSeconds   float64 `json:"max_wait_seconds"`
}

type leaderDoc struct {
	Held      bool      `json:"held"`
	LeaderID  string    `json:"leader_id,omitempty"`
	ElectedAt time.Time `json:"elected_at,omitzero"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	This      bool      `json:"this_engine"`
	Error     string    `json:"error,omitempty"`
}

type workersDoc struct {
	Running     bool                  `json:"running"`
	Stopping    bool                  `json:"stopping"`
	Concurrency int                   `json:"concurrency"`
	Busy        int                   `json:"busy"`
	Free        int                   `json:"free"`
	Namespaces  []namespaceWorkersDoc `json:"namespaces"`
}

type namespaceWorkersDoc struct {
	Namespace string `json:"namespace"`
	Cap       int    `json:"cap"`
	Busy      int    `json:"busy"`
	Free      int    `json:"free"`
}

type poolDoc struct {
	MaxConns               int     `json:"max_conns"`
	TotalConns             int     `json:"total_conns"`
	AcquiredConns          int     `json:"acquired_conns"`
	IdleConns              int     `json:"idle_conns"`
	ConstructingConns      int     `json:"constructing_conns"`
	AcquireCount           int64   `json:"acquire_count"`
	EmptyAcquireCount      int64   `json:"empty_acquire_count"`
	CanceledAcquireCount   int64   `json:"canceled_acquire_count"`
	AcquireDurationSeconds float64 `json:"acquire_duration_seconds"`
}

type serviceDoc struct {
	Name                string    `json:"name"`
	LastRun             time.Time `json:"last_run,omitzero"`
	LastDurationSeconds float64   `json:"last_duration_seconds"`
	Runs                int64     `json:"runs"`
	LastError           string    `json:"last_error,omitempty"`
	LastErrorAt         time.Time `json:"last_error_at,omitzero"`
	Failing             bool      `json:"failing"`
	Active              bool      `json:"active"`
}

type waitingDoc struct {
	Namespace string    `json:"namespace"`
	Callable  string    `json:"callable"`
	Reason    string    `json:"reason"`
	Steps     int       `json:"steps"`
	Since     time.Time `json:"since,omitzero"`
}

func database(d tasker.DatabaseHealth) databaseDoc {
	return databaseDoc{OK: d.OK, Error: d.Error, LatencySeconds: d.Latency.Seconds()}
}

// report converts a Health report; nil (no report at all) gives a down document with empty parts.
func report(h *tasker.Health) reportDoc {
	doc := reportDoc{Status: string(tasker.HealthDown), Services: []serviceDoc{}, WaitingForHandler: []waitingDoc{},
		Queue: queueDoc{Namespaces: []namespaceQueueDoc{}}, Workers: workersDoc{Namespaces: []namespaceWorkersDoc{}}}
	if h == nil {
		return doc
	}
	doc.Status, doc.Reasons, doc.CheckedAt, doc.WorkerID = string(h.Status), h.Reasons, h.CheckedAt, h.WorkerID
	doc.Database = database(h.Database)
	doc.Queue.Inspected, doc.Queue.Error = h.Queue.Inspected, h.Queue.Error
	for _, q := range h.Queue.Namespaces {
		doc.Queue.Namespaces = append(doc.Queue.Namespaces, namespaceQueueDoc{Namespace: q.Namespace, Ready: q.Ready,
			AgeKnown: q.AgeKnown, OldestAgeSeconds: q.OldestAge.Seconds(), MaxWaitSeconds: q.MaxWait.Seconds()})
	}
	l := h.Leader
	doc.Leader = leaderDoc{Held: l.Held, LeaderID: l.LeaderID, ElectedAt: l.ElectedAt, ExpiresAt: l.ExpiresAt, This: l.This, Error: l.Error}
	wk := h.Workers
	doc.Workers.Running, doc.Workers.Stopping, doc.Workers.Concurrency = wk.Running, wk.Stopping, wk.Concurrency
	doc.Workers.Busy, doc.Workers.Free = wk.Busy, wk.Free
	for _, n := range wk.Namespaces {
		doc.Workers.Namespaces = append(doc.Workers.Namespaces, namespaceWorkersDoc{Namespace: n.Namespace, Cap: n.Cap, Busy: n.Busy, Free: n.Free})
	}
	if p := h.Pool; p != nil {
		doc.Pool = &poolDoc{MaxConns: p.MaxConns, TotalConns: p.TotalConns, AcquiredConns: p.AcquiredConns,
			IdleConns: p.IdleConns, ConstructingConns: p.ConstructingConns, AcquireCount: p.AcquireCount,
			EmptyAcquireCount: p.EmptyAcquireCount, CanceledAcquireCount: p.CanceledAcquireCount,
			AcquireDurationSeconds: p.AcquireDuration.Seconds()}
	}
	for _, s := range h.Services {
		doc.Services = append(doc.Services, serviceDoc{Name: s.Name, LastRun: s.LastRun, LastDurationSeconds: s.LastDuration.Seconds(),
			Runs: s.Runs, LastError: s.LastError, LastErrorAt: s.LastErrorAt, Failing: s.Failing, Active: s.Active})
	}
	for _, w := range h.WaitingForHandler {
		doc.WaitingForHandler = append(doc.WaitingForHandler, waitingDoc{Namespace: w.Namespace, Callable: w.Callable,
			Reason: string(w.Reason), Steps: w.Steps, Since: w.Since})
	}
	return doc
}

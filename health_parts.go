package tasker

import (
	"time"

	"github.com/tasker-systems/tasker/store"
)

// HealthStatus sums up a Health report. The rules:
//
//   - HealthDown: the database does not answer a ping within HealthCheckTimeout. Nothing can
//     progress: no step is claimed or recorded.
//   - HealthDegraded: the database answers, but a maintenance service's last pass failed
//     (Health.Services), the queue could not be inspected (Health.Queue.Error: a broker that is
//     down, say), or a namespace's ready messages have waited longer than the queue wait limit
//     (HealthQueueWaitDefault, or WithQueueWaitLimit): nobody takes that work.
//   - HealthOK otherwise.
//
// The leader, the pool and the steps waiting for a handler are reported but do not change the
// status: an engine that does not run the maintenance services, a busy pool, or a step whose
// handler lives in another fleet are not faults of this engine.
type HealthStatus string

// The values of HealthStatus.
const (
	HealthOK       HealthStatus = "ok"
	HealthDegraded HealthStatus = "degraded"
	HealthDown     HealthStatus = "down"
)

// HealthCheckTimeout bounds each check of Health, whatever its context allows: the database ping
// (also PingDatabase's), the leader's read, the queue's inspection, and the confirmation of the
// steps waiting for a handler. A database or a broker that hangs, rather than refusing
// connections, is then reported promptly, and the report still comes.
const HealthCheckTimeout = 2 * time.Second

// HealthQueueWaitDefault is the default queue wait limit of Health: a namespace whose ready
// messages have waited longer (queue.Depth.MaxWait) makes the report HealthDegraded.
const HealthQueueWaitDefault = 5 * time.Minute

// DatabaseHealth is the store's answer to a ping.
type DatabaseHealth struct {
	// OK is true when the store answered; Error is why it did not ("" when it did).
	OK    bool
	Error string
	// Latency is how long the ping took, answered or not.
	Latency time.Duration
}

// QueueHealth is the backlog of the namespaces an engine serves.
type QueueHealth struct {
	// Inspected is false when the queue cannot tell its backlog (it does not implement
	// queue.Inspector); Namespaces is then empty.
	Inspected bool
	// Error is why the queue could not be inspected ("" when it was): the database or the broker
	// does not answer.
	Error string
	// Namespaces lists, sorted, the backlog of each namespace the workers serve, or would serve.
	Namespaces []NamespaceQueue
}

// NamespaceQueue is the backlog of one namespace's queue (queue.Depth).
type NamespaceQueue struct {
	Namespace string
	// Ready counts the messages that wait to be taken: sent, past any delay, and not being worked
	// on.
	Ready int
	// AgeKnown is false when the queue cannot tell its messages' ages (queue/rabbitmq); OldestAge
	// and MaxWait are then zero.
	AgeKnown bool
	// OldestAge is how long ago the oldest ready message was sent; MaxWait how long the ready
	// message that waits longest has been ready (since its delay ended or a reader gave it back).
	// Both are zero when none is ready.
	OldestAge, MaxWait time.Duration
}

// LeaderHealth is who holds the maintenance leadership (the election of the engines that run the
// maintenance services: the rescuer, the sweeper).
type LeaderHealth struct {
	// Held is true when an engine holds it with a lease that has not expired; LeaderID names that
	// engine (its Config.WorkerID), ElectedAt is when it took the leadership (renewals keep it),
	// and ExpiresAt when its lease ends unless renewed.
	Held                 bool
	LeaderID             string
	ElectedAt, ExpiresAt time.Time
	// This is true when this engine leads, by its own account (its workers run and won the
	// election): it may differ from LeaderID for the moment a leadership changes hands.
	This bool
	// Error is why the leadership could not be read ("" when it was).
	Error string
}

// WorkersHealth is the use of an engine's handler slots.
type WorkersHealth struct {
	// Running is true while RunWorkers' workers run: once it has started them (the schema
	// checked, the templates written to the database's registry, the fetch loops going) until
	// they have drained, so never while a start that can still fail is under way; Stopping once
	// its context has ended and it drains, taking no new work.
	Running, Stopping bool
	// Concurrency is the engine-wide cap (Config.Concurrency); Busy the slots held now by
	// handlers running or about to run (a fetch in progress holds the free slots for the moment
	// of its claim), and Free the rest (0 while the workers do not run).
	Concurrency, Busy, Free int
	// Namespaces lists, sorted, each namespace the workers serve, or would serve.
	Namespaces []NamespaceWorkers
}

// NamespaceWorkers is the slot use of one namespace.
type NamespaceWorkers struct {
	Namespace string
	// Cap is the namespace's own cap (Config.NamespaceConcurrency); 0 when it has none beyond
	// Concurrency.
	Cap int
	// Busy is the slots its handlers hold now; Free how many more it could take now, within its
	// own cap and the engine's free slots (0 while the workers do not run).
	Busy, Free int
}

// PoolStats is a snapshot of the store's connection pool (store.PoolStats).
type PoolStats = store.PoolStats

// ServiceHealth is what one maintenance service's passes on this engine last did.
type ServiceHealth struct {
	// Name is the service's ("rescuer", "sweeper", ...).
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
	// Active is true while this engine leads and runs the service; the figures of a service it
	// ran while it led stay, inactive, once another engine leads, and do not count in Status.
	Active bool
}

// HealthOption adjusts a Health report.
type HealthOption func(*healthOptions)

type healthOptions struct {
	queueWait time.Duration // <= 0: no limit
}

// WithQueueWaitLimit sets the queue wait limit (default HealthQueueWaitDefault): a namespace
// whose ready messages have waited longer makes the report HealthDegraded. 0 or less turns the
// rule off.
func WithQueueWaitLimit(d time.Duration) HealthOption {
	return func(o *healthOptions) { o.queueWait = d }
}

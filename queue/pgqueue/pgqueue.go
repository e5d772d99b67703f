// Package pgqueue implements queue.Queue on PostgreSQL with PGMQ's semantics and no extension: one
// plain table, {schema}.queue_messages, created by tasker's migrations.
//
// A message is visible when its vt (visibility time) is not in the future. Read claims the oldest
// visible messages with FOR UPDATE SKIP LOCKED, so concurrent readers never get the same message,
// and in the same statement moves their vt forward by the visibility timeout and counts the read.
// Ack deletes the rows. A message whose reader neither acks nor extends it becomes visible again when
// its timeout passes: delivery is at least once.
//
// SendTx inserts inside the caller's transaction and, in the same statement, calls pg_notify on a
// channel that belongs to the schema, with the queue name as payload. PostgreSQL delivers the
// notification only when the transaction commits, so a listener is woken exactly when the messages
// become readable. Listen holds one dedicated connection (application_name ListenApplicationName)
// made from the pool's configuration, re-establishes it after a drop, and polls as a fallback.
//
// Because LISTEN needs a session, the pool must reach PostgreSQL directly or through a pooler in
// session mode; behind a transaction-mode pooler only the fallback poll wakes consumers.
//
// The queue's SQL belongs to store/postgres, whose store owns a queue on its pool and schema
// (store.QueueOwner) and then runs the same statements inside its own transactions: Queue is
// store/postgres's Queue, and New its constructor.
package pgqueue

import (
	"time"

	"github.com/go-logr/logr"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/tasker/store/postgres"
)

// SchemaDefault is the schema tasker's tables live in unless WithSchema says otherwise.
const SchemaDefault = "tasker"

// PollIntervalDefault is how often Listen wakes consumers when no notification arrives. A poll
// itself sends nothing to the server; a consumer that reads on every wake-up costs one Read per
// listened queue per interval when idle.
const PollIntervalDefault = postgres.QueuePollIntervalDefault

// ReconnectDelayDefault is how long Listen waits before connecting again after its connection drops
// or a connection attempt fails.
const ReconnectDelayDefault = postgres.QueueReconnectDelayDefault

// ListenApplicationName is the application_name of Listen's dedicated connection, so that operators
// can find it in pg_stat_activity.
const ListenApplicationName = postgres.ListenApplicationName

// Queue is a queue.Queue on a PostgreSQL table. It is safe for concurrent use. Create it with New.
type Queue = postgres.Queue

// Option configures New.
type Option = postgres.QueueOption

// WithSchema selects the schema holding queue_messages (default SchemaDefault).
func WithSchema(name string) Option { return postgres.WithQueueSchema(name) }

// WithPollInterval sets Listen's fallback poll (default PollIntervalDefault). Values <= 0 keep the
// default.
func WithPollInterval(d time.Duration) Option { return postgres.WithPollInterval(d) }

// WithLogger sets where Listen reports connection trouble (default: discarded).
func WithLogger(l logr.Logger) Option { return postgres.WithQueueLogger(l) }

// withReconnectDelay shortens the reconnect delay in tests.
func withReconnectDelay(d time.Duration) Option { return postgres.WithReconnectDelay(d) }

// New returns a Queue that uses pool for every statement and pool's connection settings for
// Listen's dedicated connection.
func New(pool *pgxpool.Pool, opts ...Option) *Queue {
	return postgres.NewQueue(pool, append([]Option{WithSchema(SchemaDefault)}, opts...)...)
}

// channelName returns the NOTIFY channel for schema.
func channelName(schema string) string { return postgres.QueueChannel(schema) }

package postgres

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/go-logr/logr"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/tasker/internal/pgname"
	"github.com/tasker-systems/tasker/migrations"
	"github.com/tasker-systems/tasker/queue"
	"github.com/tasker-systems/tasker/store"
)

// This file is the SQL of the store's queue, {schema}.queue_messages, with PGMQ's semantics and no
// extension. queue/pgqueue is its constructor for users who run the queue on its own; the store
// runs the same statements inside its own transactions when the engine's queue is its own
// (store.QueueOwner).
//
// A message is visible when its vt (visibility time) is not in the future. Read claims the oldest
// visible messages with FOR UPDATE SKIP LOCKED, so concurrent readers never get the same message,
// and in the same statement moves their vt forward by the visibility timeout and counts the read.
// Ack deletes the rows. A message whose reader neither acks nor extends it becomes visible again
// when its timeout passes: delivery is at least once.
//
// A send inserts inside the caller's transaction and, in the same statement, calls pg_notify on a
// channel that belongs to the schema, with the queue name as payload. PostgreSQL delivers the
// notification only when the transaction commits, so a listener is woken exactly when the
// messages become readable.

// QueuePollIntervalDefault is how often Listen wakes consumers when no notification arrives. A
// poll itself sends nothing to the server; a consumer that reads on every wake-up costs one Read
// per listened queue per interval when idle.
const QueuePollIntervalDefault = 1 * time.Second

// QueueReconnectDelayDefault is how long Listen waits before connecting again after its connection
// drops or a connection attempt fails.
const QueueReconnectDelayDefault = 1 * time.Second

// ListenApplicationName is the application_name of Listen's dedicated connection, so that
// operators can find it in pg_stat_activity.
const ListenApplicationName = "tasker-listen"

// queueChannelPrefix starts the name of the queue's NOTIFY channel; the rest names the schema.
const queueChannelPrefix = "tasker_queue_"

// Queue is a queue.Queue on the table {schema}.queue_messages. It is safe for concurrent use.
// Create it with NewQueue (queue/pgqueue's New), or take the store's own with Store.Queue.
type Queue struct {
	pool           *pgxpool.Pool
	schema         string
	channel        string
	pollInterval   time.Duration
	reconnectDelay time.Duration
	log            logr.Logger

	sendNotifySQL string
	sendSQL       string
	sendHeldSQL   string
	readSQL       string
	ackSQL        string
	setVTSQL      string
	sendManySQL   string
}

var (
	_ queue.Queue       = (*Queue)(nil)
	_ queue.BatchSender = (*Queue)(nil)
	_ queue.BatchAcker  = (*Queue)(nil)
	_ queue.BatchHolder = (*Queue)(nil)
)

// QueueOption configures NewQueue.
type QueueOption func(*Queue)

// WithQueueSchema selects the schema holding queue_messages (default migrations.SchemaDefault).
func WithQueueSchema(name string) QueueOption { return func(q *Queue) { q.schema = name } }

// WithPollInterval sets Listen's fallback poll (default QueuePollIntervalDefault). Values <= 0
// keep the default.
func WithPollInterval(d time.Duration) QueueOption {
	return func(q *Queue) {
		if d > 0 {
			q.pollInterval = d
		}
	}
}

// WithReconnectDelay sets how long Listen waits before connecting again (default
// QueueReconnectDelayDefault). Values <= 0 keep the default.
func WithReconnectDelay(d time.Duration) QueueOption {
	return func(q *Queue) {
		if d > 0 {
			q.reconnectDelay = d
		}
	}
}

// WithQueueLogger sets where Listen reports connection trouble (default: discarded).
func WithQueueLogger(l logr.Logger) QueueOption { return func(q *Queue) { q.log = l } }

// NewQueue returns a Queue that uses pool for every statement and pool's connection settings for
// Listen's dedicated connection.
func NewQueue(pool *pgxpool.Pool, opts ...QueueOption) *Queue {
	q := &Queue{
		pool:           pool,
		schema:         migrations.SchemaDefault,
		pollInterval:   QueuePollIntervalDefault,
		reconnectDelay: QueueReconnectDelayDefault,
		log:            logr.Discard(),
	}
	for _, o := range opts {
		o(q)
	}
	q.channel = QueueChannel(q.schema)

	table := pgx.Identifier{q.schema, "queue_messages"}.Sanitize()
	// The payloads arrive as text[] and are cast one by one, so that each element is parsed as a
	// JSON document; WITH ORDINALITY keeps msg_id in the order of the slice.
	insert := `INSERT INTO ` + table + ` (queue_name, payload, vt)
	SELECT $1, p.doc::jsonb, now() + make_interval(secs => $3::float8)
	FROM unnest($2::text[]) WITH ORDINALITY AS p(doc, ord)
	ORDER BY p.ord`
	q.sendSQL = insert
	q.sendHeldSQL = `INSERT INTO ` + table + ` (queue_name, payload, vt, read_ct)
	VALUES ($1, $2::jsonb, now() + make_interval(secs => $3::float8), 1)
	RETURNING msg_id`
	// A data-modifying CTE always runs to completion, so this is one round trip for both; the
	// notification is queued by the transaction and delivered only at commit.
	q.sendNotifySQL = `WITH ins AS (` + insert + `) SELECT pg_notify($4, $1)`
	q.readSQL = `WITH claimed AS MATERIALIZED (
	SELECT msg_id, vt FROM ` + table + `
	WHERE queue_name = $1 AND vt <= now()
	ORDER BY vt, msg_id
	LIMIT $2
	FOR UPDATE SKIP LOCKED
)
UPDATE ` + table + ` AS m
SET vt = now() + make_interval(secs => $3::float8), read_ct = m.read_ct + 1
FROM claimed
WHERE m.msg_id = claimed.msg_id
RETURNING m.msg_id, m.payload, m.read_ct, m.enqueued_at, claimed.vt`
	q.ackSQL = `DELETE FROM ` + table + ` WHERE queue_name = $1 AND msg_id = ANY($2::bigint[])`
	q.setVTSQL = `UPDATE ` + table + ` SET vt = now() + make_interval(secs => $3::float8)
WHERE queue_name = $1 AND msg_id = $2`
	q.sendManySQL = `WITH m AS (
	SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]) WITH ORDINALITY AS m(queue_name, doc, delay_ms, ord)
), ins AS (
	INSERT INTO ` + table + ` (queue_name, payload, vt)
	SELECT queue_name, doc::jsonb, now() + delay_ms * interval '1 millisecond' FROM m ORDER BY ord
)
SELECT pg_notify($4, n.queue_name) FROM (SELECT DISTINCT queue_name FROM m WHERE delay_ms <= 0) n`
	return q
}

// QueueChannel returns the NOTIFY channel of the queue in schema (see pgname.Channel).
func QueueChannel(schema string) string { return pgname.Channel(queueChannelPrefix, schema) }

// Channel returns the NOTIFY channel the queue's sends notify and Listen listens on.
func (q *Queue) Channel() string { return q.channel }

// Schema returns the schema holding the queue's table.
func (q *Queue) Schema() string { return q.schema }

// Pool returns the pool the queue uses.
func (q *Queue) Pool() *pgxpool.Pool { return q.pool }

// Queue returns the store's own queue: a Queue on the store's pool and schema, whose logger is
// the store's. It is the engine's default queue (DefaultQueue), and the store owns it
// (OwnsQueue).
func (s *Store) Queue() *Queue { return s.queue }

// DefaultQueue returns the store's own queue (Queue): the engine's default when no queue is
// configured.
func (s *Store) DefaultQueue() queue.Queue { return s.queue }

var _ store.QueueOwner = (*Store)(nil)

// OwnsQueue implements store.QueueOwner: q is a Queue (queue/pgqueue's too) on the store's pool
// and schema, so that its messages are rows the store's transactions can write, read and delete.
func (s *Store) OwnsQueue(q queue.Queue) bool {
	pq, ok := q.(*Queue)
	return ok && pq != nil && pq.pool == s.pool && pq.schema == s.schema
}

// docs checks that every payload is valid JSON and returns them as text, for the statements.
func docs(queueName string, payloads [][]byte) ([]string, error) {
	out := make([]string, len(payloads))
	for i, p := range payloads {
		if !json.Valid(p) {
			return nil, fmt.Errorf("pgqueue: send to queue %q: payload %d is not valid JSON", queueName, i)
		}
		out[i] = string(p)
	}
	return out, nil
}

// SendTx implements queue.Queue. The payloads are checked with json.Valid before anything is sent,
// so that a bad payload does not abort the caller's transaction. Sends with delay > 0 notify
// nobody, since nothing is readable at commit; the fallback poll finds them.
func (q *Queue) SendTx(ctx context.Context, tx pgx.Tx, queueName string, payloads [][]byte, delay time.Duration) error {
	if queueName == "" {
		return errors.New("pgqueue: send: empty queue name")
	}
	if len(payloads) == 0 {
		return nil
	}
	ds, err := docs(queueName, payloads)
	if err != nil {
		return err
	}
	if delay > 0 {
		_, err = tx.Exec(ctx, q.sendSQL, queueName, ds, delay.Seconds())
	} else {
		_, err = tx.Exec(ctx, q.sendNotifySQL, queueName, ds, delay.Seconds(), q.channel) // <= 0: visible now, maybe dated back
	}
	if err != nil {
		var pgErr *pgconn.PgError
		// Valid JSON that jsonb still refuses, such as a string holding \u0000.
		if errors.As(err, &pgErr) && (pgErr.Code == "22P02" || pgErr.Code == "22P05") {
			return fmt.Errorf("pgqueue: send to queue %q: payload rejected as jsonb: %w", queueName, err)
		}
		return fmt.Errorf("pgqueue: send to queue %q: %w", queueName, err)
	}
	return nil
}

// QueueSend implements queue.BatchSender: the send (and its notification) joins the caller's
// batch, which must run inside a transaction to keep SendTx's guarantees.
func (q *Queue) QueueSend(b *pgx.Batch, queueName string, payloads [][]byte, delay time.Duration) error {
	if queueName == "" {
		return errors.New("pgqueue: send: empty queue name")
	}
	if len(payloads) == 0 {
		return nil
	}
	ds, err := docs(queueName, payloads)
	if err != nil {
		return err
	}
	wrap := func(tag pgconn.CommandTag) error { return nil }
	if delay > 0 {
		b.Queue(q.sendSQL, queueName, ds, delay.Seconds()).Exec(wrap)
	} else {
		b.Queue(q.sendNotifySQL, queueName, ds, delay.Seconds(), q.channel).Exec(wrap) // <= 0: visible now, maybe dated back
	}
	return nil
}

// QueueAck implements queue.BatchAcker: the ack runs in b, inside the caller's transaction.
func (q *Queue) QueueAck(b *pgx.Batch, queueName string, ids ...int64) error {
	if queueName == "" {
		return errors.New("pgqueue: ack: empty queue name")
	}
	if len(ids) == 0 {
		return nil
	}
	b.Queue(q.ackSQL, queueName, ids)
	return nil
}

// QueueSendHeld implements queue.BatchHolder: the message is inserted already read once and hidden
// for vt, with no notification.
func (q *Queue) QueueSendHeld(b *pgx.Batch, queueName string, payload []byte, vt time.Duration, id *int64) error {
	switch {
	case queueName == "":
		return errors.New("pgqueue: send held: empty queue name")
	case vt <= 0:
		return fmt.Errorf("pgqueue: send held: visibility timeout %s is not positive", vt)
	case !json.Valid(payload):
		return fmt.Errorf("pgqueue: send held to queue %q: the payload is not valid JSON", queueName)
	}
	b.Queue(q.sendHeldSQL, queueName, string(payload), vt.Seconds()).QueryRow(func(row pgx.Row) error {
		return row.Scan(id)
	})
	return nil
}

// queueSendMany queues into b the send of one message per row (queues[i], docs[i] as JSON,
// visible after delays[i] ms), in that order, of any queues, with one notification per queue that
// has a message visible at once: the store's outcomes send theirs in their own commit.
func (q *Queue) queueSendMany(b *pgx.Batch, queues, docs []string, delays []int64) {
	b.Queue(q.sendManySQL, queues, docs, delays, q.channel)
}

// Read implements queue.Queue in one statement.
func (q *Queue) Read(ctx context.Context, queueName string, n int, vt time.Duration) ([]queue.Message, error) {
	if n <= 0 {
		return nil, fmt.Errorf("pgqueue: read from queue %q: n must be positive, got %d", queueName, n)
	}
	if vt <= 0 {
		return nil, fmt.Errorf("pgqueue: read from queue %q: visibility timeout must be positive, got %v", queueName, vt)
	}
	rows, err := q.pool.Query(ctx, q.readSQL, queueName, n, vt.Seconds())
	if err != nil {
		return nil, fmt.Errorf("pgqueue: read from queue %q: %w", queueName, err)
	}
	msgs := make([]queue.Message, 0, n)
	vts := make(map[int64]time.Time, n)
	for rows.Next() {
		m := queue.Message{Queue: queueName}
		var readCount int32
		var vt time.Time
		if err := rows.Scan(&m.ID, &m.Payload, &readCount, &m.EnqueuedAt, &vt); err != nil {
			rows.Close()
			return nil, fmt.Errorf("pgqueue: read from queue %q: %w", queueName, err)
		}
		m.ReadCount = int(readCount)
		vts[m.ID] = vt
		msgs = append(msgs, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgqueue: read from queue %q: %w", queueName, err)
	}
	// RETURNING follows no ORDER BY; restore the claim order: visible earliest first, then sent first.
	slices.SortFunc(msgs, func(a, b queue.Message) int {
		if c := vts[a.ID].Compare(vts[b.ID]); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return msgs, nil
}

// Ack implements queue.Queue.
func (q *Queue) Ack(ctx context.Context, queueName string, ids ...int64) error {
	if len(ids) == 0 {
		return nil
	}
	if _, err := q.pool.Exec(ctx, q.ackSQL, queueName, ids); err != nil {
		return fmt.Errorf("pgqueue: ack on queue %q: %w", queueName, err)
	}
	return nil
}

// AckTx implements queue.Queue.
func (q *Queue) AckTx(ctx context.Context, tx pgx.Tx, queueName string, ids ...int64) error {
	if len(ids) == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, q.ackSQL, queueName, ids); err != nil {
		return fmt.Errorf("pgqueue: ack on queue %q: %w", queueName, err)
	}
	return nil
}

// RetryLater implements queue.Queue. A negative delay counts as 0.
func (q *Queue) RetryLater(ctx context.Context, queueName string, id int64, delay time.Duration) error {
	if err := q.setVT(ctx, queueName, id, max(delay, 0)); err != nil {
		return fmt.Errorf("pgqueue: retry message %d on queue %q later: %w", id, queueName, err)
	}
	return nil
}

// Extend implements queue.Queue. vt must be positive.
func (q *Queue) Extend(ctx context.Context, queueName string, id int64, vt time.Duration) error {
	if vt <= 0 {
		return fmt.Errorf("pgqueue: extend message %d on queue %q: visibility timeout must be positive, got %v", id, queueName, vt)
	}
	if err := q.setVT(ctx, queueName, id, vt); err != nil {
		return fmt.Errorf("pgqueue: extend message %d on queue %q: %w", id, queueName, err)
	}
	return nil
}

func (q *Queue) setVT(ctx context.Context, queueName string, id int64, d time.Duration) error {
	tag, err := q.pool.Exec(ctx, q.setVTSQL, queueName, id, d.Seconds())
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return queue.ErrNotFound
	}
	return nil
}

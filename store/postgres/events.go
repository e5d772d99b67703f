package postgres

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgxlisten"

	"github.com/tasker-systems/tasker/store"
)

var _ store.EventListener = (*Store)(nil)

// eventsChannelPrefix starts the name of the NOTIFY channel of ListenEvents; the rest names the
// schema.
const eventsChannelPrefix = "tasker_events_"

// EventsApplicationName is the application_name of ListenEvents' dedicated connection.
const EventsApplicationName = "tasker-events"

// eventsReconnectDelay is how long ListenEvents waits before connecting again.
const eventsReconnectDelay = time.Second

// The payloads of the events channel: a prefix and the task's ID.
const (
	eventCreated   = "created:"
	eventCancelled = "cancelled:"
)

// notify queues, inside tx, the announcement of an event, which PostgreSQL delivers to every
// ListenEvents when, and only if, tx commits.
func (s *Store) notify(ctx context.Context, tx pgx.Tx, prefix string, taskID uuid.UUID) error {
	_, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, s.eventsChannel, prefix+taskID.String())
	return err
}

// queueNotify queues notify's announcement into b, to run in its transaction.
func (s *Store) queueNotify(b *pgx.Batch, prefix string, taskID uuid.UUID) {
	b.Queue(`SELECT pg_notify($1, $2)`, s.eventsChannel, prefix+taskID.String())
}

// ListenEvents implements store.EventListener: CreateTask with AnnounceCommit and CancelTask send a
// NOTIFY on the schema's events channel, which PostgreSQL delivers when, and only if, their
// transaction commits. It holds one dedicated connection, made from the pool's configuration (not
// taken from the pool), connects again after a second when it drops, and logs connection trouble
// through WithLogger. Announcements sent while it is disconnected are lost.
func (s *Store) ListenEvents(ctx context.Context, handle func(store.Event)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	var conns []*pgx.Conn
	l := &pgxlisten.Listener{
		Connect: func(ctx context.Context) (*pgx.Conn, error) {
			cfg := s.pool.Config().ConnConfig.Copy()
			if cfg.RuntimeParams == nil {
				cfg.RuntimeParams = map[string]string{}
			}
			cfg.RuntimeParams["application_name"] = EventsApplicationName
			conn, err := pgx.ConnectConfig(ctx, cfg)
			if err != nil {
				return nil, err
			}
			mu.Lock()
			// Forget the connections of earlier attempts whose resources are released.
			conns = slices.DeleteFunc(conns, func(c *pgx.Conn) bool {
				select {
				case <-c.PgConn().CleanupDone():
					return true
				default:
					return false
				}
			})
			conns = append(conns, conn)
			mu.Unlock()
			return conn, nil
		},
		LogError: func(ctx context.Context, err error) {
			if ctx.Err() == nil {
				s.log.Error(err, "event listener: connection trouble, will reconnect", "channel", s.eventsChannel)
			}
		},
		ReconnectDelay: eventsReconnectDelay,
	}
	l.Handle(s.eventsChannel, &eventHandler{handle: handle})
	_ = l.Listen(ctx) // returns only when ctx ends
	// A connection interrupted by ctx closes asynchronously; wait until it has.
	mu.Lock()
	defer mu.Unlock()
	for _, c := range conns {
		<-c.PgConn().CleanupDone()
	}
	return nil
}

// eventHandler turns the events channel's notifications into store.Events; as a
// pgxlisten.BacklogHandler it reports EventListening once LISTEN is in place on a connection.
type eventHandler struct {
	handle func(store.Event)
}

func (h *eventHandler) HandleBacklog(context.Context, string, *pgx.Conn) error {
	h.handle(store.Event{Kind: store.EventListening})
	return nil
}

func (h *eventHandler) HandleNotification(_ context.Context, n *pgconn.Notification, _ *pgx.Conn) error {
	var ev store.Event
	var rest string
	switch {
	case strings.HasPrefix(n.Payload, eventCreated):
		ev.Kind, rest = store.EventTaskCreated, n.Payload[len(eventCreated):]
	case strings.HasPrefix(n.Payload, eventCancelled):
		ev.Kind, rest = store.EventTaskCancelled, n.Payload[len(eventCancelled):]
	default:
		return nil
	}
	id, err := uuid.Parse(rest)
	if err != nil {
		return nil
	}
	ev.TaskID = id
	h.handle(ev)
	return nil
}

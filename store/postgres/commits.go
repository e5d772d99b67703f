package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgxlisten"

	"github.com/tasker-systems/tasker/store"
)

var _ store.CommitListener = (*Store)(nil)

// commitChannelPrefix starts the name of the NOTIFY channel of ListenCommits; the rest names the
// schema.
const commitChannelPrefix = "tasker_commit_"

// CommitsApplicationName is the application_name of ListenCommits' dedicated connection.
const CommitsApplicationName = "tasker-commits"

// commitsReconnectDelay is how long ListenCommits waits before connecting again.
const commitsReconnectDelay = time.Second

// channelName returns prefix+schema, or prefix and a hash of schema when that would pass
// PostgreSQL's 63-byte identifier limit.
func channelName(prefix, schema string) string {
	if len(prefix)+len(schema) <= 63 {
		return prefix + schema
	}
	sum := sha256.Sum256([]byte(schema))
	return prefix + hex.EncodeToString(sum[:12])
}

// ListenCommits implements store.CommitListener: CreateTask with AnnounceCommit sends a NOTIFY on
// the schema's channel, which PostgreSQL delivers when, and only if, the transaction commits. It
// holds one dedicated connection, made from the pool's configuration (not taken from the pool),
// connects again after a second when it drops, and logs connection trouble through WithLogger.
// Announcements sent while it is disconnected are lost.
func (s *Store) ListenCommits(ctx context.Context, announced func(taskID uuid.UUID)) error {
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
			cfg.RuntimeParams["application_name"] = CommitsApplicationName
			conn, err := pgx.ConnectConfig(ctx, cfg)
			if err != nil {
				return nil, err
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			return conn, nil
		},
		LogError: func(ctx context.Context, err error) {
			if ctx.Err() == nil {
				s.log.Error(err, "commit listener: connection trouble, will reconnect", "channel", s.commitChannel)
			}
		},
		ReconnectDelay: commitsReconnectDelay,
	}
	l.Handle(s.commitChannel, pgxlisten.HandlerFunc(func(_ context.Context, n *pgconn.Notification, _ *pgx.Conn) error {
		if id, err := uuid.Parse(n.Payload); err == nil {
			announced(id)
		}
		return nil
	}))
	_ = l.Listen(ctx) // returns only when ctx ends
	// A connection interrupted by ctx closes asynchronously; wait until it has.
	mu.Lock()
	defer mu.Unlock()
	for _, c := range conns {
		<-c.PgConn().CleanupDone()
	}
	return nil
}

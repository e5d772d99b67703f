package main

import (
	"context"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
)

// stmtCounter is a pgx tracer that counts the statements a system sends (each query, each
// statement of a batch, each COPY; BEGIN and COMMIT included; the pool's liveness pings) and the
// round trips (a batch is one).
// It counts on the client, so it needs no extension, has no lag and ignores other clients.
type stmtCounter struct {
	stmts, trips atomic.Int64
	prof         *sqlProfile // nil unless -sqlprofile
}

func (c *stmtCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	c.stmts.Add(1)
	c.trips.Add(1)
	if c.prof != nil {
		return c.prof.start(ctx, sqlLabel(d.SQL))
	}
	return ctx
}

func (c *stmtCounter) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryEndData) {
	if c.prof != nil {
		c.prof.end(ctx)
	}
}

func (c *stmtCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	c.trips.Add(1)
	if c.prof != nil {
		return c.prof.start(ctx, "batch")
	}
	return ctx
}

func (c *stmtCounter) TraceBatchQuery(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	c.stmts.Add(1)
	if c.prof != nil {
		c.prof.batchQuery(ctx, d.SQL)
	}
}

func (c *stmtCounter) TraceBatchEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchEndData) {
	if c.prof != nil {
		c.prof.end(ctx)
	}
}

func (c *stmtCounter) TraceCopyFromStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceCopyFromStartData) context.Context {
	c.stmts.Add(1)
	c.trips.Add(1)
	if c.prof != nil {
		return c.prof.start(ctx, "COPY")
	}
	return ctx
}

func (c *stmtCounter) TraceCopyFromEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceCopyFromEndData) {
	if c.prof != nil {
		c.prof.end(ctx)
	}
}

// counts are a stmtCounter's counts at one moment, or the difference of two.
type counts struct{ stmts, trips int64 }

// snapshot returns the counts so far.
func (c *stmtCounter) snapshot() counts { return counts{c.stmts.Load(), c.trips.Load()} }

// since returns the counts since an earlier snapshot.
func (c *stmtCounter) since(s counts) counts {
	n := c.snapshot()
	return counts{n.stmts - s.stmts, n.trips - s.trips}
}

package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// dbCPU sums the CPU time (user and system) that the server processes of the bench's database
// (other than the one asking) have used so far, read from /proc (the server runs on this machine). Unlike wall time, it hardly
// moves with other people's load on the machine, so it compares two versions of the hot path run
// at different moments. It returns 0 when /proc cannot be read.
func (b *bench) dbCPU(ctx context.Context) time.Duration {
	var pids []int32
	err := b.withConn(ctx, "", func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`)
		if err != nil {
			return err
		}
		pids, err = pgx.CollectRows(rows, pgx.RowTo[int32])
		return err
	})
	if err != nil {
		return 0
	}
	var ticks int64
	for _, pid := range pids {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(raw)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // fields from the 3rd on
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64) // utime, field 14
		k, _ := strconv.ParseInt(f[12], 10, 64) // stime, field 15
		ticks += u + k
	}
	return time.Duration(ticks) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

// tableStats prints, when BENCH_TABLESTATS is set, the scans and row writes of the rig's tables
// so far (pg_stat_user_tables): a statement whose plan reads a whole table on the hot path shows
// as seq_tup_read growing with the table. The figures are exact, whatever the machine's load.
func (r *taskerRig) tableStats(ctx context.Context, label string) {
	if os.Getenv("BENCH_TABLESTATS") == "" || r.schema == "" {
		return
	}
	_ = r.b.withConn(ctx, "", func(c *pgx.Conn) error {
		time.Sleep(600 * time.Millisecond) // backends report their counts at most every 500 ms
		rows, err := c.Query(ctx, `SELECT relname, seq_scan, seq_tup_read, coalesce(idx_scan, 0), n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del
			  FROM pg_stat_user_tables WHERE schemaname = $1 ORDER BY seq_tup_read DESC`, r.schema)
		if err != nil {
			return err
		}
		defer rows.Close()
		fmt.Fprintf(os.Stderr, "table stats of %s (%s): table seq_scan seq_tup_read idx_scan ins upd hot_upd del\n", r.schema, label)
		for rows.Next() {
			var name string
			var a, b, c2, d, e, f, g int64
			if err := rows.Scan(&name, &a, &b, &c2, &d, &e, &f, &g); err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "  %-20s %8d %10d %8d %8d %8d %8d %8d\n", name, a, b, c2, d, e, f, g)
		}
		return rows.Err()
	})
}

// selfCPU is the CPU time (user and system) the bench process has used so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// logCPU logs the server's and the bench process's CPU time since cpu0 and self0, and the WAL
// written since wal0, in all and per unit (n of them).
func (b *bench) logCPU(ctx context.Context, label string, cpu0, self0 time.Duration, wal0 int64, n int, unit string) {
	cpu, self, wal := b.dbCPU(ctx)-cpu0, selfCPU()-self0, b.walBytes(ctx)-wal0
	if cpu <= 0 || n == 0 {
		return
	}
	b.logf("  %s: server CPU %s, %.0f µs per %s; bench process CPU %s, %.0f µs per %s; WAL %.0f bytes per %s", label,
		cpu.Round(time.Millisecond), float64(cpu.Microseconds())/float64(n), unit,
		self.Round(time.Millisecond), float64(self.Microseconds())/float64(n), unit, float64(wal)/float64(n), unit)
}

// walBytes is the server's WAL insert position in bytes: the difference of two readings is the WAL
// the bench's statements wrote in between (the whole server's, so other databases' writes count
// too). It returns 0 when it cannot be read.
func (b *bench) walBytes(ctx context.Context) int64 {
	var n int64
	if err := b.withConn(ctx, "", func(c *pgx.Conn) error {
		return c.QueryRow(ctx, `SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::int8`).Scan(&n)
	}); err != nil {
		return 0
	}
	return n
}

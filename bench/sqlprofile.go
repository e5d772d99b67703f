package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// sqlProfile accumulates, per statement (or per batch), how often a system sent it and how long
// the client waited for it (server time plus round trip). -sqlprofile turns it on; it profiles
// the database side of the hot path, which a Go CPU profile does not see.
type sqlProfile struct {
	mu    sync.Mutex
	stats map[string]*sqlStat
}

type sqlStat struct {
	n     int64
	total time.Duration
	max   time.Duration
}

type sqlStartKey struct{}

type sqlStart struct {
	t     time.Time
	label string
	batch []string
}

func newSQLProfile() *sqlProfile { return &sqlProfile{stats: map[string]*sqlStat{}} }

// sqlLabel shortens a statement to its first 90 characters, white space collapsed.
func sqlLabel(sql string) string { return truncate(strings.Join(strings.Fields(sql), " "), 90) }

// truncate cuts s to n runes, marking the cut.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}

func (p *sqlProfile) start(ctx context.Context, label string) context.Context {
	return context.WithValue(ctx, sqlStartKey{}, &sqlStart{t: time.Now(), label: label})
}

func (p *sqlProfile) batchQuery(ctx context.Context, sql string) {
	if s, ok := ctx.Value(sqlStartKey{}).(*sqlStart); ok {
		s.batch = append(s.batch, sqlLabel(sql))
	}
}

func (p *sqlProfile) end(ctx context.Context) {
	s, ok := ctx.Value(sqlStartKey{}).(*sqlStart)
	if !ok {
		return
	}
	d := time.Since(s.t)
	label := s.label
	if s.batch != nil {
		label = truncate(fmt.Sprintf("batch of %d: %s", len(s.batch), strings.Join(s.batch, " | ")), 200)
	}
	tl.add(s.t, label)
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.stats[label]
	if st == nil {
		st = &sqlStat{}
		p.stats[label] = st
	}
	st.n++
	st.total += d
	st.max = max(st.max, d)
}

// print writes the statements by total time, with the count per unit of work.
func (p *sqlProfile) print(w io.Writer, units int, unit string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	type row struct {
		label string
		*sqlStat
	}
	var rows []row
	var total time.Duration
	var n int64
	for k, v := range p.stats {
		rows = append(rows, row{k, v})
		total += v.total
		n += v.n
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].total > rows[j].total })
	fmt.Fprintf(w, "\nSQL profile: %d round trips, %s waited in all", n, total.Round(time.Millisecond))
	if units > 0 {
		fmt.Fprintf(w, " (%.1f round trips and %s per %s over %d %ss)", float64(n)/float64(units), (total / time.Duration(units)).Round(time.Microsecond), unit, units, unit)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "share\tcount\tper %s\tmean\tmax\tstatement\n", unit)
	for _, r := range rows {
		per := ""
		if units > 0 {
			per = fmt.Sprintf("%.2f", float64(r.n)/float64(units))
		}
		fmt.Fprintf(tw, "%.1f%%\t%d\t%s\t%s\t%s\t%s\n", 100*float64(r.total)/float64(max(total, 1)), r.n, per,
			(r.total / time.Duration(r.n)).Round(time.Microsecond), r.max.Round(time.Microsecond), r.label)
	}
	tw.Flush()
}

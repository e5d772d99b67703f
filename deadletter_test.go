package tasker_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/store"
)

// eachStore runs f as a parallel subtest on PostgreSQL (with its own queue) and on memory: the
// dead-letter queue lives in the store, so the broker adds nothing to test.
func eachStore(t *testing.T, f func(t *testing.T, setup setupFunc)) {
	t.Helper()
	for _, be := range []string{backendPostgres, backendMemory} {
		t.Run(be, func(t *testing.T) {
			t.Parallel()
			f(t, func(t testing.TB, opts ...setupOpt) *bundle { return setupOn(t, be, opts...) })
		})
	}
}

// dlqTemplate is a one-step template in namespace ns.
func dlqTemplate(ns string) string {
	return `
name: dlq
namespace_name: ` + ns + `
version: 1.0.0
steps:
  - {name: a, handler: {callable: dlq_noop}}
`
}

// dlqTask creates a task of dlqTemplate(ns) (registered by the caller) with the given priority.
func dlqTask(t testing.TB, b *bundle, ns string, priority int) uuid.UUID {
	t.Helper()
	task, err := b.engine.CreateTask(context.Background(), tasker.TaskRequest{Namespace: ns, Name: "dlq",
		Context: map[string]any{"n": uuid.NewString()}, Priority: priority})
	require.NoError(t, err)
	return task.ID
}

// addEntry writes an entry with the given reason through the store, as the staleness detector and
// the retries-exhausted writer do; the root API writes only manual ones.
func addEntry(t testing.TB, b *bundle, taskID uuid.UUID, reason store.DeadLetterReason) *tasker.DeadLetter {
	t.Helper()
	_, err := b.st.AddDeadLetter(context.Background(), store.AddDeadLetterParams{TaskID: taskID,
		Entry: store.NewDeadLetter{ID: uuid.Must(uuid.NewV7()), Reason: reason}})
	require.NoError(t, err)
	d, err := b.engine.TaskDeadLetter(context.Background(), taskID)
	require.NoError(t, err)
	require.Equal(t, reason, d.Reason)
	return d
}

func entryIDs(ds []tasker.DeadLetter) []uuid.UUID {
	out := make([]uuid.UUID, len(ds))
	for i, d := range ds {
		out[i] = d.ID
	}
	return out
}

// newestFirst returns the IDs of the entries that keep passes, newest first.
func newestFirst(all []*tasker.DeadLetter, keep func(d *tasker.DeadLetter) bool) []uuid.UUID {
	var out []uuid.UUID
	for i := len(all) - 1; i >= 0; i-- {
		if keep(all[i]) {
			out = append(out, all[i].ID)
		}
	}
	return out
}

// pageAll lists every entry matching f, page by page, and returns them with the page sizes.
func pageAll(t *testing.T, e *tasker.Engine, f tasker.DeadLetterFilter) (ids []uuid.UUID, sizes []int) {
	t.Helper()
	for {
		page, err := e.DeadLetters(context.Background(), f)
		require.NoError(t, err)
		ids = append(ids, entryIDs(page.Entries)...)
		sizes = append(sizes, len(page.Entries))
		if page.NextCursor == "" {
			return ids, sizes
		}
		require.Len(t, page.Entries, f.Limit, "only the last page is short")
		f.Cursor = page.NextCursor
		require.Less(t, len(sizes), 100, "the listing does not end")
	}
}

func TestDeadLetterListFiltersAndPaging(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, setup setupFunc) {
		ctx := context.Background()
		b := setup(t)
		b.register(t, dlqTemplate("dlq_a"))
		b.register(t, dlqTemplate("dlq_b"))
		type spec struct {
			ns     string
			reason store.DeadLetterReason
		}
		specs := []spec{{"dlq_a", tasker.ReasonManual}, {"dlq_a", tasker.ReasonMaxRetriesExceeded}, {"dlq_a", tasker.ReasonStalenessTimeout},
			{"dlq_a", tasker.ReasonManual}, {"dlq_b", tasker.ReasonPermanentFailure}, {"dlq_b", tasker.ReasonManual}, {"dlq_b", tasker.ReasonMaxRetriesExceeded}}
		var all []*tasker.DeadLetter // in writing order
		for _, s := range specs {
			id := dlqTask(t, b, s.ns, 0)
			if s.reason == tasker.ReasonManual {
				d, err := b.engine.DeadLetterTask(ctx, id, tasker.DeadLetterRequest{By: "alice", Reason: "looks wrong"})
				require.NoError(t, err)
				all = append(all, d)
			} else {
				all = append(all, addEntry(t, b, id, s.reason))
			}
		}
		for i, st := range map[int]tasker.DeadLetterStatus{3: tasker.DeadLetterCancelled, 5: tasker.DeadLetterPermanentlyFailed} {
			d, err := b.engine.ResolveDeadLetter(ctx, all[i].ID, tasker.DeadLetterResolution{Status: st, By: "bob"})
			require.NoError(t, err)
			all[i] = d
		}

		everything := newestFirst(all, func(*tasker.DeadLetter) bool { return true })
		since := all[4].CreatedAt
		for _, c := range []struct {
			name string
			f    tasker.DeadLetterFilter
			keep func(d *tasker.DeadLetter) bool
		}{
			{"all", tasker.DeadLetterFilter{}, func(*tasker.DeadLetter) bool { return true }},
			{"pending", tasker.DeadLetterFilter{Status: tasker.DeadLetterPending}, func(d *tasker.DeadLetter) bool { return d.Status == tasker.DeadLetterPending }},
			{"cancelled", tasker.DeadLetterFilter{Status: tasker.DeadLetterCancelled}, func(d *tasker.DeadLetter) bool { return d.Status == tasker.DeadLetterCancelled }},
			{"manual", tasker.DeadLetterFilter{Reason: tasker.ReasonManual}, func(d *tasker.DeadLetter) bool { return d.Reason == tasker.ReasonManual }},
			{"namespace", tasker.DeadLetterFilter{Namespace: "dlq_b"}, func(d *tasker.DeadLetter) bool { return d.Namespace == "dlq_b" }},
			{"since", tasker.DeadLetterFilter{Since: since}, func(d *tasker.DeadLetter) bool { return !d.CreatedAt.Before(since) }},
			{"combined", tasker.DeadLetterFilter{Namespace: "dlq_a", Reason: tasker.ReasonManual, Status: tasker.DeadLetterPending},
				func(d *tasker.DeadLetter) bool {
					return d.Namespace == "dlq_a" && d.Reason == tasker.ReasonManual && d.Status == tasker.DeadLetterPending
				}},
		} {
			page, err := b.engine.DeadLetters(ctx, c.f)
			require.NoError(t, err, c.name)
			want := newestFirst(all, c.keep)
			require.NotEmpty(t, want, c.name)
			require.Equal(t, want, entryIDs(page.Entries), c.name)
			require.Empty(t, page.NextCursor, c.name)
		}
		page, err := b.engine.DeadLetters(ctx, tasker.DeadLetterFilter{})
		require.NoError(t, err)
		got := page.Entries[len(page.Entries)-1] // the oldest: specs[0]
		require.Equal(t, all[0].TaskID, got.TaskID)
		require.Equal(t, "dlq_a", got.Namespace)
		require.Equal(t, "dlq", got.TaskName)
		require.Equal(t, tasker.DeadLetterPending, got.Status)
		require.Equal(t, got.TaskState, got.OriginalState, "left as it was")
		snap, err := got.DecodeSnapshot()
		require.NoError(t, err)
		require.Equal(t, all[0].TaskID, snap.Task.ID)
		require.Len(t, snap.Steps, 1)
		require.Equal(t, map[string]any{"operator": "alice", "reason": "looks wrong"}, snap.Detail)

		// Keyset paging: every entry once, in order, whatever the page size, with and without a
		// filter; a page exactly as long as what is left is the last.
		for _, limit := range []int{1, 2, 3, 7} {
			ids, sizes := pageAll(t, b.engine, tasker.DeadLetterFilter{Limit: limit})
			require.Equal(t, everything, ids, "limit %d", limit)
			require.Len(t, sizes, (len(everything)+limit-1)/limit, "limit %d: %v", limit, sizes)
		}
		ids, sizes := pageAll(t, b.engine, tasker.DeadLetterFilter{Namespace: "dlq_a", Limit: 3})
		require.Equal(t, newestFirst(all, func(d *tasker.DeadLetter) bool { return d.Namespace == "dlq_a" }), ids)
		require.Equal(t, []int{3, 1}, sizes)

		// An entry written while a listing pages is newer than its cursor: the pages that follow
		// neither repeat nor skip anything.
		first, err := b.engine.DeadLetters(ctx, tasker.DeadLetterFilter{Limit: 3})
		require.NoError(t, err)
		fresh := addEntry(t, b, dlqTask(t, b, "dlq_a", 0), tasker.ReasonStalenessTimeout)
		rest, _ := pageAll(t, b.engine, tasker.DeadLetterFilter{Limit: 3, Cursor: first.NextCursor})
		require.Equal(t, everything, append(entryIDs(first.Entries), rest...))
		page, err = b.engine.DeadLetters(ctx, tasker.DeadLetterFilter{Limit: 1})
		require.NoError(t, err)
		require.Equal(t, fresh.ID, page.Entries[0].ID, "a new listing starts with it")

		// One entry by ID, and a task's entry.
		one, err := b.engine.DeadLetter(ctx, all[2].ID)
		require.NoError(t, err)
		require.Equal(t, all[2].ID, one.ID)
		require.Equal(t, tasker.ReasonStalenessTimeout, one.Reason)
		_, err = b.engine.DeadLetter(ctx, uuid.Must(uuid.NewV7()))
		require.ErrorIs(t, err, tasker.ErrDeadLetterNotFound)
		d, err := b.engine.TaskDeadLetter(ctx, all[3].TaskID)
		require.NoError(t, err)
		require.Equal(t, tasker.DeadLetterCancelled, d.Status, "a task whose entries are all resolved gives its newest")
		_, err = b.engine.TaskDeadLetter(ctx, uuid.New())
		require.ErrorIs(t, err, tasker.ErrTaskNotFound)
		_, err = b.engine.TaskDeadLetter(ctx, dlqTask(t, b, "dlq_a", 0))
		require.ErrorIs(t, err, tasker.ErrDeadLetterNotFound)

		// Arguments refused before anything is read.
		for _, f := range []tasker.DeadLetterFilter{{Status: "stuck"}, {Reason: "bored"}, {Limit: -1}, {Cursor: "page-2"}, {Cursor: uuid.Nil.String()}} {
			_, err := b.engine.DeadLetters(ctx, f)
			var re *tasker.DeadLetterRequestError
			require.ErrorAs(t, err, &re, "%+v", f)
			require.ErrorIs(t, err, tasker.ErrInvalidDeadLetterRequest)
		}
	})
}

func TestDeadLetterResolution(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, setup setupFunc) {
		ctx := context.Background()
		b := setup(t)
		b.register(t, dlqTemplate("dlq_a"))
		entry := addEntry(t, b, dlqTask(t, b, "dlq_a", 0), tasker.ReasonMaxRetriesExceeded)
		unchanged := func(want *tasker.DeadLetter) {
			t.Helper()
			got, err := b.engine.DeadLetter(ctx, want.ID)
			require.NoError(t, err)
			require.Equal(t, want.Status, got.Status)
			require.Equal(t, want.Notes, got.Notes)
			require.Equal(t, want.ResolvedBy, got.ResolvedBy)
			if want.ResolvedAt == nil {
				require.Nil(t, got.ResolvedAt)
			} else {
				require.True(t, want.ResolvedAt.Equal(*got.ResolvedAt))
			}
		}

		// Moves that are no resolution are refused before the entry is read.
		for _, to := range []tasker.DeadLetterStatus{tasker.DeadLetterPending, "reopened", ""} {
			_, err := b.engine.ResolveDeadLetter(ctx, entry.ID, tasker.DeadLetterResolution{Status: to, By: "alice"})
			var re *tasker.DeadLetterResolutionError
			require.ErrorAs(t, err, &re, "to %q", to)
			require.ErrorIs(t, err, tasker.ErrIllegalResolution)
			require.ErrorIs(t, err, tasker.ErrNotAllowed)
			require.Equal(t, entry.ID, re.EntryID)
			require.Equal(t, to, re.To)
			unchanged(entry)
		}
		// Arguments the boundary refuses.
		for _, c := range []struct {
			r    tasker.DeadLetterResolution
			want error
		}{
			{tasker.DeadLetterResolution{Status: tasker.DeadLetterCancelled}, tasker.ErrInvalidDeadLetterRequest},
			{tasker.DeadLetterResolution{Status: tasker.DeadLetterCancelled, By: "alice", Notes: strings.Repeat("x", tasker.MaxOperatorTextBytes+1)}, tasker.ErrInvalidValue},
			{tasker.DeadLetterResolution{Status: tasker.DeadLetterCancelled, By: "alice", Notes: "nul \x00"}, tasker.ErrInvalidValue},
			{tasker.DeadLetterResolution{Status: tasker.DeadLetterCancelled, By: "\xff"}, tasker.ErrInvalidValue},
		} {
			_, err := b.engine.ResolveDeadLetter(ctx, entry.ID, c.r)
			require.ErrorIs(t, err, c.want)
			unchanged(entry)
		}
		_, err := b.engine.ResolveDeadLetter(ctx, uuid.Must(uuid.NewV7()), tasker.DeadLetterResolution{Status: tasker.DeadLetterCancelled, By: "alice"})
		require.ErrorIs(t, err, tasker.ErrDeadLetterNotFound)

		// The resolution, once.
		r, err := b.engine.ResolveDeadLetter(ctx, entry.ID, tasker.DeadLetterResolution{Status: tasker.DeadLetterManuallyResolved,
			Notes: "upstream fixed; step retried", By: "alice"})
		require.NoError(t, err)
		require.Equal(t, tasker.DeadLetterManuallyResolved, r.Status)
		require.Equal(t, "upstream fixed; step retried", r.Notes)
		require.Equal(t, "alice", r.ResolvedBy)
		require.NotNil(t, r.ResolvedAt)
		require.False(t, r.ResolvedAt.Before(r.CreatedAt))
		unchanged(r)
		for _, to := range []tasker.DeadLetterStatus{tasker.DeadLetterCancelled, tasker.DeadLetterManuallyResolved, tasker.DeadLetterPending} {
			_, err = b.engine.ResolveDeadLetter(ctx, entry.ID, tasker.DeadLetterResolution{Status: to, Notes: "again", By: "bob"})
			var re *tasker.DeadLetterResolutionError
			require.ErrorAs(t, err, &re)
			require.ErrorIs(t, err, tasker.ErrIllegalResolution)
			if to != tasker.DeadLetterPending {
				require.Equal(t, tasker.DeadLetterManuallyResolved, re.From, "the entry's status is reported")
			}
			unchanged(r)
		}

		// Operators racing: one resolution wins, the others are refused.
		race := addEntry(t, b, dlqTask(t, b, "dlq_a", 0), tasker.ReasonManual)
		var wg sync.WaitGroup
		errs := make([]error, 6)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = b.engine.ResolveDeadLetter(ctx, race.ID, tasker.DeadLetterResolution{
					Status: []tasker.DeadLetterStatus{tasker.DeadLetterCancelled, tasker.DeadLetterPermanentlyFailed}[i%2], By: sprintf("op%d", i)})
			}()
		}
		wg.Wait()
		won := 0
		for _, err := range errs {
			if err == nil {
				won++
				continue
			}
			require.ErrorIs(t, err, tasker.ErrIllegalResolution)
		}
		require.Equal(t, 1, won)
	})
}

func TestDeadLetterStats(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, setup setupFunc) {
		ctx := context.Background()
		b := setup(t)
		b.register(t, dlqTemplate("dlq_a"))
		b.register(t, dlqTemplate("dlq_b"))
		var manual, retries []*tasker.DeadLetter
		for range 3 {
			manual = append(manual, addEntry(t, b, dlqTask(t, b, "dlq_a", 0), tasker.ReasonManual))
		}
		for range 2 {
			retries = append(retries, addEntry(t, b, dlqTask(t, b, "dlq_a", 0), tasker.ReasonMaxRetriesExceeded))
		}
		stale := addEntry(t, b, dlqTask(t, b, "dlq_b", 0), tasker.ReasonStalenessTimeout)
		time.Sleep(20 * time.Millisecond) // a time to resolution well above the clock's resolution
		resolve := func(d *tasker.DeadLetter, st tasker.DeadLetterStatus) {
			_, err := b.engine.ResolveDeadLetter(ctx, d.ID, tasker.DeadLetterResolution{Status: st, By: "alice"})
			require.NoError(t, err)
		}
		resolve(manual[0], tasker.DeadLetterCancelled)
		resolve(manual[1], tasker.DeadLetterManuallyResolved)
		resolve(retries[0], tasker.DeadLetterPermanentlyFailed)

		stats, err := b.engine.DeadLetterStats(ctx, tasker.DeadLetterStatsFilter{})
		require.NoError(t, err)
		by := map[tasker.DeadLetterReason]tasker.DeadLetterStats{}
		var reasons []tasker.DeadLetterReason
		for _, s := range stats {
			by[s.Reason] = s
			reasons = append(reasons, s.Reason)
		}
		require.Equal(t, []tasker.DeadLetterReason{tasker.ReasonManual, tasker.ReasonMaxRetriesExceeded, tasker.ReasonStalenessTimeout}, reasons, "in reason order")
		m := by[tasker.ReasonManual]
		require.Equal(t, 3, m.Total)
		require.Equal(t, map[tasker.DeadLetterStatus]int{tasker.DeadLetterPending: 1, tasker.DeadLetterCancelled: 1, tasker.DeadLetterManuallyResolved: 1}, m.ByStatus)
		require.GreaterOrEqual(t, m.MeanTimeToResolution, 20*time.Millisecond)
		require.Less(t, m.MeanTimeToResolution, time.Minute)
		r := by[tasker.ReasonMaxRetriesExceeded]
		require.Equal(t, 2, r.Total)
		require.Equal(t, map[tasker.DeadLetterStatus]int{tasker.DeadLetterPending: 1, tasker.DeadLetterPermanentlyFailed: 1}, r.ByStatus)
		require.Greater(t, r.MeanTimeToResolution, time.Duration(0))
		s := by[tasker.ReasonStalenessTimeout]
		require.Equal(t, 1, s.Total)
		require.Equal(t, time.Duration(0), s.MeanTimeToResolution, "none resolved")

		stats, err = b.engine.DeadLetterStats(ctx, tasker.DeadLetterStatsFilter{Namespace: "dlq_b"})
		require.NoError(t, err)
		require.Len(t, stats, 1)
		require.Equal(t, tasker.ReasonStalenessTimeout, stats[0].Reason)
		stats, err = b.engine.DeadLetterStats(ctx, tasker.DeadLetterStatsFilter{Since: stale.CreatedAt})
		require.NoError(t, err)
		require.Len(t, stats, 1, "only the entry written at or after Since")
		stats, err = b.engine.DeadLetterStats(ctx, tasker.DeadLetterStatsFilter{Since: time.Now().Add(time.Hour)})
		require.NoError(t, err)
		require.Empty(t, stats)
	})
}

// TestDeadLetterInvestigationOrder writes entries of different reasons, task priorities and ages
// and checks the investigation queue's order: by InvestigationScore, ties to the older entry.
func TestDeadLetterInvestigationOrder(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, setup setupFunc) {
		ctx := context.Background()
		b := setup(t)
		b.register(t, dlqTemplate("dlq_a"))
		entry := func(reason store.DeadLetterReason, priority int) *tasker.DeadLetter {
			return addEntry(t, b, dlqTask(t, b, "dlq_a", priority), reason)
		}
		manual := entry(tasker.ReasonManual, 0)              // 10
		retries := entry(tasker.ReasonMaxRetriesExceeded, 0) // 30
		stale := entry(tasker.ReasonStalenessTimeout, 0)     // 40
		urgent := entry(tasker.ReasonManual, 100)            // 10 + 20 = 30: ties with retries, which is older
		low := entry(tasker.ReasonPermanentFailure, -100)    // 40 - 20 = 20
		done := entry(tasker.ReasonStalenessTimeout, 100)    // resolved: not in the queue
		_, err := b.engine.ResolveDeadLetter(ctx, done.ID, tasker.DeadLetterResolution{Status: tasker.DeadLetterCancelled, By: "alice"})
		require.NoError(t, err)
		want := []uuid.UUID{stale.ID, retries.ID, urgent.ID, low.ID, manual.ID}
		if b.db != nil {
			// An entry pending for two days outranks every fresh one (10 + 48 = 58). Only the
			// database's rows can be aged; the memory store's clock is the wall clock.
			old := entry(tasker.ReasonManual, 0)
			_, err := b.db.Pool.Exec(ctx, `UPDATE `+b.db.Schema+`.dead_letters SET created_at = created_at - interval '2 days' WHERE dlq_id = $1`, old.ID)
			require.NoError(t, err)
			want = append([]uuid.UUID{old.ID}, want...)
		}

		q, err := b.engine.InvestigationQueue(ctx, 0)
		require.NoError(t, err)
		require.Equal(t, len(want), q.Pending)
		require.False(t, q.Truncated)
		var got []uuid.UUID
		for i, r := range q.Entries {
			got = append(got, r.ID)
			require.Equal(t, tasker.DeadLetterPending, r.Status)
			if i > 0 {
				require.LessOrEqual(t, r.Score, q.Entries[i-1].Score)
			}
		}
		require.Equal(t, want, got)
		require.InDelta(t, 40, q.Entries[len(want)-5].Score, 0.1)
		require.InDelta(t, 10, q.Entries[len(want)-1].Score, 0.1)
		if b.db != nil {
			require.InDelta(t, 58, q.Entries[0].Score, 0.1)
		}

		top, err := b.engine.InvestigationQueue(ctx, 2)
		require.NoError(t, err)
		require.Equal(t, want[:2], []uuid.UUID{top.Entries[0].ID, top.Entries[1].ID})
		require.Len(t, top.Entries, 2)
		_, err = b.engine.InvestigationQueue(ctx, -1)
		require.ErrorIs(t, err, tasker.ErrInvalidDeadLetterRequest)
	})
}

// TestDeadLetterTaskByHand puts tasks in the dead-letter queue by hand: one left as it is, one
// moved to error, and the refusals.
func TestDeadLetterTaskByHand(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, setup setupFunc) {
		ctx := context.Background()
		b := setup(t)
		b.register(t, dlqTemplate("dlq_a"))
		kept := dlqTask(t, b, "dlq_a", 0)
		before, err := b.engine.GetTask(ctx, kept)
		require.NoError(t, err)
		d, err := b.engine.DeadLetterTask(ctx, kept, tasker.DeadLetterRequest{Reason: "customer complaint", By: "alice"})
		require.NoError(t, err)
		require.Equal(t, tasker.ReasonManual, d.Reason)
		require.Equal(t, tasker.DeadLetterPending, d.Status)
		require.Equal(t, before.State, d.OriginalState)
		after, err := b.engine.GetTask(ctx, kept)
		require.NoError(t, err)
		require.Equal(t, before.State, after.State, "left as it is")
		_, err = b.engine.DeadLetterTask(ctx, kept, tasker.DeadLetterRequest{By: "bob"})
		require.ErrorIs(t, err, tasker.ErrDeadLetterOpen, "one pending entry per task")

		moved := dlqTask(t, b, "dlq_a", 0)
		before, err = b.engine.GetTask(ctx, moved)
		require.NoError(t, err)
		d, err = b.engine.DeadLetterTask(ctx, moved, tasker.DeadLetterRequest{Reason: "poison input", By: "alice", MoveToError: true})
		require.NoError(t, err)
		require.Equal(t, before.State, d.OriginalState)
		require.Equal(t, tasker.TaskError, d.TaskState)
		snap, err := d.DecodeSnapshot()
		require.NoError(t, err)
		require.Equal(t, before.State, snap.Task.State, "the snapshot is the task before the move")
		task, err := b.engine.GetTask(ctx, moved)
		require.NoError(t, err)
		require.Equal(t, tasker.TaskError, task.State)
		require.Equal(t, tasker.StepCancelled, task.Steps[0].State)
		trs := requireLegalTransitions(t, b.engine, moved)
		require.Contains(t, string(trs[len(trs)-1].Metadata), `"operator": "alice"`)
		_, err = b.engine.DeadLetterTask(ctx, moved, tasker.DeadLetterRequest{By: "alice", MoveToError: true})
		require.ErrorIs(t, err, tasker.ErrNotAllowed, "a finished task is not moved")

		// A task with a pending entry is moved with the entry it has.
		d2, err := b.engine.DeadLetterTask(ctx, kept, tasker.DeadLetterRequest{By: "bob", MoveToError: true})
		require.NoError(t, err)
		prev, err := b.engine.TaskDeadLetter(ctx, kept)
		require.NoError(t, err)
		require.Equal(t, prev.ID, d2.ID)
		require.Equal(t, tasker.TaskError, d2.TaskState)

		_, err = b.engine.DeadLetterTask(ctx, uuid.New(), tasker.DeadLetterRequest{By: "alice"})
		require.ErrorIs(t, err, tasker.ErrTaskNotFound)
		_, err = b.engine.DeadLetterTask(ctx, uuid.New(), tasker.DeadLetterRequest{By: "alice", MoveToError: true})
		require.ErrorIs(t, err, tasker.ErrTaskNotFound)
		other := dlqTask(t, b, "dlq_a", 0)
		_, err = b.engine.DeadLetterTask(ctx, other, tasker.DeadLetterRequest{Reason: "no name"})
		require.ErrorIs(t, err, tasker.ErrInvalidDeadLetterRequest)
		_, err = b.engine.DeadLetterTask(ctx, other, tasker.DeadLetterRequest{By: "alice", Reason: "nul \x00"})
		require.ErrorIs(t, err, tasker.ErrInvalidValue)
		_, err = b.engine.TaskDeadLetter(ctx, other)
		require.ErrorIs(t, err, tasker.ErrDeadLetterNotFound, "a refused request writes nothing")
	})
}

// TestDeadLetterExhaustedRetriesThenOperatorFix runs two engines on one store. A step uses all
// its attempts, the task is blocked, and the elected engine writes exactly one
// max_retries_exceeded entry, however many passes run; the entry requeues nothing. An operator's
// step fix resumes the task, which completes, and then the entry is resolved.
func TestDeadLetterExhaustedRetriesThenOperatorFix(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, setup setupFunc) {
		const tmpl = `
name: exhaust
namespace_name: dlq_x
version: 1.0.0
steps:
  - {name: start, handler: {callable: add_one}}
  - {name: flaky, handler: {callable: flaky}, dependencies: [start], retry: {max_attempts: 2, backoff: none}}
  - {name: finish, handler: {callable: add_one}, dependencies: [flaky]}
`
		for _, fix := range []string{"retry", "resolve"} {
			t.Run(fix, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				fast := func(c *tasker.Config) { c.RescueInterval = 20 * time.Millisecond }
				b := setup(t, fast)
				sib := b.sibling(t)
				var healthy sync.Map
				for _, x := range []*bundle{b, sib} {
					x.register(t, tmpl)
					x.engine.HandleFunc("add_one", addOne)
					x.engine.HandleFunc("flaky", func(ctx context.Context, s *tasker.Step) (any, error) {
						if _, ok := healthy.Load("yes"); !ok {
							return nil, errors.New("dependency down")
						}
						return addOne(ctx, s)
					})
					x.start(t)
				}
				task := b.wait(t, b.create(t, "dlq_x", "exhaust", nil).ID)
				require.Equal(t, tasker.TaskBlockedByFailures, task.State)
				flaky, _ := task.Step("flaky")
				require.Equal(t, 2, flaky.Attempts)

				var entry *tasker.DeadLetter
				require.Eventually(t, func() bool {
					d, err := b.engine.TaskDeadLetter(ctx, task.ID)
					if errors.Is(err, tasker.ErrDeadLetterNotFound) {
						return false
					}
					require.NoError(t, err)
					entry = d
					return true
				}, 10*time.Second, 10*time.Millisecond)
				require.Equal(t, tasker.ReasonMaxRetriesExceeded, entry.Reason)
				require.Equal(t, tasker.DeadLetterPending, entry.Status)
				require.Equal(t, tasker.TaskBlockedByFailures, entry.OriginalState)
				snap, err := entry.DecodeSnapshot()
				require.NoError(t, err)
				require.Equal(t, "retries_exhausted", snap.Detail["writer"])

				countEntries := func() int {
					page, err := b.engine.DeadLetters(ctx, tasker.DeadLetterFilter{Namespace: "dlq_x"})
					require.NoError(t, err)
					return len(page.Entries)
				}
				time.Sleep(200 * time.Millisecond) // ten passes at least
				require.Equal(t, 1, countEntries(), "one entry however many passes")
				got, err := b.engine.GetTask(ctx, task.ID)
				require.NoError(t, err)
				require.Equal(t, tasker.TaskBlockedByFailures, got.State, "an entry requeues nothing")
				flaky, _ = got.Step("flaky")
				require.Equal(t, tasker.StepError, flaky.State)
				require.Equal(t, 2, flaky.Attempts)

				op := tasker.OperatorRequest{Operator: "alice", Reason: "upstream fixed"}
				switch fix {
				case "retry":
					healthy.Store("yes", true)
					require.NoError(t, b.engine.RetryStep(ctx, flaky.ID, op))
				case "resolve":
					require.NoError(t, sib.engine.ResolveStep(ctx, flaky.ID, op))
				}
				task = b.wait(t, task.ID)
				require.Equal(t, tasker.TaskComplete, task.State, "the step fix resumes the task")

				r, err := b.engine.ResolveDeadLetter(ctx, entry.ID, tasker.DeadLetterResolution{Status: tasker.DeadLetterManuallyResolved,
					Notes: "step " + fix, By: "alice"})
				require.NoError(t, err)
				require.Equal(t, tasker.DeadLetterManuallyResolved, r.Status)
				require.Equal(t, tasker.TaskComplete, r.TaskState)
				time.Sleep(100 * time.Millisecond)
				require.Equal(t, 1, countEntries(), "a finished task gets no new entry")
			})
		}
	})
}

// TestDeadLetterInvestigationBound fills the queue beyond InvestigationScanMax (on memory: the
// bound is the same on every store): the oldest InvestigationScanMax are ranked, since they have
// waited longest, and Truncated says that more are pending.
func TestDeadLetterInvestigationBound(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("writes InvestigationScanMax+1 entries (about 8 s with -race)")
	}
	ctx := context.Background()
	b := setupOn(t, backendMemory)
	b.register(t, dlqTemplate("dlq_a"))
	var first, last uuid.UUID
	for i := range tasker.InvestigationScanMax + 1 {
		id := dlqTask(t, b, "dlq_a", 0)
		reason := tasker.ReasonManual
		if i == 0 || i == tasker.InvestigationScanMax {
			reason = tasker.ReasonStalenessTimeout // the oldest and the newest are the heaviest
		}
		_, err := b.st.AddDeadLetter(ctx, store.AddDeadLetterParams{TaskID: id, Entry: store.NewDeadLetter{ID: uuid.Must(uuid.NewV7()), Reason: reason}})
		require.NoError(t, err)
		if i == 0 {
			first = id
		}
		last = id
	}
	q, err := b.engine.InvestigationQueue(ctx, 3)
	require.NoError(t, err)
	require.Equal(t, tasker.InvestigationScanMax, q.Pending)
	require.True(t, q.Truncated)
	require.Len(t, q.Entries, 3)
	require.Equal(t, first, q.Entries[0].TaskID, "the oldest entry was ranked, and ranks first")
	for _, e := range q.Entries {
		require.NotEqual(t, last, e.TaskID, "the newest entry, beyond the bound, was not ranked")
	}
	require.Equal(t, tasker.ReasonManual, q.Entries[1].Reason, "the second heavy entry, the newest, was left out")
}

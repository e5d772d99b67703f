package tasker

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

func TestInvestigationScore(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name     string
		reason   DeadLetterReason
		age      time.Duration
		priority int
		want     float64
	}{
		{"staleness, fresh", ReasonStalenessTimeout, 0, 0, 40},
		{"permanent, fresh", ReasonPermanentFailure, 0, 0, 40},
		{"retries exhausted, fresh", ReasonMaxRetriesExceeded, 0, 0, 30},
		{"worker unavailable, fresh", ReasonWorkerUnavailable, 0, 0, 30},
		{"manual, fresh", ReasonManual, 0, 0, 10},
		{"unknown reason", "mystery", 0, 0, 0},
		{"one point per hour", ReasonManual, 5 * time.Hour, 0, 15},
		{"half an hour", ReasonManual, 30 * time.Minute, 0, 10.5},
		{"age capped at two days", ReasonManual, 30 * 24 * time.Hour, 0, 58},
		{"negative age (clock skew) counts nothing", ReasonManual, -time.Hour, 0, 10},
		{"priority / 5", ReasonManual, 0, 50, 20},
		{"negative priority", ReasonStalenessTimeout, 0, -25, 35},
		{"priority capped", ReasonManual, 0, 1 << 30, 30},
		{"negative priority capped", ReasonStalenessTimeout, 0, -(1 << 30), 20},
		{"all three", ReasonMaxRetriesExceeded, 3 * time.Hour, 10, 35},
	} {
		require.InDelta(t, c.want, InvestigationScore(c.reason, c.age, c.priority), 1e-9, c.name)
	}
	// The order the terms give: a heavier reason first when fresh, an old entry of any reason
	// first after two days (at equal task priority).
	require.Greater(t, InvestigationScore(ReasonStalenessTimeout, 0, 0), InvestigationScore(ReasonMaxRetriesExceeded, 0, 0))
	require.Greater(t, InvestigationScore(ReasonMaxRetriesExceeded, 0, 0), InvestigationScore(ReasonManual, 0, 0))
	require.Greater(t, InvestigationScore(ReasonManual, 48*time.Hour, 0), InvestigationScore(ReasonStalenessTimeout, 0, 0))
}

func TestRankDeadLetters(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	id := func(b byte) uuid.UUID { return uuid.UUID{15: b} }
	entry := func(b byte, score float64, created time.Time) RankedDeadLetter {
		return RankedDeadLetter{DeadLetter: DeadLetter{ID: id(b), CreatedAt: created}, Score: score}
	}
	entries := []RankedDeadLetter{
		entry(1, 10, t0),
		entry(2, 30, t0.Add(time.Second)),
		entry(3, 30, t0),                  // same score, older: before 2
		entry(5, 30, t0.Add(time.Second)), // same score and time as 2: by ID, after it
		entry(4, 40, t0.Add(time.Hour)),
	}
	for range 3 { // whatever the input order
		rankDeadLetters(entries)
		var got []byte
		for _, e := range entries {
			got = append(got, e.ID[15])
		}
		require.Equal(t, []byte{4, 3, 2, 5, 1}, got)
		entries[0], entries[4] = entries[4], entries[0]
		entries[1], entries[3] = entries[3], entries[1]
	}
}

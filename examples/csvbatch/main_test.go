package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/testdb"
)

// expected sums the file the program writes in one sequential pass, without the engine, by
// batches of 200 rows.
func expected(t *testing.T) (batches []WorkerResult, total Totals) {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, writeCSV(&buf, Rows))
	recs, err := csv.NewReader(&buf).ReadAll()
	require.NoError(t, err)
	require.Len(t, recs, Rows+1)
	require.Equal(t, []string{"row", "sku", "region", "quantity", "unit_price_cents"}, recs[0])
	for i, rec := range recs[1:] {
		n := int64(i + 1)
		if (n-1)%200 == 0 {
			batches = append(batches, WorkerResult{BatchID: fmt.Sprintf("%03d", len(batches)+1), FirstRow: n, LastRow: n + 199})
		}
		q, err := strconv.ParseInt(rec[3], 10, 64)
		require.NoError(t, err)
		p, err := strconv.ParseInt(rec[4], 10, 64)
		require.NoError(t, err)
		b := &batches[len(batches)-1]
		b.Rows++
		b.Quantity += q
		b.ValueCents += q * p
		total.Rows++
		total.Quantity += q
		total.ValueCents += q * p
	}
	total.Workers = len(batches)
	return batches, total
}

func TestCSVBatchSumsEveryRowOnce(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	var out bytes.Buffer
	res, err := runWith(ctx, db.Pool, db.Schema, &out)
	require.NoError(t, err, out.String())
	t.Log("\n" + out.String())

	wantBatches, wantTotal := expected(t)
	require.Len(t, wantBatches, 5)
	require.Equal(t, int64(1000), wantTotal.Rows)

	task := res.Task
	require.Equal(t, tasker.TaskComplete, task.State)
	var names []string
	for _, s := range task.Steps {
		names = append(names, s.Name)
		require.Equal(t, tasker.StepComplete, s.State, s.Name)
	}
	require.ElementsMatch(t, []string{"count_rows", "sum_rows_001", "sum_rows_002", "sum_rows_003", "sum_rows_004",
		"sum_rows_005", "aggregate_totals"}, names)

	// Every worker summed exactly its 200 rows; the one that failed resumed at its checkpoint.
	require.Len(t, res.Workers, 5)
	for i, w := range res.Workers {
		want := wantBatches[i]
		want.Attempt = 1
		if w.BatchID == "003" {
			want.Attempt, want.ResumedFrom = 2, 501
		}
		require.Equal(t, want, w, "worker %s", w.BatchID)
	}
	w3, _ := task.Step("sum_rows_003")
	require.Equal(t, 2, w3.Attempts)
	require.NotNil(t, w3.LastError)
	require.Equal(t, "read error after row 500 (simulated)", w3.LastError.Message)
	for _, name := range []string{"sum_rows_001", "sum_rows_002", "sum_rows_004", "sum_rows_005"} {
		s, _ := task.Step(name)
		require.Equal(t, 1, s.Attempts, name)
	}

	require.Equal(t, wantTotal, res.Totals)
	require.LessOrEqual(t, res.PeakWorkers, 3, "batch_config.parallelism is 3")
	require.GreaterOrEqual(t, res.PeakWorkers, 1)

	require.Contains(t, out.String(), fmt.Sprintf("total: 1000 rows from 5 workers, quantity %d, value %s\n",
		wantTotal.Quantity, dollars(wantTotal.ValueCents)))
	require.Contains(t, out.String(), "(resumed at row 501 after: read error after row 500 (simulated))")
	for _, b := range wantBatches {
		require.Contains(t, out.String(), fmt.Sprintf("sum_rows_%s", b.BatchID))
		require.Contains(t, out.String(), dollars(b.ValueCents))
	}
}

func TestDollars(t *testing.T) {
	t.Parallel()
	for cents, want := range map[int64]string{0: "$0.00", 5: "$0.05", 123456: "$1,234.56", 30871291: "$308,712.91", 100000000: "$1,000,000.00"} {
		require.Equal(t, want, dollars(cents))
	}
}

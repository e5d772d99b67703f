package tasker_test

// Decision-point and batch templates in Tasker Core's YAML layout run here over two sets
// (corefixture.Each): tasker's own in testdata/corelayout (every run), which keep the step names
// these handlers serve, and Tasker Core's own fixtures, read in place (never copied) from the
// folder that TASKER_CORE_FIXTURES names. They run to the outcomes their comments describe, with
// Go handlers registered under their handler.callable names. The handlers do what Tasker Core's
// fixtures' comments and handler.initialization say their Rust handlers do, and return Tasker
// Core's JSON shapes ({"decision_point_outcome": ...}, {"batch_processing_outcome": ...}) with
// extra keys beside them, as the Rust handlers do. Every expected value is computed in the test
// from the input, independently of the engine.
//
// fixtures_run_test.go still calls these fixtures fixturesUnsupported (the name dates from before
// decision points and batches were implemented); TestFixtureDynamicInventory checks that the list
// is exactly the fixtures run here.

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/corefixture"
)

// fixturesDynamic are the templates of a set with decision, deferred_convergence, batchable or
// batch_worker steps, each run below.
func fixturesDynamic(set corefixture.Set) []string {
	return corefixture.Pick(set, []string{
		"conditional_approval_rust.yaml", "batch_processing_products_csv.yaml", "batch_processing_example.yaml",
		"batch_resumption_test.yaml", "diamond_decision_batch.yaml",
	}, []string{
		"spend_approval.yaml", "stock_count_csv.yaml", "range_batches.yaml", "checkpoint_resume.yaml", "parity_batches.yaml",
	})
}

func TestFixtureDynamicInventory(t *testing.T) {
	t.Parallel()
	corefixture.Each(t, func(t *testing.T, set corefixture.Set) {
		require.ElementsMatch(t, fixturesUnsupported(set), fixturesDynamic(set),
			"fixtures_run_test.go's fixturesUnsupported must be exactly the decision/batch fixtures this file runs")
		for _, f := range fixturesDynamic(set) {
			tmpl, _ := loadFixture(t, set, f)
			require.NotEmpty(t, nonStandardTypes(tmpl), f)
		}
	})
}

// handleSteps registers fn under the handler.callable of each named template step, failing when
// the template has no such step.
func handleSteps(t *testing.T, b *bundle, tmpl *tasker.Template, fns map[string]tasker.HandlerFunc) {
	t.Helper()
	for name, fn := range fns {
		st, ok := tmpl.Step(name)
		require.True(t, ok, "template %s has no step %s", tmpl.Key(), name)
		require.NotEmpty(t, st.Handler.Callable)
		b.engine.Handle(st.Handler.Callable, fn)
	}
}

// resultMap decodes a step's result into a generic map.
func resultMap(t *testing.T, task *tasker.Task, step string) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, task.Result(step, &m), "%s\n%s", step, describeSteps(task))
	return m
}

// requireAllComplete checks that the task completed with exactly the named steps, each complete.
func requireAllComplete(t *testing.T, task *tasker.Task, names ...string) {
	t.Helper()
	require.Equal(t, tasker.TaskComplete, task.State, describeSteps(task))
	require.ElementsMatch(t, names, stepNames(task), describeSteps(task))
	for _, s := range task.Steps {
		require.Equal(t, tasker.StepComplete, s.State, "%s\n%s", s.Name, describeSteps(task))
		require.NotEmpty(t, s.Result, s.Name)
	}
}

// depMap decodes an ancestor's result into a generic map.
func depMap(s *tasker.Step, name string) (map[string]any, error) {
	var m map[string]any
	if err := s.DependencyResult(name, &m); err != nil {
		return nil, tasker.Permanent(err)
	}
	return m, nil
}

// cfgInt reads an integer from handler.initialization, or def.
func cfgInt(s *tasker.Step, key string, def int64) int64 {
	if v, ok := s.Config()[key].(float64); ok {
		return int64(v)
	}
	return def
}

// coreCursors computes cursors as Tasker Core's example analyzers do: worker_count =
// min(ceil(total/batch_size), max_workers), each of ceil(total/worker_count) items, offset by
// first (0 for item indexes, 1 for 1-based CSV data rows).
func coreCursors(total, batchSize, maxWorkers, first int64) []map[string]any {
	workers := min((total+batchSize-1)/batchSize, maxWorkers)
	size := (total + workers - 1) / workers
	var out []map[string]any
	for i := int64(0); i < workers; i++ {
		start, end := i*size, min((i+1)*size, total)
		out = append(out, map[string]any{"batch_id": fmt.Sprintf("%03d", i+1), "start_cursor": start + first,
			"end_cursor": end + first, "batch_size": end - start})
	}
	return out
}

// createBatchesJSON is Tasker Core's create_batches outcome.
func createBatchesJSON(worker string, cursors []map[string]any, total int64) map[string]any {
	return map[string]any{"type": "create_batches", "worker_template_name": worker, "worker_count": len(cursors),
		"cursor_configs": cursors, "total_items": total}
}

var noBatchesJSON = map[string]any{"type": "no_batches"}

// batchResults are the results a convergence step sees from the workers of one batch.
type batchResults struct {
	names   []string                  // workers that processed items, sorted
	results map[string]map[string]any // their results
	noOps   int                       // placeholder workers of a batch with no batches
	failed  []string                  // workers that failed under continue_on_failure, sorted
}

// workerResults sorts out the results of the ancestors whose names start with prefix.
func workerResults(s *tasker.Step, prefix string) (batchResults, error) {
	br := batchResults{results: map[string]map[string]any{}}
	var all []string
	for name := range s.DependencyResults() {
		if strings.HasPrefix(name, prefix) {
			all = append(all, name)
		}
	}
	sort.Strings(all)
	for _, name := range all {
		m, err := depMap(s, name)
		if err != nil {
			return br, err
		}
		switch {
		case m["no_op"] == true:
			br.noOps++
		case m["failed"] == true:
			br.failed = append(br.failed, name)
		default:
			br.results[name] = m
			br.names = append(br.names, name)
		}
	}
	return br, nil
}

// ---------------------------------------------------------------------------------------------
// conditional_approval_rust.yaml: validate_request → routing_decision (decision) → auto_approve |
// manager_approval | manager_approval + finance_review → finalize_approval (deferred
// convergence). Its description: "Routes approval requests through different paths based on
// amount thresholds"; Tasker Core's handlers use amount < 1,000 → auto_approve; 1,000 ≤ amount <
// 5,000 → manager_approval; amount ≥ 5,000 → manager_approval + finance_review.

func conditionalApprovalHandlers(t *testing.T, b *bundle, tmpl *tasker.Template) {
	type request struct {
		Amount    *int64 `json:"amount"`
		Requester string `json:"requester"`
		Purpose   string `json:"purpose"`
	}
	input := func(s *tasker.Step) (request, error) {
		var r request
		if err := s.Input(&r); err != nil {
			return r, tasker.Permanent(err)
		}
		return r, nil
	}
	approve := func(kind, by string) tasker.HandlerFunc {
		return func(_ context.Context, s *tasker.Step) (any, error) {
			r, err := input(s)
			if err != nil {
				return nil, err
			}
			return map[string]any{"approved": true, "approval_type": kind, "approved_amount": *r.Amount, "approved_by": by}, nil
		}
	}
	handleSteps(t, b, tmpl, map[string]tasker.HandlerFunc{
		"validate_request": func(_ context.Context, s *tasker.Step) (any, error) {
			r, err := input(s)
			switch {
			case err != nil:
				return nil, err
			case r.Amount == nil:
				return nil, permanentf("Task context must contain amount")
			case *r.Amount <= 0:
				return nil, permanentf("Amount must be positive")
			case r.Requester == "":
				return nil, permanentf("Task context must contain requester")
			case r.Purpose == "":
				return nil, permanentf("Task context must contain purpose")
			}
			return map[string]any{"amount": *r.Amount, "requester": r.Requester, "purpose": r.Purpose}, nil
		},
		"routing_decision": func(_ context.Context, s *tasker.Step) (any, error) {
			var v struct {
				Amount int64 `json:"amount"`
			}
			if err := s.DependencyResult("validate_request", &v); err != nil {
				return nil, tasker.Permanent(err)
			}
			route, steps := "dual_approval", []string{"manager_approval", "finance_review"}
			switch {
			case v.Amount < 1000:
				route, steps = "auto_approval", []string{"auto_approve"}
			case v.Amount < 5000:
				route, steps = "manager_only", []string{"manager_approval"}
			}
			return map[string]any{"route_type": route, "amount": v.Amount,
				"decision_point_outcome": map[string]any{"type": "create_steps", "step_names": steps}}, nil
		},
		"auto_approve":     approve("automatic", "system"),
		"manager_approval": approve("manager", "manager_rust_example"),
		"finance_review":   approve("finance", "finance_rust_example"),
		"finalize_approval": func(_ context.Context, s *tasker.Step) (any, error) {
			r, err := input(s)
			if err != nil {
				return nil, err
			}
			types, by := []string{}, []string{}
			for _, name := range []string{"auto_approve", "manager_approval", "finance_review"} {
				if _, ok := s.DependencyResults()[name]; !ok {
					continue
				}
				a, err := depMap(s, name)
				if err != nil {
					return nil, err
				}
				if a["approved"] == true {
					types = append(types, a["approval_type"].(string))
					by = append(by, a["approved_by"].(string))
				}
			}
			sort.Strings(types)
			path := map[string]string{"automatic": "auto", "manager": "manager_only", "finance,manager": "dual_approval"}[strings.Join(types, ",")]
			if path == "" {
				path = "unknown"
			}
			return map[string]any{"approved": true, "final_amount": *r.Amount, "approval_chain": types, "approved_by": by,
				"approval_path": path, "saw": s.DependencyNames()}, nil
		},
	})
}

func TestFixtureDynamicConditionalApproval(t *testing.T) {
	t.Parallel()
	corefixture.Each(t, func(t *testing.T, set corefixture.Set) {
		tmpl, _ := loadFixture(t, set, corefixture.Pick(set, "conditional_approval_rust.yaml", "spend_approval.yaml"))
		b := fixtureEngine(t, tmpl)
		conditionalApprovalHandlers(t, b, tmpl)
		b.start(t)

		cases := []struct {
			amount   int64
			branches []string
			route    string
			path     string
			chain    []string
			by       []string
		}{
			{500, []string{"auto_approve"}, "auto_approval", "auto", []string{"automatic"}, []string{"system"}},
			{999, []string{"auto_approve"}, "auto_approval", "auto", []string{"automatic"}, []string{"system"}},
			{1000, []string{"manager_approval"}, "manager_only", "manager_only", []string{"manager"}, []string{"manager_rust_example"}},
			{4999, []string{"manager_approval"}, "manager_only", "manager_only", []string{"manager"}, []string{"manager_rust_example"}},
			{5000, []string{"manager_approval", "finance_review"}, "dual_approval", "dual_approval", []string{"finance", "manager"},
				[]string{"manager_rust_example", "finance_rust_example"}},
			{25000, []string{"manager_approval", "finance_review"}, "dual_approval", "dual_approval", []string{"finance", "manager"},
				[]string{"manager_rust_example", "finance_rust_example"}},
		}
		// Every request runs at once on the one engine.
		tasks := make([]*tasker.Task, len(cases))
		for i, c := range cases {
			tasks[i] = b.create(t, tmpl.Namespace, tmpl.Name,
				map[string]any{"amount": c.amount, "requester": fmt.Sprintf("req-%d", c.amount), "purpose": "equipment"})
		}
		all := []string{"auto_approve", "manager_approval", "finance_review"}
		for i, c := range cases {
			t.Run(fmt.Sprintf("amount %d", c.amount), func(t *testing.T) {
				task := b.wait(t, tasks[i].ID)
				requireAllComplete(t, task, append([]string{"validate_request", "routing_decision", "finalize_approval"}, c.branches...)...)
				for _, s := range task.Steps {
					require.Equal(t, 1, s.Attempts, s.Name)
				}
				route := resultMap(t, task, "routing_decision")
				require.Equal(t, c.route, route["route_type"])
				fin := resultMap(t, task, "finalize_approval")
				require.Equal(t, true, fin["approved"])
				require.Equal(t, float64(c.amount), fin["final_amount"])
				require.Equal(t, c.path, fin["approval_path"])
				require.ElementsMatch(t, c.chain, fin["approval_chain"])
				require.ElementsMatch(t, c.by, fin["approved_by"])
				// The convergence saw exactly the branches that the decision created.
				var saw []string
				for _, v := range fin["saw"].([]any) {
					saw = append(saw, v.(string))
				}
				require.ElementsMatch(t, append([]string{"validate_request", "routing_decision"}, c.branches...), saw)
				for _, name := range all {
					if !slices.Contains(c.branches, name) {
						_, exists := task.Step(name)
						require.False(t, exists, "%s was not chosen and must never be created", name)
					}
				}
				requireLegalTransitions(t, b.engine, task.ID)
			})
		}

		// A request that fails validation stops before the decision: no branch is ever created.
		t.Run("invalid requests", func(t *testing.T) {
			for _, bad := range []struct {
				ctx map[string]any
				msg string
			}{
				{map[string]any{"amount": 0, "requester": "x", "purpose": "y"}, "Amount must be positive"},
				{map[string]any{"amount": 100, "requester": "x"}, "Task context must contain purpose"},
			} {
				task := b.wait(t, b.create(t, tmpl.Namespace, tmpl.Name, bad.ctx).ID)
				require.Equal(t, tasker.TaskBlockedByFailures, task.State, describeSteps(task))
				require.ElementsMatch(t, []string{"validate_request", "routing_decision"}, stepNames(task))
				v, _ := task.Step("validate_request")
				require.Equal(t, tasker.StepError, v.State)
				require.Equal(t, "permanent", v.LastError.Kind)
				require.Contains(t, v.LastError.Message, bad.msg)
				r, _ := task.Step("routing_decision")
				require.Equal(t, tasker.StepPending, r.State)
				requireLegalTransitions(t, b.engine, task.ID)
			}
		})
	})
}

// ---------------------------------------------------------------------------------------------
// batch_processing_products_csv.yaml: analyze_csv (batchable) counts the CSV's data rows and asks
// for min(ceil(rows/200), 5) workers with 1-based row cursors; each process_csv_batch_NNN reads
// its rows from the file and computes inventory metrics (total value = Σ price × stock, counts by
// category, most expensive product, average rating); aggregate_csv_results (deferred
// convergence) combines them. A file too small for one batch gives NoBatches: one no-op worker
// process_csv_batch_000, and the aggregate sees nothing.

type csvProduct struct {
	ID       int64
	Title    string
	Category string
	Price    float64
	Rating   float64
	Stock    int64
}

// readProducts reads a products CSV by its header's column names, calling fn with each data row's
// 1-based number; fn returns false to stop.
func readProducts(path string, fn func(row int64, p csvProduct) bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := csv.NewReader(f)
	header, err := r.Read()
	if err != nil {
		return fmt.Errorf("%s: header: %w", path, err)
	}
	col := map[string]int{}
	for i, h := range header {
		col[h] = i
	}
	for _, h := range []string{"id", "title", "category", "price", "rating", "stock"} {
		if _, ok := col[h]; !ok {
			return fmt.Errorf("%s: no column %q", path, h)
		}
	}
	for row := int64(1); ; row++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		var p csvProduct
		var errs [4]error
		p.ID, errs[0] = strconv.ParseInt(rec[col["id"]], 10, 64)
		p.Price, errs[1] = strconv.ParseFloat(rec[col["price"]], 64)
		p.Rating, errs[2] = strconv.ParseFloat(rec[col["rating"]], 64)
		p.Stock, errs[3] = strconv.ParseInt(rec[col["stock"]], 10, 64)
		if err := errors.Join(errs[:]...); err != nil {
			return fmt.Errorf("%s row %d: %w", path, row, err)
		}
		p.Title, p.Category = rec[col["title"]], rec[col["category"]]
		if !fn(row, p) {
			return nil
		}
	}
}

// inventory are the metrics of a set of products.
type inventory struct {
	count      int64
	value      float64
	categories map[string]int64
	maxPrice   float64
	maxTitle   string
	ratingSum  float64
}

func (inv *inventory) add(p csvProduct) {
	if inv.categories == nil {
		inv.categories = map[string]int64{}
	}
	inv.count++
	inv.value += p.Price * float64(p.Stock)
	inv.categories[p.Category]++
	if p.Price > inv.maxPrice {
		inv.maxPrice, inv.maxTitle = p.Price, p.Title
	}
	inv.ratingSum += p.Rating
}

type productsCSVRun struct {
	*bundle
	tmpl       *tasker.Template
	workerRuns atomic.Int32
	mu         sync.Mutex
	rowsRead   map[int64]int // data row number -> times a worker read it (product ids repeat in products.csv)
	failBatch  string        // the batch whose worker finds a corrupt row, if any
}

func newProductsCSVRun(t *testing.T, set corefixture.Set, failBatch string) *productsCSVRun {
	tmpl, _ := loadFixture(t, set, corefixture.Pick(set, "batch_processing_products_csv.yaml", "stock_count_csv.yaml"))
	r := &productsCSVRun{bundle: fixtureEngine(t, tmpl), tmpl: tmpl, rowsRead: map[int64]int{}, failBatch: failBatch}
	handleSteps(t, r.bundle, tmpl, map[string]tasker.HandlerFunc{
		"analyze_csv": func(_ context.Context, s *tasker.Step) (any, error) {
			var in struct {
				Path string `json:"csv_file_path"`
			}
			if err := s.Input(&in); err != nil || in.Path == "" {
				return nil, permanentf("Missing required field: csv_file_path (%v)", err)
			}
			var rows int64
			if err := readProducts(in.Path, func(int64, csvProduct) bool { rows++; return true }); err != nil {
				return nil, tasker.Permanent(err)
			}
			batchSize, maxWorkers := cfgInt(s, "batch_size", 200), cfgInt(s, "max_workers", 5)
			worker, _ := s.Config()["worker_template_name"].(string)
			res := map[string]any{"total_rows": rows, "csv_file_path": in.Path}
			if rows < batchSize {
				res["batch_processing_outcome"], res["reason"] = noBatchesJSON, "dataset_too_small"
				return res, nil
			}
			cursors := coreCursors(rows, batchSize, maxWorkers, 1)
			res["batch_processing_outcome"], res["worker_count"] = createBatchesJSON(worker, cursors, rows), len(cursors)
			return res, nil
		},
		"process_csv_batch": func(_ context.Context, s *tasker.Step) (any, error) {
			r.workerRuns.Add(1)
			in, ok := s.Batch()
			if !ok {
				return nil, permanentf("step %s has no batch cursor", s.Name)
			}
			if in.BatchMetadata.CursorField != "row_number" || in.BatchMetadata.FailureStrategy != "continue_on_failure" {
				return nil, permanentf("batch metadata %+v is not the template's batch_config", in.BatchMetadata)
			}
			if op := s.Config()["operation"]; op != "inventory_analysis" {
				return nil, permanentf("operation %v", op)
			}
			analysis, err := depMap(s, "analyze_csv")
			if err != nil {
				return nil, err
			}
			path, _ := analysis["csv_file_path"].(string)
			if in.Cursor.BatchID == r.failBatch {
				return nil, permanentf("corrupt CSV row %d", in.Cursor.Start+17)
			}
			var inv inventory
			var rows []int64
			err = readProducts(path, func(row int64, p csvProduct) bool {
				if row >= in.Cursor.End {
					return false
				}
				if row >= in.Cursor.Start {
					inv.add(p)
					rows = append(rows, row)
				}
				return true
			})
			if err != nil {
				return nil, err
			}
			r.mu.Lock()
			for _, row := range rows {
				r.rowsRead[row]++
			}
			r.mu.Unlock()
			avg := 0.0
			if inv.count > 0 {
				avg = inv.ratingSum / float64(inv.count)
			}
			return map[string]any{"processed_count": inv.count, "total_inventory_value": inv.value, "category_counts": inv.categories,
				"max_price": inv.maxPrice, "max_price_product": inv.maxTitle, "average_rating": avg,
				"batch_id": in.Cursor.BatchID, "start_row": in.Cursor.Start, "end_row": in.Cursor.End}, nil
		},
		"aggregate_csv_results": func(_ context.Context, s *tasker.Step) (any, error) {
			if at := s.Config()["aggregation_type"]; at != "inventory_metrics" {
				return nil, permanentf("aggregation_type %v", at)
			}
			br, err := workerResults(s, "process_csv_batch_")
			if err != nil {
				return nil, err
			}
			var total, value, ratingSum, maxPrice float64
			var maxTitle any
			categories := map[string]float64{}
			for _, name := range br.names { // in batch order: the first of equal prices wins, as in one pass
				w := br.results[name]
				n := num(w["processed_count"])
				total += n
				value += num(w["total_inventory_value"])
				ratingSum += num(w["average_rating"]) * n
				for c, k := range w["category_counts"].(map[string]any) {
					categories[c] += num(k)
				}
				if p := num(w["max_price"]); p > maxPrice {
					maxPrice, maxTitle = p, w["max_price_product"]
				}
			}
			scenario, avg := "with_batches", 0.0
			if br.noOps > 0 {
				scenario = "no_batches"
			}
			if total > 0 {
				avg = ratingSum / total
			}
			return map[string]any{"total_processed": total, "total_inventory_value": value, "category_counts": categories,
				"max_price": maxPrice, "max_price_product": maxTitle, "overall_average_rating": avg,
				"worker_count": len(br.names), "no_op_workers": br.noOps, "failed_workers": br.failed, "scenario": scenario}, nil
		},
	})
	r.start(t)
	return r
}

func TestFixtureDynamicProductsCSV(t *testing.T) {
	t.Parallel()
	corefixture.Each(t, func(t *testing.T, set corefixture.Set) {

		t.Run("products.csv", func(t *testing.T) {
			t.Parallel()
			path, err := filepath.Abs(set.Path(corefixture.Pick(set, "products.csv", "stock.csv")))
			require.NoError(t, err)
			// The expected metrics, in one pass over the file.
			var want inventory
			require.NoError(t, readProducts(path, func(_ int64, p csvProduct) bool { want.add(p); return true }))
			require.Equal(t, int64(1000), want.count, "products.csv has 1000 data rows")

			r := newProductsCSVRun(t, set, "")
			start := time.Now()
			task := r.wait(t, r.create(t, r.tmpl.Namespace, r.tmpl.Name, map[string]any{"csv_file_path": path, "analysis_mode": "inventory"}).ID)
			t.Logf("1000 rows in 5 batches: %s", time.Since(start))
			requireAllComplete(t, task, "analyze_csv", "process_csv_batch_001", "process_csv_batch_002", "process_csv_batch_003",
				"process_csv_batch_004", "process_csv_batch_005", "aggregate_csv_results")

			analysis := resultMap(t, task, "analyze_csv")
			require.Equal(t, float64(1000), analysis["total_rows"])
			require.Equal(t, float64(5), analysis["worker_count"])
			// Worker N read data rows [200(N-1)+1, 200N+1) and nothing else.
			for i := int64(0); i < 5; i++ {
				name := fmt.Sprintf("process_csv_batch_%03d", i+1)
				w := resultMap(t, task, name)
				require.Equal(t, float64(200), w["processed_count"], name)
				require.Equal(t, float64(200*i+1), w["start_row"], name)
				require.Equal(t, float64(200*(i+1)+1), w["end_row"], name)
				var part inventory
				require.NoError(t, readProducts(path, func(row int64, p csvProduct) bool {
					if row > 200*i && row <= 200*(i+1) {
						part.add(p)
					}
					return true
				}))
				require.InEpsilon(t, part.value, w["total_inventory_value"], 1e-12, name)
				require.Equal(t, part.maxTitle, w["max_price_product"], name)
			}
			r.mu.Lock()
			require.Len(t, r.rowsRead, 1000, "every data row was read")
			for row, n := range r.rowsRead {
				require.Equal(t, 1, n, "data row %d read %d times", row, n)
				require.True(t, row >= 1 && row <= 1000, "row %d", row)
			}
			r.mu.Unlock()
			require.Equal(t, int32(5), r.workerRuns.Load())

			agg := resultMap(t, task, "aggregate_csv_results")
			require.Equal(t, "with_batches", agg["scenario"])
			require.Equal(t, float64(5), agg["worker_count"])
			require.Equal(t, float64(1000), agg["total_processed"])
			require.InEpsilon(t, want.value, agg["total_inventory_value"], 1e-9, "total inventory value Σ price × stock")
			require.InDelta(t, want.ratingSum/1000, agg["overall_average_rating"], 1e-9)
			require.Equal(t, want.maxPrice, agg["max_price"])
			require.Equal(t, want.maxTitle, agg["max_price_product"])
			gotCats := map[string]int64{}
			for c, n := range agg["category_counts"].(map[string]any) {
				gotCats[c] = int64(n.(float64))
			}
			require.Equal(t, want.categories, gotCats)
			require.Empty(t, agg["failed_workers"])
			t.Logf("total inventory value %.2f, %d categories, max %s at %.2f, average rating %.4f",
				want.value, len(want.categories), want.maxTitle, want.maxPrice, want.ratingSum/1000)
			requireLegalTransitions(t, r.engine, task.ID)
		})

		// The fixture's failure_strategy is continue_on_failure: a worker that fails for good completes
		// with its failure as its result, and the aggregate runs over the other batches.
		t.Run("products.csv with a corrupt batch", func(t *testing.T) {
			t.Parallel()
			path, err := filepath.Abs(set.Path(corefixture.Pick(set, "products.csv", "stock.csv")))
			require.NoError(t, err)
			var want inventory
			require.NoError(t, readProducts(path, func(row int64, p csvProduct) bool {
				if row < 401 || row > 600 {
					want.add(p)
				}
				return true
			}))
			r := newProductsCSVRun(t, set, "003")
			task := r.wait(t, r.create(t, r.tmpl.Namespace, r.tmpl.Name, map[string]any{"csv_file_path": path}).ID)
			requireAllComplete(t, task, "analyze_csv", "process_csv_batch_001", "process_csv_batch_002", "process_csv_batch_003",
				"process_csv_batch_004", "process_csv_batch_005", "aggregate_csv_results")
			w3, _ := task.Step("process_csv_batch_003")
			require.Equal(t, 1, w3.Attempts, "a permanent failure is not retried")
			var failure struct {
				Failed bool               `json:"failed"`
				Error  tasker.StepFailure `json:"error"`
			}
			require.NoError(t, task.Result("process_csv_batch_003", &failure))
			require.True(t, failure.Failed)
			require.Equal(t, "permanent", failure.Error.Kind)
			require.Contains(t, failure.Error.Message, "corrupt CSV row 418")

			agg := resultMap(t, task, "aggregate_csv_results")
			require.Equal(t, []any{"process_csv_batch_003"}, agg["failed_workers"])
			require.Equal(t, float64(4), agg["worker_count"])
			require.Equal(t, float64(800), agg["total_processed"])
			require.InEpsilon(t, want.value, agg["total_inventory_value"], 1e-9)
			require.InDelta(t, want.ratingSum/800, agg["overall_average_rating"], 1e-9)
			gotCats := map[string]int64{}
			for c, n := range agg["category_counts"].(map[string]any) {
				gotCats[c] = int64(n.(float64))
			}
			require.Equal(t, want.categories, gotCats)
			requireLegalTransitions(t, r.engine, task.ID)
		})

		t.Run("products_empty.csv", func(t *testing.T) {
			t.Parallel()
			path, err := filepath.Abs(set.Path(corefixture.Pick(set, "products_empty.csv", "stock_empty.csv")))
			require.NoError(t, err)
			r := newProductsCSVRun(t, set, "")
			task := r.wait(t, r.create(t, r.tmpl.Namespace, r.tmpl.Name, map[string]any{"csv_file_path": path}).ID)
			requireAllComplete(t, task, "analyze_csv", "process_csv_batch_000", "aggregate_csv_results")
			analysis := resultMap(t, task, "analyze_csv")
			require.Equal(t, float64(0), analysis["total_rows"])
			require.Equal(t, "dataset_too_small", analysis["reason"])
			noop, _ := task.Step("process_csv_batch_000")
			require.JSONEq(t, `{"no_op": true}`, string(noop.Result))
			require.Zero(t, r.workerRuns.Load(), "the no-op worker's handler never runs")
			agg := resultMap(t, task, "aggregate_csv_results")
			require.Equal(t, "no_batches", agg["scenario"])
			require.Equal(t, float64(0), agg["total_processed"])
			require.Equal(t, float64(0), agg["total_inventory_value"])
			require.Equal(t, float64(0), agg["worker_count"])
			require.Equal(t, float64(1), agg["no_op_workers"])
			requireLegalTransitions(t, r.engine, task.ID)
		})
	})
}

// ---------------------------------------------------------------------------------------------
// batch_processing_example.yaml: analyze_dataset (batchable) splits task.context.dataset_size
// items into min(ceil(size/1000), 10) workers of ceil(size/workers) items (NoBatches when the
// dataset is smaller than one batch); each process_batch_NNN "transforms" its items in chunks of
// 100, checkpointing after each; aggregate_results sums the processed counts and validates them
// against the total.

// datasetAnalyzer is Tasker Core's DatasetAnalyzerHandler, configured by handler.initialization
// (batch_size, max_workers, worker_template_name); batch_resumption_test.yaml uses it as well.
func datasetAnalyzer(_ context.Context, s *tasker.Step) (any, error) {
	var in struct {
		DatasetSize *int64 `json:"dataset_size"`
	}
	if err := s.Input(&in); err != nil || in.DatasetSize == nil {
		return nil, permanentf("Missing required field: dataset_size (%v)", err)
	}
	size := *in.DatasetSize
	batchSize, maxWorkers := cfgInt(s, "batch_size", 1000), cfgInt(s, "max_workers", 10)
	worker, _ := s.Config()["worker_template_name"].(string)
	if size < batchSize {
		return map[string]any{"batch_processing_outcome": noBatchesJSON, "reason": "dataset_too_small", "dataset_size": size}, nil
	}
	cursors := coreCursors(size, batchSize, maxWorkers, 0)
	return map[string]any{"batch_processing_outcome": createBatchesJSON(worker, cursors, size),
		"worker_count": len(cursors), "total_items": size}, nil
}

func TestFixtureDynamicBatchProcessingExample(t *testing.T) {
	t.Parallel()
	corefixture.Each(t, func(t *testing.T, set corefixture.Set) {
		tmpl, _ := loadFixture(t, set, corefixture.Pick(set, "batch_processing_example.yaml", "range_batches.yaml"))
		b := fixtureEngine(t, tmpl)
		var mu sync.Mutex
		ranges := map[string][][2]int64{} // task/step -> [from, to) chunks processed
		handleSteps(t, b, tmpl, map[string]tasker.HandlerFunc{
			"analyze_dataset": datasetAnalyzer,
			"process_batch": func(ctx context.Context, s *tasker.Step) (any, error) {
				in, ok := s.Batch()
				if !ok {
					return nil, permanentf("no cursor")
				}
				if op := s.Config()["operation"]; op != "transform" {
					return nil, permanentf("operation %v", op)
				}
				if in.BatchMetadata.CursorField != "id" || in.BatchMetadata.FailureStrategy != "fail_fast" {
					return nil, permanentf("batch metadata %+v", in.BatchMetadata)
				}
				pos, checkpoints := in.Cursor.Start, 0
				var cp struct {
					Position int64 `json:"position"`
				}
				if ok, err := s.LoadCheckpoint(&cp); err != nil {
					return nil, err
				} else if ok {
					pos = cp.Position
				}
				for pos < in.Cursor.End {
					end := min(pos+100, in.Cursor.End)
					mu.Lock()
					ranges[s.TaskID.String()+"/"+s.Name] = append(ranges[s.TaskID.String()+"/"+s.Name], [2]int64{pos, end})
					mu.Unlock()
					pos = end
					if err := s.Checkpoint(ctx, map[string]int64{"position": pos}); err != nil {
						return nil, err
					}
					checkpoints++
				}
				return map[string]any{"processed_count": pos - in.Cursor.Start, "checkpoint_count": checkpoints,
					"start_position": in.Cursor.Start, "end_position": in.Cursor.End, "final_position": pos, "batch_id": in.Cursor.BatchID}, nil
			},
			"aggregate_results": func(_ context.Context, s *tasker.Step) (any, error) {
				if at := s.Config()["aggregation_type"]; at != "sum" {
					return nil, permanentf("aggregation_type %v", at)
				}
				analysis, err := depMap(s, "analyze_dataset")
				if err != nil {
					return nil, err
				}
				br, err := workerResults(s, "process_batch_")
				if err != nil {
					return nil, err
				}
				var total float64
				for _, name := range br.names {
					total += num(br.results[name]["processed_count"])
				}
				if want, ok := analysis["total_items"]; ok && num(want) != total {
					return nil, permanentf("workers processed %v items, the dataset has %v", total, want)
				}
				return map[string]any{"total_processed": total, "batch_count": len(br.names), "no_op_workers": br.noOps}, nil
			},
		})
		b.start(t)

		cases := []struct {
			size, workers, per int64
		}{
			{5000, 5, 1000},   // the fixture's documented context
			{25000, 10, 2500}, // ceil(25000/1000) = 25 workers, capped at max_workers 10
			{4500, 5, 900},    // ceil(4500/1000) = 5 workers of ceil(4500/5) = 900
			{500, 0, 0},       // smaller than one batch: NoBatches
		}
		tasks := make([]*tasker.Task, len(cases))
		for i, c := range cases {
			tasks[i] = b.create(t, tmpl.Namespace, tmpl.Name, map[string]any{"dataset_size": c.size, "dataset_name": "users", "processing_mode": "parallel"})
		}
		for i, c := range cases {
			t.Run(fmt.Sprintf("dataset_size %d", c.size), func(t *testing.T) {
				task := b.wait(t, tasks[i].ID)
				names := []string{"analyze_dataset", "aggregate_results"}
				if c.workers == 0 {
					names = append(names, "process_batch_000")
				}
				for w := int64(1); w <= c.workers; w++ {
					names = append(names, fmt.Sprintf("process_batch_%03d", w))
				}
				requireAllComplete(t, task, names...)
				agg := resultMap(t, task, "aggregate_results")
				if c.workers == 0 {
					require.Equal(t, "dataset_too_small", resultMap(t, task, "analyze_dataset")["reason"])
					require.Equal(t, map[string]any{"total_processed": 0.0, "batch_count": 0.0, "no_op_workers": 1.0}, agg)
					requireLegalTransitions(t, b.engine, task.ID)
					return
				}
				require.Equal(t, map[string]any{"total_processed": float64(c.size), "batch_count": float64(c.workers), "no_op_workers": 0.0}, agg)
				// The workers' chunks tile [0, size) exactly: no item twice, none missed.
				var all [][2]int64
				mu.Lock()
				for w := int64(1); w <= c.workers; w++ {
					name := fmt.Sprintf("process_batch_%03d", w)
					chunks := ranges[task.ID.String()+"/"+name]
					res := resultMap(t, task, name)
					require.Equal(t, float64((w-1)*c.per), res["start_position"], name)
					require.Equal(t, float64(min(w*c.per, c.size)), res["end_position"], name)
					require.Equal(t, float64(len(chunks)), res["checkpoint_count"], name)
					all = append(all, chunks...)
				}
				mu.Unlock()
				sort.Slice(all, func(i, j int) bool { return all[i][0] < all[j][0] })
				next := int64(0)
				for _, ch := range all {
					require.Equal(t, next, ch[0], "chunks must tile the dataset")
					next = ch[1]
				}
				require.Equal(t, c.size, next)
				requireLegalTransitions(t, b.engine, task.ID)
			})
		}
	})
}

// ---------------------------------------------------------------------------------------------
// batch_resumption_test.yaml (test environment): analyze_dataset creates one batch of 100 items;
// checkpoint_fail_batch (CheckpointAndFailHandler: fail_after_items 50, fail_on_attempt 1,
// items_per_checkpoint 25) checkpoints every 25 items and fails on attempt 1 after 50; attempt 2
// resumes from the checkpoint and completes the rest, reprocessing nothing.

func TestFixtureDynamicBatchResumption(t *testing.T) {
	t.Parallel()
	corefixture.Each(t, func(t *testing.T, set corefixture.Set) {
		tmpl, hasTest := loadFixture(t, set, corefixture.Pick(set, "batch_resumption_test.yaml", "checkpoint_resume.yaml"))
		require.True(t, hasTest)
		worker, _ := tmpl.Step("checkpoint_fail_batch")
		require.Equal(t, 3, worker.Retry.MaxAttempts)
		require.Equal(t, 50*time.Millisecond, worker.Retry.BackoffBase)
		require.Equal(t, 10*time.Second, worker.Timeout, "the test environment's timeout")
		b := fixtureEngine(t, tmpl)

		var mu sync.Mutex
		processed := map[int][]int64{} // attempt -> items, in order
		loaded := map[int]int64{}      // attempt -> checkpoint position it resumed from
		handleSteps(t, b, tmpl, map[string]tasker.HandlerFunc{
			"analyze_dataset": datasetAnalyzer,
			"checkpoint_fail_batch": func(ctx context.Context, s *tasker.Step) (any, error) {
				in, ok := s.Batch()
				if !ok {
					return nil, permanentf("no cursor")
				}
				failAfter, failOn, every := cfgInt(s, "fail_after_items", 50), int(cfgInt(s, "fail_on_attempt", 1)), cfgInt(s, "items_per_checkpoint", 25)
				var cp struct {
					Progress int64 `json:"checkpoint_progress"`
				}
				resume := in.Cursor.Start
				if ok, err := s.LoadCheckpoint(&cp); err != nil {
					return nil, err
				} else if ok && cp.Progress > 0 {
					resume = cp.Progress
				}
				mu.Lock()
				loaded[s.Attempt] = resume
				mu.Unlock()
				pos, count := resume, int64(0)
				for pos < in.Cursor.End {
					mu.Lock()
					processed[s.Attempt] = append(processed[s.Attempt], pos)
					mu.Unlock()
					pos++
					count++
					if count%every == 0 {
						if err := s.Checkpoint(ctx, map[string]int64{"checkpoint_progress": pos, "processed_count": count, "resumed_from": resume}); err != nil {
							return nil, err
						}
					}
					if total := resume - in.Cursor.Start + count; total >= failAfter && s.Attempt == failOn {
						return nil, fmt.Errorf("Simulated failure after %d items on attempt %d", total, s.Attempt)
					}
				}
				return map[string]any{"total_processed": count, "resumed_from": resume, "final_position": pos,
					"start_position": in.Cursor.Start, "end_position": in.Cursor.End, "attempts": s.Attempt}, nil
			},
		})
		b.start(t)

		task := b.wait(t, b.create(t, tmpl.Namespace, tmpl.Name, map[string]any{"test_id": "resume-1", "dataset_size": 100}).ID)
		requireAllComplete(t, task, "analyze_dataset", "checkpoint_fail_batch_001")
		w, _ := task.Step("checkpoint_fail_batch_001")
		require.Equal(t, 2, w.Attempts)
		require.Equal(t, 3, w.MaxAttempts)
		require.NotNil(t, w.LastError)
		require.Equal(t, "Simulated failure after 50 items on attempt 1", w.LastError.Message)
		require.Equal(t, 1, w.LastError.Attempt)
		a, _ := task.Step("analyze_dataset")
		require.Equal(t, 1, a.Attempts)

		res := resultMap(t, task, "checkpoint_fail_batch_001")
		require.Equal(t, map[string]any{"total_processed": 50.0, "resumed_from": 50.0, "final_position": 100.0,
			"start_position": 0.0, "end_position": 100.0, "attempts": 2.0}, res)

		mu.Lock()
		require.Equal(t, map[int]int64{1: 0, 2: 50}, loaded, "attempt 2 resumed from the checkpoint at item 50")
		require.Len(t, processed, 2)
		seen := map[int64]int{}
		for attempt, items := range processed {
			for _, it := range items {
				seen[it]++
				require.Less(t, it, int64(100))
				if attempt == 1 {
					require.Less(t, it, int64(50))
				} else {
					require.GreaterOrEqual(t, it, int64(50))
				}
			}
		}
		mu.Unlock()
		require.Len(t, seen, 100, "every item was processed")
		for it, n := range seen {
			require.Equal(t, 1, n, "item %d processed %d times: the retry reprocessed work", it, n)
		}

		// One retryable failure, with the environment's 50 ms backoff (±jitter) before attempt 2.
		trs := requireLegalTransitions(t, b.engine, task.ID)
		require.Equal(t, 1, stepTransitionsTo(trs, "checkpoint_fail_batch_001", tasker.StepWaitingForRetry))
		var failedAt, restartedAt time.Time
		for _, tr := range trs {
			if tr.StepName != "checkpoint_fail_batch_001" {
				continue
			}
			if tr.To == string(tasker.StepWaitingForRetry) {
				failedAt = tr.At
				var meta struct {
					RetryInMS int64 `json:"retry_in_ms"`
				}
				require.NoError(t, json.Unmarshal(tr.Metadata, &meta))
				require.InDelta(t, 50, meta.RetryInMS, 50*tasker.BackoffJitter+1, "retry_in_ms")
			}
			if tr.To == string(tasker.StepInProgress) && !failedAt.IsZero() && restartedAt.IsZero() {
				restartedAt = tr.At
			}
		}
		require.False(t, restartedAt.IsZero())
		require.GreaterOrEqual(t, restartedAt.Sub(failedAt), time.Duration(float64(50*time.Millisecond)*(1-tasker.BackoffJitter)))
	})
}

// ---------------------------------------------------------------------------------------------
// diamond_decision_batch.yaml: ddb_diamond_start → branch_evens ∥ branch_odds →
// ddb_routing_decision, which creates the batchable analyzer of the dominant parity
// (Tasker Core's handler: even_count >= odd_count → even path, so a tie goes to the evens);
// the analyzer splits that parity's numbers into batches of batch_size 2 (initialization), each
// worker sums its batch, and the path's aggregate (deferred convergence) totals them. The other
// path's steps are never created.

func diamondDecisionBatchHandlers(t *testing.T, b *bundle, tmpl *tasker.Template) {
	numbers := func(s *tasker.Step, step, key string) ([]int64, error) {
		var m map[string]json.RawMessage
		if err := s.DependencyResult(step, &m); err != nil {
			return nil, tasker.Permanent(err)
		}
		var v []int64
		if err := json.Unmarshal(m[key], &v); err != nil {
			return nil, permanentf("Missing %s from %s: %v", key, step, err)
		}
		return v, nil
	}
	filter := func(key string, keep func(int64) bool) tasker.HandlerFunc {
		return func(_ context.Context, s *tasker.Step) (any, error) {
			all, err := numbers(s, "ddb_diamond_start", "all_numbers")
			if err != nil {
				return nil, err
			}
			out := []int64{}
			for _, n := range all {
				if keep(n) {
					out = append(out, n)
				}
			}
			return map[string]any{key: out, "count": len(out)}, nil
		}
	}
	analyzer := func(branch, key, worker string) tasker.HandlerFunc {
		return func(_ context.Context, s *tasker.Step) (any, error) {
			nums, err := numbers(s, branch, key)
			if err != nil {
				return nil, err
			}
			if len(nums) == 0 {
				return map[string]any{"batch_processing_outcome": noBatchesJSON}, nil
			}
			cursors := coreCursors(int64(len(nums)), cfgInt(s, "batch_size", 3), cfgInt(s, "max_workers", 10), 0)
			return map[string]any{"batch_processing_outcome": createBatchesJSON(worker, cursors, int64(len(nums))),
				"dataset_size": len(nums), "worker_count": len(cursors)}, nil
		}
	}
	sumBatch := func(branch, key string) tasker.HandlerFunc {
		return func(_ context.Context, s *tasker.Step) (any, error) {
			in, ok := s.Batch()
			if !ok {
				return nil, permanentf("Missing cursor configuration")
			}
			if op := s.Config()["operation"]; op != "sum" {
				return nil, permanentf("operation %v", op)
			}
			nums, err := numbers(s, branch, key)
			if err != nil {
				return nil, err
			}
			if in.Cursor.Start < 0 || in.Cursor.End > int64(len(nums)) || in.Cursor.Start >= in.Cursor.End {
				return nil, permanentf("cursor [%d, %d) outside %d numbers", in.Cursor.Start, in.Cursor.End, len(nums))
			}
			batch := nums[in.Cursor.Start:in.Cursor.End]
			var sum int64
			for _, n := range batch {
				sum += n
			}
			return map[string]any{"processed_count": len(batch), "batch_sum": sum, "start_idx": in.Cursor.Start,
				"end_idx": in.Cursor.End, "batch_numbers": batch}, nil
		}
	}
	aggregate := func(prefix string) tasker.HandlerFunc {
		return func(_ context.Context, s *tasker.Step) (any, error) {
			if vm := s.Config()["validation_mode"]; vm != "strict" {
				return nil, permanentf("validation_mode %v", vm)
			}
			br, err := workerResults(s, prefix)
			if err != nil {
				return nil, err
			}
			var processed, sum int64
			for _, name := range br.names {
				processed += int64(num(br.results[name]["processed_count"]))
				sum += int64(num(br.results[name]["batch_sum"]))
			}
			avg := int64(0)
			if len(br.names) > 0 {
				avg = sum / int64(len(br.names))
			}
			return map[string]any{"total_processed": processed, "total_sum": sum, "batch_count": len(br.names), "average": avg}, nil
		}
	}
	handleSteps(t, b, tmpl, map[string]tasker.HandlerFunc{
		"ddb_diamond_start": func(_ context.Context, s *tasker.Step) (any, error) {
			var in struct {
				Numbers []int64 `json:"numbers"`
			}
			if err := s.Input(&in); err != nil {
				return nil, permanentf("Missing or invalid 'numbers' array in context: %v", err)
			}
			if len(in.Numbers) == 0 {
				return nil, permanentf("Empty numbers array")
			}
			return map[string]any{"all_numbers": in.Numbers, "count": len(in.Numbers)}, nil
		},
		"branch_evens": filter("even_numbers", func(n int64) bool { return n%2 == 0 }),
		"branch_odds":  filter("odd_numbers", func(n int64) bool { return n%2 != 0 }),
		"ddb_routing_decision": func(_ context.Context, s *tasker.Step) (any, error) {
			var evens, odds struct {
				Count int64 `json:"count"`
			}
			if err := errors.Join(s.DependencyResult("branch_evens", &evens), s.DependencyResult("branch_odds", &odds)); err != nil {
				return nil, tasker.Permanent(err)
			}
			route, step := "even_dominant", "even_batch_analyzer"
			if odds.Count > evens.Count {
				route, step = "odd_dominant", "odd_batch_analyzer"
			}
			return map[string]any{"route_type": route, "even_count": evens.Count, "odd_count": odds.Count,
				"decision_point_outcome": map[string]any{"type": "create_steps", "step_names": []string{step}}}, nil
		},
		"even_batch_analyzer":    analyzer("branch_evens", "even_numbers", "process_even_batch"),
		"odd_batch_analyzer":     analyzer("branch_odds", "odd_numbers", "process_odd_batch"),
		"process_even_batch":     sumBatch("branch_evens", "even_numbers"),
		"process_odd_batch":      sumBatch("branch_odds", "odd_numbers"),
		"aggregate_even_results": aggregate("process_even_batch_"),
		"aggregate_odd_results":  aggregate("process_odd_batch_"),
	})
}

func TestFixtureDynamicDiamondDecisionBatch(t *testing.T) {
	t.Parallel()
	corefixture.Each(t, func(t *testing.T, set corefixture.Set) {
		tmpl, _ := loadFixture(t, set, corefixture.Pick(set, "diamond_decision_batch.yaml", "parity_batches.yaml"))
		b := fixtureEngine(t, tmpl)
		diamondDecisionBatchHandlers(t, b, tmpl)
		b.start(t)

		seq := func(from, to int64) []int64 {
			var out []int64
			for n := from; n <= to; n++ {
				out = append(out, n)
			}
			return out
		}
		cases := []struct {
			name    string
			numbers []int64
		}{
			{"1..10 (a tie: evens)", seq(1, 10)}, // the fixture's documented context
			{"odds dominant", []int64{1, 2, 3, 5, 7, 9, 11}},
			{"evens dominant", []int64{2, 4, 6, 8, 10, 12, 14, 1}},
		}
		tasks := make([]*tasker.Task, len(cases))
		for i, c := range cases {
			tasks[i] = b.create(t, tmpl.Namespace, tmpl.Name, map[string]any{"numbers": c.numbers, "batch_size": 2})
		}
		for i, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				// Independently: the dominant parity (ties to evens), its numbers in order, in batches of 2.
				var evens, odds []int64
				for _, n := range c.numbers {
					if n%2 == 0 {
						evens = append(evens, n)
					} else {
						odds = append(odds, n)
					}
				}
				parity, chosen, other := "even", evens, "odd"
				if len(odds) > len(evens) {
					parity, chosen, other = "odd", odds, "even"
				}
				var batches [][]int64
				for i := 0; i < len(chosen); i += 2 {
					batches = append(batches, chosen[i:min(i+2, len(chosen))])
				}
				var total int64
				for _, n := range chosen {
					total += n
				}

				task := b.wait(t, tasks[i].ID)
				names := []string{"ddb_diamond_start", "branch_evens", "branch_odds", "ddb_routing_decision",
					parity + "_batch_analyzer", "aggregate_" + parity + "_results"}
				for w := range batches {
					names = append(names, fmt.Sprintf("process_%s_batch_%03d", parity, w+1))
				}
				requireAllComplete(t, task, names...)
				for _, s := range task.Steps {
					for _, prefix := range []string{other + "_batch_analyzer", "process_" + other + "_batch", "aggregate_" + other} {
						require.False(t, strings.HasPrefix(s.Name, prefix), "%s: the %s path was not chosen", s.Name, other)
					}
				}
				route := resultMap(t, task, "ddb_routing_decision")
				require.Equal(t, parity+"_dominant", route["route_type"])
				require.Equal(t, float64(len(evens)), route["even_count"])
				require.Equal(t, float64(len(odds)), route["odd_count"])
				for w, batch := range batches {
					name := fmt.Sprintf("process_%s_batch_%03d", parity, w+1)
					var res struct {
						Numbers []int64 `json:"batch_numbers"`
						Sum     int64   `json:"batch_sum"`
					}
					require.NoError(t, task.Result(name, &res))
					require.Equal(t, batch, res.Numbers, name)
					var sum int64
					for _, n := range batch {
						sum += n
					}
					require.Equal(t, sum, res.Sum, name)
				}
				agg := resultMap(t, task, "aggregate_"+parity+"_results")
				require.Equal(t, map[string]any{"total_processed": float64(len(chosen)), "total_sum": float64(total),
					"batch_count": float64(len(batches)), "average": float64(total / int64(len(batches)))}, agg)
				requireLegalTransitions(t, b.engine, task.ID)
			})
		}

		// The fixture's own context, spelled out: evens 2+4+6+8+10 = 30 in 3 batches.
		t.Run("1..10 exact sums", func(t *testing.T) {
			task := b.wait(t, tasks[0].ID)
			agg := resultMap(t, task, "aggregate_even_results")
			require.Equal(t, 30.0, agg["total_sum"])
			require.Equal(t, 5.0, agg["total_processed"])
			require.Equal(t, 3.0, agg["batch_count"])
			require.Equal(t, 10.0, agg["average"])
		})
	})
}

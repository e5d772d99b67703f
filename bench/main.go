// Command bench measures tasker against River and DBOS Transact on one PostgreSQL and prints a
// table (or, with -json, a JSON document) of the results.
//
//	cd bench && go run .            # the full run (under 10 minutes on 2 cores)
//	cd bench && go run . -quick     # a smaller run (under a minute)
//	go run -C bench . -quick        # the same from the repository root
//
// It reads TASKER_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres). Each
// system runs in a fresh schema of its own (bench_tasker_<n>, bench_river_<n>), dropped
// afterwards; DBOS, which wants a database, gets tasker_bench_dbos, dropped before and after.
// tasker also runs, in the handoff, throughput and DAG scenarios, on PostgreSQL with RabbitMQ
// (TASKER_RABBITMQ_URL, default amqp://guest:guest@127.0.0.1:5672/; broker queues named
// tasker-bench-<random>.*, deleted afterwards; skipped when no broker answers) and in memory
// (store/memory), each compared with tasker on PostgreSQL's own queue in the same run.
// See BENCHMARKS.md at the repository root for the scenarios and the published results.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strings"
	"time"
)

// sizes are the scenario parameters of one run.
type sizes struct {
	ChainLen        int           `json:"chain_len"`         // handoff: steps per chain
	Chains          int           `json:"chains"`            // handoff: chains per system
	LatencyTasks    int           `json:"latency_tasks"`     // task latency: tasks per shape
	ThroughputTasks int           `json:"throughput_tasks"`  // one-step tasks (River: jobs)
	Workers         int           `json:"workers"`           // throughput: workers per system
	DAGTasks        int           `json:"dag_tasks"`         // DAG throughput: diamond tasks
	DAGInFlight     int           `json:"dag_in_flight"`     // DAG throughput: tasks in flight
	FanOut          int           `json:"fan_out"`           // scale: parallel steps joined into one
	BigTask         int           `json:"big_task"`          // scale: steps of the created task
	IdleWindow      time.Duration `json:"idle_window_ns"`    // idle cost: measuring window
	PoolConns       int32         `json:"pool_conns"`        // connections per system's pool
	IdleWarmup      time.Duration `json:"idle_warmup_ns"`    // idle cost: settle time before measuring
	Warmup          int           `json:"warmup_iterations"` // untimed tasks/chains before measuring
}

var (
	fullSizes = sizes{ChainLen: 200, Chains: 3, LatencyTasks: 200, ThroughputTasks: 20000, Workers: 100,
		DAGTasks: 2000, DAGInFlight: 50, FanOut: 1000, BigTask: 10000, IdleWindow: 30 * time.Second,
		IdleWarmup: 11 * time.Second, PoolConns: 20, Warmup: 5}
	quickSizes = sizes{ChainLen: 20, Chains: 1, LatencyTasks: 25, ThroughputTasks: 1000, Workers: 100,
		DAGTasks: 150, DAGInFlight: 50, FanOut: 200, BigTask: 1000, IdleWindow: 2 * time.Second,
		IdleWarmup: time.Second, PoolConns: 20, Warmup: 2}
)

// scenario names, in run order.
var allScenarios = []string{"handoff", "latency", "throughput", "dag", "scale", "idle"}

// allSystems are the systems the bench knows: tasker on PostgreSQL with its own queue, tasker on
// PostgreSQL with RabbitMQ and tasker in memory (the last two in the handoff, throughput and DAG
// scenarios only), River and DBOS.
var allSystems = []string{"tasker", "tasker-rabbitmq", "tasker-memory", "river", "dbos"}

type options struct {
	quick      bool
	jsonOut    bool
	url        string
	rabbitURL  string
	scenarios  []string
	systems    []string
	png        string
	cpuProfile string
	stmtLog    bool
	sqlProfile bool
	markdown   string
	database   string
	quiet      float64
	quietWait  time.Duration
	// riverCooldowns are the River FetchCooldown settings to run.
	riverCooldowns []time.Duration
	sz             sizes
}

func main() {
	var o options
	var only, systems, cooldowns string
	var conns int
	flag.BoolVar(&o.quick, "quick", false, "smaller sizes: finishes in under a minute")
	flag.BoolVar(&o.jsonOut, "json", false, "print the results as JSON on stdout (the table goes to stderr)")
	flag.StringVar(&only, "only", strings.Join(allScenarios, ","), "scenarios to run: "+strings.Join(allScenarios, ","))
	flag.StringVar(&systems, "systems", strings.Join(allSystems, ","), "systems to run: "+strings.Join(allSystems, ","))
	flag.StringVar(&o.png, "png", "handoff.png", "where to write the handoff latency plot (\"\" for none)")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.BoolVar(&o.stmtLog, "statement-log", false, "log every statement of tasker's connections in the server log (log_min_duration_statement=0 for those sessions only; needs superuser)")
	flag.StringVar(&o.markdown, "md", "", "also write the environment and the table as Markdown to this file")
	flag.BoolVar(&o.sqlProfile, "sqlprofile", false, "print, for tasker, the time the client waited on each statement or batch (with -only handoff -systems tasker: per handoff step)")
	flag.StringVar(&o.database, "db", "tasker_bench", "database (dropped, created, and dropped at the end) for the tasker and River schemas, so that its statistics count only the bench; \"\" uses the URL's database")
	flag.Float64Var(&o.quiet, "quiet", 0, "before each system's run, wait until less than this share of the machine's CPU (0.25 = 25%) is busy; 0 does not wait")
	flag.DurationVar(&o.quietWait, "quiet-wait", 2*time.Minute, "the longest -quiet waits before measuring anyway")
	flag.StringVar(&cooldowns, "river-cooldowns", riverCooldownsDefault, "River FetchCooldown settings to run (River's minimum is 1ms)")
	flag.IntVar(&conns, "conns", 0, "connections in each system's pool (default 20)")
	flag.Parse()
	o.url = databaseURL()
	o.rabbitURL = rabbitURL()
	o.scenarios = splitList(only)
	o.systems = splitList(systems)
	for _, s := range o.scenarios {
		if !slices.Contains(allScenarios, s) {
			fail(fmt.Errorf("unknown scenario %q (have %s)", s, strings.Join(allScenarios, ",")))
		}
	}
	for _, s := range o.systems {
		if !slices.Contains(allSystems, s) {
			fail(fmt.Errorf("unknown system %q (have %s)", s, strings.Join(allSystems, ",")))
		}
	}
	for _, c := range splitList(cooldowns) {
		d, err := time.ParseDuration(c)
		if err != nil {
			fail(fmt.Errorf("-river-cooldowns: %w", err))
		}
		o.riverCooldowns = append(o.riverCooldowns, d)
	}
	o.sz = fullSizes
	if o.quick {
		o.sz = quickSizes
	}
	if conns > 0 {
		o.sz.PoolConns = int32(conns)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, o, os.Stdout, os.Stderr); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func databaseURL() string {
	if v := os.Getenv("TASKER_DATABASE_URL"); v != "" {
		return v
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// rabbitURL is the broker of the RabbitMQ variant: TASKER_RABBITMQ_URL, else the local one.
func rabbitURL() string {
	if v := os.Getenv("TASKER_RABBITMQ_URL"); v != "" {
		return v
	}
	return rabbitURLDefault
}

// Report is the JSON document of a run.
type Report struct {
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration_ns"`
	Mode     string        `json:"mode"`
	Sizes    sizes         `json:"sizes"`
	Env      Env           `json:"env"`
	Results  []Result      `json:"results"`
	// HandoffSamples are the handoff latencies behind the plot, by system.
	HandoffSamples map[string][]time.Duration `json:"handoff_samples_ns,omitempty"`
}

func run(ctx context.Context, o options, stdout, stderr io.Writer) error {
	start := time.Now()
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	b, err := newBench(ctx, o, stderr)
	if err != nil {
		return err
	}
	defer b.close()
	if o.sqlProfile {
		b.sqlProf = newSQLProfile()
	}
	rep := Report{Started: start, Mode: "full", Sizes: o.sz, Env: b.env}
	loadMax := make(chan float64, 1)
	stopLoad := make(chan struct{})
	go func() {
		m := load1()
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stopLoad:
				loadMax <- max(m, load1())
				return
			case <-t.C:
				m = max(m, load1())
			}
		}
	}()
	if o.quick {
		rep.Mode = "quick"
	}
	b.logf("PostgreSQL %s; %d CPUs; mode %s", b.env.PostgresVersion, b.env.CPUs, rep.Mode)
	for _, sc := range o.scenarios {
		if ctx.Err() != nil {
			break
		}
		t0 := time.Now()
		var err error
		switch sc {
		case "handoff":
			err = b.handoff(ctx)
		case "latency":
			err = b.latency(ctx)
		case "throughput":
			err = b.throughput(ctx)
		case "dag":
			err = b.dagThroughput(ctx)
		case "scale":
			err = b.scale(ctx)
		case "idle":
			err = b.idle(ctx)
		}
		if err == nil {
			err = b.checkDB(ctx)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", sc, err)
		}
		b.logf("%s done in %s", sc, time.Since(t0).Round(time.Millisecond))
	}
	if err := ctx.Err(); err != nil {
		return errors.New("interrupted")
	}
	compareBackends(b.results)
	rep.Results = b.results
	rep.Duration = time.Since(start)
	for _, s := range b.handoffSamples {
		if rep.HandoffSamples == nil {
			rep.HandoffSamples = map[string][]time.Duration{}
		}
		rep.HandoffSamples[s.Label] = s.Samples
	}
	rep.Env.LoadAvgEnd = loadAvg()
	close(stopLoad)
	rep.Env.LoadAvgMax = <-loadMax
	if o.png != "" && len(b.handoffSamples) > 0 {
		if err := plotHandoff(o.png, b.handoffSamples); err != nil {
			return fmt.Errorf("plot: %w", err)
		}
		b.logf("wrote %s", o.png)
	}
	tableOut := stdout
	if o.jsonOut {
		tableOut = stderr
	}
	printEnv(tableOut, rep)
	printTable(tableOut, rep.Results)
	printBackends(tableOut, rep.Results)
	if b.sqlProf != nil {
		b.sqlProf.print(tableOut, b.sqlProfUnits, b.sqlProfUnit)
	}
	if o.markdown != "" {
		if err := writeMarkdown(o.markdown, rep); err != nil {
			return err
		}
	}
	if o.jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return nil
}

package tasker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/store/memory"
)

// A task whose step no engine can run (its handler is registered nowhere) stays in process until
// the staleness detector moves it, past its threshold, to the dead-letter queue and to error. The
// threshold is set in Go (Config.Staleness.Templates) because a template's lifecycle counts in
// minutes; Engine.Staleness shows where each task stands meanwhile.
func ExampleEngine_Staleness() {
	engine, err := tasker.NewEngine(tasker.Config{
		Store:     memory.New(),
		LeaderTTL: 200 * time.Millisecond,
		Staleness: tasker.StalenessConfig{
			Interval: 50 * time.Millisecond,
			Templates: map[string]tasker.StalenessThresholds{
				"shop/stuck": {MaxInProcess: 300 * time.Millisecond, Action: tasker.StalenessDeadLetter},
			},
		},
	})
	if err != nil {
		panic(err)
	}
	tmpl, err := tasker.ParseTemplate([]byte(`
name: stuck
namespace_name: shop
version: 1.0.0
steps:
  - {name: ship, handler: {callable: carrier_that_never_came}}
`))
	if err != nil {
		panic(err)
	}
	if err := engine.Register(tmpl); err != nil {
		panic(err)
	}
	stop := runWorkers(engine)
	defer stop()
	ctx := context.Background()
	task, err := engine.CreateTask(ctx, tasker.TaskRequest{Namespace: "shop", Name: "stuck", Context: map[string]any{}})
	if err != nil {
		panic(err)
	}

	reports, err := engine.Staleness(ctx, tasker.StalenessOptions{Namespace: "shop"})
	if err != nil {
		panic(err)
	}
	r := reports[0]
	fmt.Println(r.State, r.Threshold, r.Limit, r.Band)

	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	task, err = engine.WaitTask(wctx, task.ID)
	if err != nil {
		panic(err)
	}
	fmt.Println(task.State)
	trs, err := engine.Transitions(ctx, task.ID)
	if err != nil {
		panic(err)
	}
	for _, tr := range trs {
		if tr.StepName == "" && tr.To == string(tasker.TaskError) {
			var meta struct{ Reason, Threshold, Limit string }
			_ = json.Unmarshal(tr.Metadata, &meta)
			fmt.Println(meta.Reason, meta.Threshold, meta.Limit)
		}
	}
	// Output:
	// steps_in_process max_steps_in_process 300ms healthy
	// error
	// staleness_timeout max_steps_in_process 300ms
}

package tasker_test

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/store/memory"
)

// A global limit per customer: at most one step in progress for each value of the context field
// customer, across every engine on the store, while different customers run side by side. On
// PostgreSQL only the engine's construction differs; every engine sets the same Limits.
func ExampleLimit() {
	ctx := context.Background()
	engine, err := tasker.NewEngine(tasker.Config{
		Store:       memory.New(),
		Concurrency: 8,
		Limits:      []tasker.Limit{{Namespace: "shop", ContextKey: "customer", Concurrency: 1}},
	})
	if err != nil {
		panic(err)
	}
	tmpl, err := tasker.ParseTemplate([]byte(`
name: refund
namespace_name: shop
version: 1.0.0
steps:
  - name: pay_back
    handler: {callable: pay_back}
`))
	if err != nil {
		panic(err)
	}
	if err := engine.Register(tmpl); err != nil {
		panic(err)
	}
	var mu sync.Mutex
	running, most := map[string]int{}, map[string]int{}
	engine.HandleFunc("pay_back", func(_ context.Context, s *tasker.Step) (any, error) {
		var in struct{ Customer string }
		if err := s.Input(&in); err != nil {
			return nil, tasker.Permanent(err)
		}
		mu.Lock()
		running[in.Customer]++
		most[in.Customer] = max(most[in.Customer], running[in.Customer])
		mu.Unlock()
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		running[in.Customer]--
		mu.Unlock()
		return nil, nil
	})
	var tasks []*tasker.Task
	for i := range 6 {
		for _, c := range []string{"ann", "bob"} {
			task, err := engine.CreateTask(ctx, tasker.TaskRequest{Namespace: "shop", Name: "refund",
				Context: map[string]any{"customer": c, "refund": i}})
			if err != nil {
				panic(err)
			}
			tasks = append(tasks, task)
		}
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- engine.RunWorkers(wctx) }()
	for _, task := range tasks {
		if _, err := engine.WaitTask(ctx, task.ID); err != nil {
			panic(err)
		}
	}
	stop()
	if err := <-done; err != nil {
		panic(err)
	}
	fmt.Println("most at once for ann:", most["ann"], "for bob:", most["bob"])
	// Output:
	// most at once for ann: 1 for bob: 1
}

package memory_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/store/memory"
)

const greetYAML = `
name: greet
namespace_name: demo
version: 1.0.0
steps:
  - name: hello
    handler: {callable: hello}
`

// The whole engine in one process, with no database: the memory store, and its own queue
// (queue/memqueue) as the engine's default. RunWorkers stops when its context is cancelled;
// waiting for it to return leaves no goroutine behind. tasker.NewEngine(tasker.Config{Store: memory.New()}) builds the same
// engine, and package taskertest wraps all of this for tests.
func Example() {
	ctx := context.Background()
	engine, err := tasker.NewEngine(tasker.Config{Store: memory.New()})
	if err != nil {
		log.Fatal(err)
	}
	tmpl, err := tasker.ParseTemplate([]byte(greetYAML))
	if err != nil {
		log.Fatal(err)
	}
	if err := engine.Register(tmpl); err != nil {
		log.Fatal(err)
	}
	engine.HandleFunc("hello", func(ctx context.Context, s *tasker.Step) (any, error) {
		var in struct{ Name string }
		if err := s.Input(&in); err != nil {
			return nil, tasker.Permanent(err)
		}
		return "hello, " + in.Name, nil
	})

	workCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- engine.RunWorkers(workCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			log.Fatal(err)
		}
	}()

	task, err := engine.CreateTask(ctx, tasker.TaskRequest{
		Namespace: "demo", Name: "greet",
		Context: map[string]any{"name": "Ada"},
	})
	if err != nil {
		log.Fatal(err)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	task, err = engine.WaitTask(waitCtx, task.ID)
	if err != nil {
		log.Fatal(err)
	}
	var greeting string
	if err := task.Result("hello", &greeting); err != nil {
		log.Fatal(err)
	}
	hello, _ := task.Step("hello")
	fmt.Println("task:", task.State)
	fmt.Println("step:", hello.State, "after", hello.Attempts, "attempt")
	fmt.Println("result:", greeting)
	// Output:
	// task: complete
	// step: complete after 1 attempt
	// result: hello, Ada
}

package tasker_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/store/memory"
)

// An operator puts a task in the dead-letter queue by hand, lists the queue, takes the entry the
// investigation queue ranks first, and resolves it, once. On PostgreSQL only the engine's
// construction differs.
func ExampleEngine_DeadLetters() {
	ctx := context.Background()
	engine, err := tasker.NewEngine(tasker.Config{Store: memory.New()})
	if err != nil {
		panic(err)
	}
	tmpl, err := tasker.ParseTemplate([]byte(exampleOrderYAML))
	if err != nil {
		panic(err)
	}
	if err := engine.Register(tmpl); err != nil {
		panic(err)
	}
	task, err := engine.CreateTask(ctx, tasker.TaskRequest{Namespace: "shop", Name: "order", Context: map[string]int{"amount": 10}})
	if err != nil {
		panic(err)
	}
	if _, err := engine.DeadLetterTask(ctx, task.ID, tasker.DeadLetterRequest{Reason: "customer disputes the order", By: "alice"}); err != nil {
		panic(err)
	}

	page, err := engine.DeadLetters(ctx, tasker.DeadLetterFilter{Status: tasker.DeadLetterPending, Limit: 20})
	if err != nil {
		panic(err)
	}
	for _, d := range page.Entries {
		fmt.Println("pending:", d.Namespace+"/"+d.TaskName, d.Reason, "more pages:", page.NextCursor != "")
	}

	queue, err := engine.InvestigationQueue(ctx, 10)
	if err != nil {
		panic(err)
	}
	first := queue.Entries[0]
	fmt.Printf("investigate first: %s (score %.0f)\n", first.Reason, first.Score)

	resolved, err := engine.ResolveDeadLetter(ctx, first.ID, tasker.DeadLetterResolution{
		Status: tasker.DeadLetterCancelled, Notes: "dispute withdrawn", By: "alice"})
	if err != nil {
		panic(err)
	}
	fmt.Println("resolved:", resolved.Status, "by", resolved.ResolvedBy)

	_, err = engine.ResolveDeadLetter(ctx, first.ID, tasker.DeadLetterResolution{Status: tasker.DeadLetterManuallyResolved, By: "bob"})
	fmt.Println("resolved twice:", errors.Is(err, tasker.ErrIllegalResolution))

	stats, err := engine.DeadLetterStats(ctx, tasker.DeadLetterStatsFilter{Since: time.Now().Add(-time.Hour)})
	if err != nil {
		panic(err)
	}
	for _, s := range stats {
		fmt.Println("stats:", s.Reason, s.Total, "cancelled:", s.ByStatus[tasker.DeadLetterCancelled])
	}
	// Output:
	// pending: shop/order manual_dlq more pages: false
	// investigate first: manual_dlq (score 10)
	// resolved: cancelled by alice
	// resolved twice: true
	// stats: manual_dlq 1 cancelled: 1
}

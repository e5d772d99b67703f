package memqueue_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/tasker-systems/tasker/queue/memqueue"
)

// A round trip with pgqueue's semantics and no database: a read message is hidden for its
// visibility timeout until it is acked (gone for good) or given back (delivered again, its read
// count grown). The memory queue has no transactions, so SendTx takes a nil pgx.Tx.
func Example() {
	ctx := context.Background()
	q := memqueue.New()

	payloads := [][]byte{[]byte(`{"order": 1}`), []byte(`{"order": 2}`)}
	if err := q.SendTx(ctx, nil, "orders", payloads, 0); err != nil {
		log.Fatal(err)
	}

	msgs, err := q.Read(ctx, "orders", 10, time.Minute)
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range msgs {
		fmt.Printf("read %d: %s (read %d time)\n", m.ID, m.Payload, m.ReadCount)
	}
	hidden, _ := q.Read(ctx, "orders", 10, time.Minute)
	fmt.Println("visible while claimed:", len(hidden))

	// The first is done; the second goes back for another try.
	if err := q.Ack(ctx, "orders", msgs[0].ID); err != nil {
		log.Fatal(err)
	}
	if err := q.RetryLater(ctx, "orders", msgs[1].ID, 0); err != nil {
		log.Fatal(err)
	}

	again, _ := q.Read(ctx, "orders", 10, time.Minute)
	for _, m := range again {
		fmt.Printf("read %d: %s (read %d times)\n", m.ID, m.Payload, m.ReadCount)
		if err := q.Ack(ctx, "orders", m.ID); err != nil {
			log.Fatal(err)
		}
	}
	left, _ := q.Read(ctx, "orders", 10, time.Minute)
	fmt.Println("left:", len(left))
	// Output:
	// read 1: {"order": 1} (read 1 time)
	// read 2: {"order": 2} (read 1 time)
	// visible while claimed: 0
	// read 2: {"order": 2} (read 2 times)
	// left: 0
}

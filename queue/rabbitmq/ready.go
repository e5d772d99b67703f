package rabbitmq

import (
	"context"
	"errors"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/tasker-systems/tasker/queue"
)

var _ queue.ReadyCounter = (*Queue)(nil)

// ReadyCount returns how many messages wait ready in the broker queue of name: published and not
// yet delivered to a consumer (messages delivered and not yet acknowledged are not counted, nor
// are delayed ones still in a delay queue). A queue never declared counts 0. It implements
// queue.ReadyCounter, with which tasker's sweeper holds back re-publishing while a queue has a
// backlog.
func (q *Queue) ReadyCount(ctx context.Context, name string) (int, error) {
	if err := q.checkName(name); err != nil {
		return 0, err
	}
	conn, _, err := q.pub.await(ctx, nil)
	if err != nil {
		if errors.Is(err, ErrClosed) {
			return 0, err
		}
		return 0, fmt.Errorf("%w: %w", ErrNotConnected, err)
	}
	ch, err := conn.Channel()
	if err != nil {
		return 0, fmt.Errorf("open channel: %w", err)
	}
	defer func() { _ = ch.Close() }()
	info, err := ch.QueueDeclarePassive(q.QueueName(name), false, false, false, false, nil)
	if err != nil {
		var ae *amqp.Error
		if errors.As(err, &ae) && ae.Code == amqp.NotFound {
			return 0, nil
		}
		return 0, fmt.Errorf("inspect queue %s: %w", q.QueueName(name), err)
	}
	return info.Messages, nil
}

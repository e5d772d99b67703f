package memory

import (
	"context"
	"sync"

	"github.com/tasker-systems/tasker/store"
)

var _ store.EventListener = (*Store)(nil)

// events are the store's subscribers, apart from its state lock: announcing never waits for it.
type events struct {
	mu   sync.Mutex
	subs map[*func(store.Event)]struct{}
}

// ListenEvents implements store.EventListener: it calls handle for every task cancelled in this
// store (by any engine sharing it) until ctx ends. Creations are never announced: the memory store
// has no callers' transactions whose commit an engine could miss.
func (s *Store) ListenEvents(ctx context.Context, handle func(store.Event)) error {
	h := &handle
	s.ev.mu.Lock()
	if s.ev.subs == nil {
		s.ev.subs = map[*func(store.Event)]struct{}{}
	}
	s.ev.subs[h] = struct{}{}
	s.ev.mu.Unlock()
	handle(store.Event{Kind: store.EventListening})
	<-ctx.Done()
	s.ev.mu.Lock()
	delete(s.ev.subs, h)
	s.ev.mu.Unlock()
	return nil
}

// announce calls every subscriber with ev; it is called after the change committed, without the
// state lock.
func (s *Store) announce(ev store.Event) {
	s.ev.mu.Lock()
	defer s.ev.mu.Unlock()
	for h := range s.ev.subs {
		(*h)(ev)
	}
}

package tasker

import (
	"errors"

	"github.com/tasker-systems/tasker/store/memory"
)

// NewMemoryEngine returns an engine on the in-memory store and queue (store/memory): the whole
// engine in one process with no database, for unit tests of workflows and zero-setup demos. It
// keeps nothing when the process ends. cfg.Store and cfg.Queue must be nil; the rest of cfg
// applies as with NewEngine. See also package taskertest.
func NewMemoryEngine(cfg Config) (*Engine, error) {
	if cfg.Store != nil || cfg.Queue != nil {
		return nil, errors.New("tasker: NewMemoryEngine chooses its own store and queue; leave Config.Store and Config.Queue nil")
	}
	cfg.Store = memory.New()
	return NewEngine(cfg)
}

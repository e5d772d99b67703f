package tasker

import (
	"context"
	"errors"

	"github.com/tasker-systems/tasker/dag"
	"github.com/tasker-systems/tasker/internal/engine"
)

// compile makes the engine's run-time view of a template that has its defaults and environment
// applied and has been validated. Register sets its Definition and Checksum.
func compile(c *Template) (*engine.Template, error) {
	nodes := make([]dag.Node, len(c.Steps))
	for i, s := range c.Steps {
		nodes[i] = dag.Node{Name: s.Name, Deps: s.Dependencies}
	}
	g, err := dag.Build(nodes)
	if err != nil {
		return nil, err
	}
	t := &engine.Template{Namespace: c.Namespace, Name: c.Name, Version: c.Version, Graph: g,
		Steps: make([]engine.Step, len(c.Steps))}
	for i := range c.Steps {
		t.Steps[i] = compileStep(&c.Steps[i])
	}
	t.ClassifyDynamic()
	return t, nil
}

func compileStep(s *StepTemplate) engine.Step {
	cs := engine.Step{
		Name: s.Name, Callable: s.Handler.Callable, Method: s.Handler.Method, Type: engine.StepType(s.Type),
		Dependencies: s.Dependencies, Init: s.Handler.Initialization, Timeout: s.Timeout,
		Retry: engine.Retry{MaxAttempts: s.Retry.MaxAttempts, Retryable: !s.Retry.NoRetry, Backoff: string(s.Retry.Backoff),
			Base: s.Retry.BackoffBase, Max: s.Retry.MaxBackoff},
	}
	if b := s.Batch; b != nil {
		cs.Batch = &engine.Batch{Size: b.BatchSize, Parallelism: b.Parallelism, MaxWorkers: b.MaxWorkers,
			CursorField: b.CursorField, WorkerTemplate: b.WorkerTemplate, FailureStrategy: string(b.FailureStrategy)}
	}
	return cs
}

// adapt wraps a Handler for the engine, which knows nothing of the root's error types: the
// handler's error is sorted here into the engine's classes.
func adapt(h Handler) engine.Handler { return adapter{h: h} }

type adapter struct {
	h Handler
	e *Engine // for Step.Child; nil in unit tests of the adapter
}

func (a adapter) Handle(ctx context.Context, at *engine.Attempt) engine.Return {
	s := stepFrom(at)
	s.engine = a.e
	res, err := a.h.Handle(ctx, s)
	if err == nil {
		return engine.Return{Result: res}
	}
	var perm *PermanentError
	if errors.As(err, &perm) {
		return engine.Return{Err: perm.Err, Class: engine.ClassPermanent}
	}
	var pe *parkError
	if errors.As(err, &pe) {
		return engine.Return{Err: err, Class: engine.ClassPark, RetryAfter: pe.until.Sub(a.e.now()), Until: pe.until}
	}
	var ra *RetryAfterError
	if errors.As(err, &ra) {
		return engine.Return{Err: err, Class: engine.ClassRetryAfter, RetryAfter: ra.Delay}
	}
	return engine.Return{Err: err, Class: engine.ClassRetryable}
}

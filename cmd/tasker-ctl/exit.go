package main

import (
	"errors"
	"fmt"

	"github.com/tasker-systems/tasker"
)

// The exit codes; the root command's long help and README.md document them.
const (
	exitOK          = 0 // success
	exitFailure     = 1 // validation problems, a refused action, a task that did not complete
	exitUsage       = 2 // a bad flag, argument or JSON value
	exitNotFound    = 3 // no such task, step, template or dead-letter entry
	exitUnreachable = 4 // the database does not answer
)

// exitError carries the exit code its error calls for.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageErr is a usage error (exit 2).
func usageErr(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// failure is an error that exits 1 with its message.
func failure(format string, args ...any) error {
	return &exitError{code: exitFailure, err: fmt.Errorf(format, args...)}
}

// silentFailure exits with the code and prints nothing more: the command has said it already.
type silentFailure struct{ code int }

func (e *silentFailure) Error() string { return fmt.Sprintf("exit %d", e.code) }

// exitCode maps an error to its exit code.
func exitCode(err error) int {
	var ee *exitError
	var sf *silentFailure
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &sf):
		return sf.code
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, tasker.ErrTaskNotFound), errors.Is(err, tasker.ErrStepNotFound),
		errors.Is(err, tasker.ErrTemplateNotFound), errors.Is(err, tasker.ErrDeadLetterNotFound):
		return exitNotFound
	default:
		return exitFailure
	}
}

package tasker

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/tasker-systems/tasker/internal/jsonsafe"
	"github.com/tasker-systems/tasker/internal/pgname"
	"github.com/tasker-systems/tasker/queue"
)

// MaxNameBytes bounds, in bytes, each name a template carries that the database indexes or a queue
// is named after: its namespace, name and version, its step names and dependencies, and its handler
// callables. PostgreSQL's btree indexes hold an entry of about 2.7 KB at most, and the registry's key
// (namespace, name, version) is one entry; 255 bytes each keeps every index entry well inside that
// and matches the longest name AMQP allows. A queue backend may allow less for namespaces (see
// queue.NameValidator).
const MaxNameBytes = 255

// Problem codes for names, beside the Code constants of template validation.
const (
	// CodeNameTooLong: a name is longer than MaxNameBytes.
	CodeNameTooLong = "NAME_TOO_LONG"
	// CodeInvalidEncoding: a name (or another string of the template) holds a NUL character or
	// is not valid UTF-8, which PostgreSQL's text and jsonb columns cannot store.
	CodeInvalidEncoding = "INVALID_ENCODING"
	// CodeQueueNameRejected: the configured queue backend cannot name a queue after the
	// namespace (queue.NameValidator), for example because the broker's name limit leaves too
	// little room beside its prefix and suffixes.
	CodeQueueNameRejected = "QUEUE_NAME_REJECTED"
)

// checkTemplateNames finds the names of a template (defaults applied) that the database or the
// queue could not take: each one is refused here rather than at every CreateTask.
func checkTemplateNames(t *Template, q queue.Queue) []Problem {
	var probs []Problem
	check := func(step, field, value string) {
		why := pgname.Check(value)
		if why == "" {
			return
		}
		code := CodeInvalidEncoding
		if len(value) > MaxNameBytes && utf8.ValidString(value) && strings.IndexByte(value, 0) < 0 {
			code = CodeNameTooLong
		}
		probs = append(probs, Problem{Code: code, Step: pgname.Truncate(step), Field: field,
			Message: fmt.Sprintf("%q %s", pgname.Truncate(value), why)})
	}
	check("", "namespace_name", t.Namespace)
	check("", "name", t.Name)
	check("", "version", t.Version)
	for i, s := range t.Steps {
		p := fmt.Sprintf("steps[%d]", i)
		check(s.Name, p+".name", s.Name)
		check(s.Name, p+".handler.callable", s.Handler.Callable)
		check(s.Name, p+".handler.method", s.Handler.Method)
		for k, d := range s.Dependencies {
			check(s.Name, fmt.Sprintf("%s.dependencies[%d]", p, k), d)
		}
	}
	if nv, ok := q.(queue.NameValidator); ok && t.Namespace != "" && pgname.Check(t.Namespace) == "" {
		if err := nv.ValidateQueueName(t.Namespace); err != nil {
			probs = append(probs, Problem{Code: CodeQueueNameRejected, Field: "namespace_name",
				Message: fmt.Sprintf("the queue backend cannot serve namespace %q: %v", pgname.Truncate(t.Namespace), err)})
		}
	}
	return probs
}

// checkDefinition reports a template's JSON definition that PostgreSQL's jsonb refuses: a NUL
// character (\u0000) in a string, a lone surrogate or a number out of numeric's range, such as in a
// description or a handler's initialization (a Go template may hold json.Number or
// json.RawMessage values there). encoding/json already turns invalid UTF-8 into U+FFFD.
func checkDefinition(def []byte) []Problem {
	err := jsonsafe.Check(def)
	if err == nil {
		return nil
	}
	return []Problem{{Code: CodeInvalidEncoding,
		Message: fmt.Sprintf("the template's definition cannot be stored: %v", err)}}
}

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"
)

// parseID reads a task's, step's or entry's UUID (exit 2 when it is not one).
func parseID(what, s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, usageErr("%s %q is not a UUID", what, s)
	}
	return id, nil
}

// readJSON reads a JSON value given inline, as @FILE, or as - (standard input); an empty flag is
// nil. A value that is not JSON is a usage error (exit 2) that says where it broke.
func (a *app) readJSON(flag, s string, object bool) (json.RawMessage, error) {
	if s == "" {
		return nil, nil
	}
	var data []byte
	switch {
	case s == "-":
		b, err := io.ReadAll(a.in)
		if err != nil {
			return nil, fmt.Errorf("%s: read standard input: %w", flag, err)
		}
		data = b
	case strings.HasPrefix(s, "@"):
		b, err := os.ReadFile(s[1:])
		if err != nil {
			return nil, usageErr("%s: %v", flag, err)
		}
		data = b
	default:
		data = []byte(s)
	}
	return checkJSON(flag, data, object)
}

// checkJSON reports malformed JSON (or, with object, JSON that is not an object) as a usage error.
func checkJSON(what string, data []byte, object bool) (json.RawMessage, error) {
	var v any
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		if se, ok := err.(*json.SyntaxError); ok {
			return nil, usageErr("%s: malformed JSON at byte %d: %v", what, se.Offset, err)
		}
		return nil, usageErr("%s: malformed JSON: %v", what, err)
	}
	if d.More() {
		return nil, usageErr("%s: malformed JSON: more than one value", what)
	}
	if _, ok := v.(map[string]any); object && !ok {
		return nil, usageErr("%s: want a JSON object, got %s", what, bytes.TrimSpace(data))
	}
	return json.RawMessage(bytes.TrimSpace(data)), nil
}

// parseSince reads --since: a duration back from now (90m, 24h) or an RFC 3339 time.
func parseSince(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return time.Now().Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation(time.DateOnly, s, time.Local); err == nil {
		return t, nil
	}
	return time.Time{}, usageErr("--since %q: want a duration (24h) or a time (2006-01-02 or RFC 3339)", s)
}

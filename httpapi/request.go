package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// pathID reads a path parameter that must be a UUID.
func pathID(r *http.Request, name string) (uuid.UUID, error) {
	v := r.PathValue(name)
	id, err := uuid.Parse(v)
	if err != nil || len(v) != 36 {
		return uuid.Nil, badRequest(name, "%s %q is not a UUID", name, v)
	}
	return id, nil
}

// decodeBody decodes a JSON object body into v: at most maxBody bytes, no unknown field, nothing
// after the object.
func (s *server) decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	// Requiring the JSON media type also keeps the writes out of reach of the "simple" requests a
	// page on another site can send without a CORS preflight.
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		return &requestError{status: http.StatusUnsupportedMediaType, kind: "unsupported-media-type",
			msg: fmt.Sprintf("the body is %q; send application/json", r.Header.Get("Content-Type"))}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, s.maxBody))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		if errors.Is(err, io.EOF) {
			return badRequest("body", "the body is empty; send a JSON object")
		}
		return badRequest("body", "the body is not a valid request: %v", err)
	}
	if dec.More() {
		return badRequest("body", "the body holds more than one JSON value")
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return badRequest("body", "the body holds more than one JSON value")
	}
	return nil
}

// query reads the URL's query parameters, refusing the unknown ones so that a misspelt filter is
// not silently ignored.
type query struct {
	r    *http.Request
	errs []string
}

func newQuery(r *http.Request, known ...string) *query {
	q := &query{r: r}
	for k := range r.URL.Query() {
		found := false
		for _, n := range known {
			found = found || n == k
		}
		if !found {
			q.errs = append(q.errs, fmt.Sprintf("unknown query parameter %q (known: %s)", k, strings.Join(known, ", ")))
		}
	}
	return q
}

func (q *query) str(name string) string { return q.r.URL.Query().Get(name) }

func (q *query) limit(def int) int {
	v := q.str("limit")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > ListLimitMax {
		q.errs = append(q.errs, fmt.Sprintf("limit %q is not a number from 1 to %d", v, ListLimitMax))
		return def
	}
	return n
}

func (q *query) time(name string) time.Time {
	v := q.str(name)
	if v == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		q.errs = append(q.errs, fmt.Sprintf("%s %q is not an RFC 3339 time", name, v))
	}
	return t
}

func (q *query) uuid(name string) uuid.UUID {
	v := q.str(name)
	if v == "" {
		return uuid.Nil
	}
	id, err := uuid.Parse(v)
	if err != nil {
		q.errs = append(q.errs, fmt.Sprintf("%s %q is not a cursor a page returned", name, v))
	}
	return id
}

// err returns the problems found, as one 400 listing them all.
func (q *query) err() error {
	if len(q.errs) == 0 {
		return nil
	}
	return &requestError{status: http.StatusBadRequest, kind: "invalid-request", field: "query",
		msg: "the query is invalid: " + strings.Join(q.errs, "; "), violations: q.errs}
}

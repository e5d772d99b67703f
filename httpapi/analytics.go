package httpapi

import (
	"net/http"
	"net/url"

	"github.com/tasker-systems/tasker"
)

// window reads an analytics window from the query: since, until (RFC 3339), namespace.
func window(q *query) tasker.AnalyticsWindow {
	return tasker.AnalyticsWindow{Since: q.time("since"), Until: q.time("until"), Namespace: q.str("namespace")}
}

func (s *server) performance(w http.ResponseWriter, r *http.Request) error {
	q := newQuery(r, "since", "until", "namespace")
	win := window(q)
	if err := q.err(); err != nil {
		return err
	}
	p, err := s.e.Performance(r.Context(), win)
	if err != nil {
		return err
	}
	doc := performanceDoc{Window: windowDocOf(p.Window), Templates: make([]templatePerfDoc, 0, len(p.Templates)),
		Steps: stepPerfDocs(p.Steps)}
	for _, t := range p.Templates {
		doc.Templates = append(doc.Templates, templatePerfDoc{Namespace: t.Namespace, Name: t.Name, Version: t.Version,
			Tasks: t.Tasks, Completed: t.Completed, Failed: t.Failed, Cancelled: t.Cancelled, SuccessRate: t.SuccessRate,
			DurationP50Seconds: t.DurationP50.Seconds(), DurationP95Seconds: t.DurationP95.Seconds()})
	}
	writeJSON(w, http.StatusOK, doc)
	return nil
}

func (s *server) bottlenecks(w http.ResponseWriter, r *http.Request) error {
	q := newQuery(r, "since", "until", "namespace", "limit")
	win := window(q)
	limit := q.limit(tasker.BottlenecksLimitDefault)
	if err := q.err(); err != nil {
		return err
	}
	b, err := s.e.Bottlenecks(r.Context(), win, limit)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, bottlenecksDoc{Window: windowDocOf(b.Window), Slowest: stepPerfDocs(b.Slowest),
		MostRetried: stepPerfDocs(b.MostRetried)})
	return nil
}

// healthReport serves the detailed health report (healthhttp's /detailed document): 200 while the
// engine is ok or degraded, 503 when it is down.
func (s *server) healthReport(w http.ResponseWriter, r *http.Request) error {
	r2 := r.Clone(r.Context())
	r2.URL = &url.URL{Path: "/v1/health/detailed", RawQuery: r.URL.RawQuery}
	s.health.ServeHTTP(w, r2)
	return nil
}

// healthProbe serves healthhttp's live, ready and detailed documents.
func (s *server) healthProbe(w http.ResponseWriter, r *http.Request) error {
	switch p := r.PathValue("probe"); p {
	case "live", "ready", "detailed":
		s.health.ServeHTTP(w, r)
		return nil
	default:
		return &requestError{status: http.StatusNotFound, kind: "not-found", msg: "no such health probe: " + p + " (live, ready, detailed)"}
	}
}

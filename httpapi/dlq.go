package httpapi

import (
	"net/http"

	"github.com/tasker-systems/tasker"
)

func (s *server) listDeadLetters(w http.ResponseWriter, r *http.Request) error {
	q := newQuery(r, "status", "reason", "namespace", "since", "limit", "cursor")
	f := tasker.DeadLetterFilter{Status: tasker.DeadLetterStatus(q.str("status")), Reason: tasker.DeadLetterReason(q.str("reason")),
		Namespace: q.str("namespace"), Since: q.time("since"), Limit: q.limit(ListLimitDefault), Cursor: q.str("cursor")}
	if err := q.err(); err != nil {
		return err
	}
	page, err := s.e.DeadLetters(r.Context(), f)
	if err != nil {
		return err
	}
	doc := deadLettersDoc{Entries: make([]deadLetterDoc, 0, len(page.Entries)), NextCursor: page.NextCursor}
	for i := range page.Entries {
		doc.Entries = append(doc.Entries, deadLetterDocOf(&page.Entries[i]))
	}
	writeJSON(w, http.StatusOK, doc)
	return nil
}

func (s *server) taskDeadLetter(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	d, err := s.e.TaskDeadLetter(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, deadLetterDocOf(d))
	return nil
}

// resolveBody is PATCH /v1/dlq/entry/{id}'s body.
type resolveBody struct {
	// Status is manually_resolved, permanently_failed or cancelled.
	Status     string `json:"status"`
	Notes      string `json:"notes"`
	ResolvedBy string `json:"resolved_by"`
}

func (s *server) resolveDeadLetter(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	var b resolveBody
	if err := s.decodeBody(w, r, &b); err != nil {
		return err
	}
	if !tasker.DeadLetterStatus(b.Status).Valid() {
		return badRequest("status", "status %q is not a dead-letter status", b.Status)
	}
	d, err := s.e.ResolveDeadLetter(r.Context(), id, tasker.DeadLetterResolution{Status: tasker.DeadLetterStatus(b.Status),
		Notes: b.Notes, By: b.ResolvedBy})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, deadLetterDocOf(d))
	return nil
}

func (s *server) deadLetterStats(w http.ResponseWriter, r *http.Request) error {
	q := newQuery(r, "namespace", "since")
	f := tasker.DeadLetterStatsFilter{Namespace: q.str("namespace"), Since: q.time("since")}
	if err := q.err(); err != nil {
		return err
	}
	st, err := s.e.DeadLetterStats(r.Context(), f)
	if err != nil {
		return err
	}
	doc := statsDoc{Stats: make([]deadLetterStatsDoc, 0, len(st))}
	for _, x := range st {
		by := map[string]int{}
		for k, v := range x.ByStatus {
			by[string(k)] = v
		}
		doc.Stats = append(doc.Stats, deadLetterStatsDoc{Reason: string(x.Reason), Total: x.Total, ByStatus: by,
			MeanTimeToResolutionSeconds: x.MeanTimeToResolution.Seconds()})
	}
	writeJSON(w, http.StatusOK, doc)
	return nil
}

func (s *server) investigation(w http.ResponseWriter, r *http.Request) error {
	q := newQuery(r, "limit")
	limit := q.limit(tasker.InvestigationLimitDefault)
	if err := q.err(); err != nil {
		return err
	}
	inv, err := s.e.InvestigationQueue(r.Context(), limit)
	if err != nil {
		return err
	}
	doc := investigationDoc{Entries: make([]deadLetterDoc, 0, len(inv.Entries)), Pending: inv.Pending, Truncated: inv.Truncated}
	for i := range inv.Entries {
		d := deadLetterDocOf(&inv.Entries[i].DeadLetter)
		score := inv.Entries[i].Score
		d.Score = &score
		doc.Entries = append(doc.Entries, d)
	}
	writeJSON(w, http.StatusOK, doc)
	return nil
}

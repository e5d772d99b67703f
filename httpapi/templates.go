package httpapi

import (
	"encoding/json"
	"net/http"
)

func (s *server) listTemplates(w http.ResponseWriter, r *http.Request) error {
	q := newQuery(r, "namespace")
	if err := q.err(); err != nil {
		return err
	}
	doc := templatesDoc{Templates: []templateSummaryDoc{}}
	for _, t := range s.e.Templates() {
		if ns := q.str("namespace"); ns == "" || ns == t.Namespace {
			doc.Templates = append(doc.Templates, templateSummaryOf(t))
		}
	}
	writeJSON(w, http.StatusOK, doc)
	return nil
}

func (s *server) getTemplate(w http.ResponseWriter, r *http.Request) error {
	t, err := s.e.Template(r.PathValue("namespace"), r.PathValue("name"), r.PathValue("version"))
	if err != nil {
		return err
	}
	def, err := json.Marshal(t)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, templateDoc{templateSummaryDoc: templateSummaryOf(t), Mermaid: t.Mermaid(), Definition: def})
	return nil
}

package engine

import "sort"

// Templates lists the registered templates, by namespace, name and version (versions compared as
// Template does).
func (e *Engine) Templates() []*Template {
	e.mu.RLock()
	out := make([]*Template, 0, len(e.templates))
	for _, versions := range e.templates {
		out = append(out, versions...)
	}
	e.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return compareVersions(a.Version, b.Version) < 0
	})
	return out
}

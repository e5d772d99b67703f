package diagram

import (
	"strconv"
	"strings"
)

// Mermaid returns g as a Mermaid flowchart, top to bottom: one node per step, shaped by its type,
// one arrow per dependency, and, for nodes with a Status, a class per status with its colours.
// Labels are quoted, and every character that Mermaid could read as syntax or markup is written
// as an entity code (#quot;, #60; and the like), so any name draws as itself.
func Mermaid(g Graph) string {
	p := prepare(g)
	var b strings.Builder
	b.WriteString("flowchart TD\n")
	if g.Title != "" {
		b.WriteString("    %% " + oneLine(g.Title) + "\n")
	}
	for _, n := range p.nodes {
		label := mermaidText(n.Name)
		if n.Detail != "" {
			label += "<br/>" + mermaidText(n.Detail)
		}
		open, end := mermaidShape(n.Shape)
		b.WriteString("    " + p.ids[n.Name] + open + `"` + label + `"` + end + "\n")
	}
	for _, e := range p.edges {
		b.WriteString("    " + p.ids[e.From] + " --> " + p.ids[e.To] + "\n")
	}
	for _, s := range p.used {
		st := styles[s]
		def := "fill:" + st.fill + ",stroke:" + st.stroke + ",color:" + st.font
		if s == StatusPending {
			def += ",stroke-dasharray:4 3"
		}
		b.WriteString("    classDef " + string(s) + " " + def + "\n")
	}
	for _, s := range p.used {
		var ids []string
		for _, n := range p.nodes {
			if n.Status == s {
				ids = append(ids, p.ids[n.Name])
			}
		}
		b.WriteString("    class " + strings.Join(ids, ",") + " " + string(s) + "\n")
	}
	return b.String()
}

// mermaidShape returns the brackets around a node's quoted label.
func mermaidShape(s Shape) (open, end string) {
	switch s {
	case ShapeDecision:
		return "{", "}"
	case ShapeBatchable:
		return "[[", "]]"
	case ShapeBatchWorker:
		return "[/", "/]"
	case ShapeConvergence:
		return "([", "])"
	default:
		return "(", ")"
	}
}

// mermaidText escapes s for a quoted Mermaid label: letters, digits, spaces and a few harmless
// punctuation marks stay; any other ASCII character becomes its entity code #N; (Mermaid decodes
// these), and control characters become spaces. Characters outside ASCII stay as they are.
func mermaidText(s string) string {
	var b strings.Builder
	for _, r := range oneLine(s) {
		switch {
		case r >= 0x80, r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9',
			strings.ContainsRune(" _-.,:/@+=", r):
			b.WriteRune(r)
		default:
			b.WriteString("#" + strconv.Itoa(int(r)) + ";")
		}
	}
	return b.String()
}

package diagram

import "strings"

// DOT returns g as a Graphviz digraph, top to bottom: one node per step, shaped by its type, one
// edge per dependency, and, for nodes with a Status, its colours. Names and labels are quoted
// strings with backslashes and quotes escaped, so any name draws as itself.
func DOT(g Graph) string {
	p := prepare(g)
	var b strings.Builder
	b.WriteString("digraph " + dotString(g.Title) + " {\n")
	b.WriteString("    rankdir=TB;\n")
	b.WriteString(`    node [shape=box, style="rounded", fontname="Helvetica"];` + "\n")
	b.WriteString(`    edge [color="#52525b"];` + "\n")
	for _, n := range p.nodes {
		label := dotString(n.Name)
		if n.Detail != "" {
			label = dotString(n.Name + "\n" + n.Detail)
		}
		attrs := append([]string{"label=" + label}, dotShape(n.Shape)...)
		var style []string
		if n.Shape == "" || n.Shape == ShapeStandard || n.Shape == ShapeBatchable {
			style = append(style, "rounded")
		}
		st, coloured := styles[n.Status]
		if coloured {
			style = append(style, "filled")
			if n.Status == StatusPending {
				style = append(style, "dashed")
			}
		}
		if s := strings.Join(style, ","); s != "rounded" {
			attrs = append(attrs, `style="`+s+`"`)
		}
		if coloured {
			attrs = append(attrs, `fillcolor="`+st.fill+`"`, `color="`+st.stroke+`"`, `fontcolor="`+st.font+`"`)
		}
		b.WriteString("    " + p.ids[n.Name] + " [" + strings.Join(attrs, ", ") + "];\n")
	}
	for _, e := range p.edges {
		b.WriteString("    " + p.ids[e.From] + " -> " + p.ids[e.To] + ";\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// dotShape returns a node's shape attributes beyond the default rounded box.
func dotShape(s Shape) []string {
	switch s {
	case ShapeDecision:
		return []string{"shape=diamond"}
	case ShapeBatchable:
		return []string{"peripheries=2"}
	case ShapeBatchWorker:
		return []string{"shape=parallelogram"}
	case ShapeConvergence:
		return []string{"shape=oval"}
	default:
		return nil
	}
}

// dotString quotes s as a DOT string. Backslashes are doubled (Graphviz would read \n, \l or \N in
// a label as escapes), quotes escaped, and line breaks written as \n; other control characters
// become spaces.
func dotString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == '"':
			b.WriteString(`\"`)
		case r == '\n':
			b.WriteString(`\n`)
		case r < 0x20 || r == 0x7f || r == '\u2028' || r == '\u2029':
			b.WriteByte(' ')
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

package jsonsafe

// CloneMap deep-copies a decoded JSON object (maps and slices; other values are immutable), so
// that a template's shared configuration can be handed to a handler as its own copy.
func CloneMap(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	c := make(map[string]any, len(m))
	for k, v := range m {
		c[k] = CloneValue(v)
	}
	return c
}

// CloneValue deep-copies a decoded JSON value.
func CloneValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		return CloneMap(v)
	case []any:
		c := make([]any, len(v))
		for i, e := range v {
			c[i] = CloneValue(e)
		}
		return c
	default:
		return v
	}
}

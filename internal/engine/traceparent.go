package engine

import (
	"context"

	"go.opentelemetry.io/otel/trace"
)

// FormatTraceParent encodes a span context as a W3C traceparent (version 00); "" for an
// invalid one.
func FormatTraceParent(sc trace.SpanContext) string {
	if !sc.IsValid() {
		return ""
	}
	flags := "00"
	if sc.IsSampled() {
		flags = "01"
	}
	return "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-" + flags
}

// ParseTraceParent decodes a W3C traceparent into a remote span context; ok is false for ""
// or a malformed value.
func ParseTraceParent(tp string) (trace.SpanContext, bool) {
	// 00-<32 hex trace id>-<16 hex span id>-<2 hex flags>
	if len(tp) < 55 || tp[2] != '-' || tp[35] != '-' || tp[52] != '-' || tp[:2] == "ff" {
		return trace.SpanContext{}, false
	}
	tid, err := trace.TraceIDFromHex(tp[3:35])
	if err != nil {
		return trace.SpanContext{}, false
	}
	sid, err := trace.SpanIDFromHex(tp[36:52])
	if err != nil {
		return trace.SpanContext{}, false
	}
	var flags trace.TraceFlags
	switch tp[53:55] {
	case "00":
	case "01":
		flags = trace.FlagsSampled
	default:
		if h := tp[53:55]; len(h) == 2 && isHex(h[0]) && isHex(h[1]) && fromHex(h[1])&1 == 1 {
			flags = trace.FlagsSampled
		}
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: flags, Remote: true})
	return sc, sc.IsValid()
}

// RemoteParent returns ctx with the span context of traceparent tp as its remote parent, or ctx
// as it is when tp is "" or malformed (the span then starts a trace of its own).
func RemoteParent(ctx context.Context, tp string) context.Context {
	sc, ok := ParseTraceParent(tp)
	if !ok {
		return ctx
	}
	return trace.ContextWithRemoteSpanContext(ctx, sc)
}

// TraceID returns the trace id of traceparent tp, "" when there is none: for log lines.
func TraceID(tp string) string {
	if len(tp) < 55 || tp[2] != '-' || tp[35] != '-' {
		return ""
	}
	return tp[3:35]
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' }

func fromHex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c - 'a' + 10
}

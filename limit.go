package tasker

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tasker-systems/tasker/internal/engine"
)

// Global limits hold across every engine on one store (see docs/flow-control.md). A claim of a
// limited namespace takes the namespace's limit lock in the store, counts the steps in progress
// and those whose latest attempt started within a rate's window, in every scope whose limit
// applies to the step, claims at most what the limits leave and lets the lock go once its claim
// has committed. A step over a limit waits in the queue with no attempt spent. Every engine should
// set the same limits. A store that cannot hold them (store.Limiter) ignores them.

// RateLimit allows at most N step starts in any window of Per. The window counts each step's
// latest attempt, so a step retried within it counts once.
type RateLimit struct {
	N   int
	Per time.Duration
}

// Limit is a global concurrency limit, rate limit, or both, on a group of steps, held across
// every engine on the store (Config.Limits). The group is the steps of a namespace, narrowed by
// Template to one template's tasks, and split by ContextKey into one group per value of a field
// of the task's context:
//
//	// at most 2 steps in progress per customer, and 10 starts a second per customer, of
//	// shop/refund tasks
//	tasker.Limit{Namespace: "shop", Template: "refund", ContextKey: "customer_id",
//		Concurrency: 2, Rate: tasker.RateLimit{N: 10, Per: time.Second}}
//
// A step counts against, and waits for, every limit whose group it is in. A namespace with a
// limit per template or per context key claims its steps one at a time, under the namespace's
// lock (about three round trips each); one whose limits are all namespace-wide claims in batches.
type Limit struct {
	// Namespace is the namespace whose steps the limit holds for; required.
	Namespace string
	// Template, when set, narrows the limit to the steps of that template's tasks (every
	// version).
	Template string
	// ContextKey, when set, makes the limit hold for each value of that top-level field of the
	// task context apart: tasks whose fields are equal (as text: "7" and 7 are one value) share a
	// group, and the tasks whose context lacks the field (or holds null there) share one group of
	// their own, so that no task escapes the limit.
	ContextKey string
	// Concurrency caps the group's steps in progress; 0 means no cap.
	Concurrency int
	// Rate caps the group's step starts; the zero RateLimit means no cap.
	Rate RateLimit
}

// maxLimitName bounds Limit's names: a namespace, template or context key longer than this
// matches no task.
const maxLimitName = 255

// checkLimitName refuses a Limit name that no task could carry.
func checkLimitName(field, v string, required bool) error {
	switch {
	case v == "" && required:
		return &ConfigError{Field: field, Value: v, Reason: "is required"}
	case !utf8.ValidString(v) || strings.ContainsRune(v, 0):
		return &ConfigError{Field: field, Value: fmt.Sprintf("%q", v), Reason: "is not valid UTF-8 text (without NUL)"}
	case len(v) > maxLimitName:
		return &ConfigError{Field: field, Value: v[:32] + "…", Reason: fmt.Sprintf("is longer than %d bytes", maxLimitName)}
	}
	return nil
}

// checkRate refuses a rate that is neither off nor a positive N per positive Per.
func checkRate(field string, r RateLimit) error {
	if r.N < 0 || r.Per < 0 || (r.N > 0 && r.Per == 0) {
		return &ConfigError{Field: field, Value: r, Reason: "needs N >= 0 and, with N > 0, a positive Per"}
	}
	return nil
}

// checkLimits refuses negative or empty limits, and two limits on one group.
func checkLimits(limits []Limit, conc map[string]int, rates map[string]RateLimit) error {
	for ns, n := range conc {
		if n < 0 {
			return &ConfigError{Field: fmt.Sprintf("GlobalConcurrency[%q]", ns), Value: n, Reason: "is negative (0 or no entry means no limit)"}
		}
	}
	for ns, r := range rates {
		if err := checkRate(fmt.Sprintf("GlobalRate[%q]", ns), r); err != nil {
			return err
		}
	}
	type scope struct{ ns, template, key string }
	seen := map[scope]int{}
	for i, l := range limits {
		f := fmt.Sprintf("Limits[%d]", i)
		if err := checkLimitName(f+".Namespace", l.Namespace, true); err != nil {
			return err
		}
		if err := checkLimitName(f+".Template", l.Template, false); err != nil {
			return err
		}
		if err := checkLimitName(f+".ContextKey", l.ContextKey, false); err != nil {
			return err
		}
		if l.Concurrency < 0 {
			return &ConfigError{Field: f + ".Concurrency", Value: l.Concurrency, Reason: "is negative (0 means no cap)"}
		}
		if err := checkRate(f+".Rate", l.Rate); err != nil {
			return err
		}
		if l.Concurrency == 0 && l.Rate.N == 0 {
			return &ConfigError{Field: f, Value: l, Reason: "limits nothing: set Concurrency or Rate"}
		}
		sc := scope{l.Namespace, l.Template, l.ContextKey}
		if j, ok := seen[sc]; ok {
			return &ConfigError{Field: f, Value: l, Reason: fmt.Sprintf("limits the same steps as Limits[%d]: set both caps in one Limit", j)}
		}
		seen[sc] = i
		if sc.template == "" && sc.key == "" && (conc[l.Namespace] > 0 || rates[l.Namespace].N > 0) {
			return &ConfigError{Field: f, Value: l, Reason: fmt.Sprintf("limits namespace %q, as GlobalConcurrency or GlobalRate already does: use one of them", l.Namespace)}
		}
	}
	return nil
}

// engineLimits is the engine's form of Config.Limits, with Config.GlobalConcurrency and
// Config.GlobalRate as namespace-wide limits.
func engineLimits(limits []Limit, conc map[string]int, rates map[string]RateLimit) []engine.Limit {
	byNS := map[string]*engine.Limit{}
	var out []engine.Limit
	for ns, n := range conc {
		if n > 0 {
			byNS[ns] = &engine.Limit{Namespace: ns, Concurrency: n}
		}
	}
	for ns, r := range rates {
		if r.N <= 0 {
			continue
		}
		l := byNS[ns]
		if l == nil {
			l = &engine.Limit{Namespace: ns}
			byNS[ns] = l
		}
		l.Rate = engine.RateLimit{N: r.N, Per: r.Per}
	}
	for _, l := range byNS {
		out = append(out, *l)
	}
	for _, l := range limits {
		out = append(out, engine.Limit{Namespace: l.Namespace, Template: l.Template, ContextKey: l.ContextKey,
			Concurrency: l.Concurrency, Rate: engine.RateLimit{N: l.Rate.N, Per: l.Rate.Per}})
	}
	return out
}

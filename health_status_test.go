package tasker

import (
	"strings"
	"testing"
)

// TestHealthStatusCountsOnlyActiveServices: a maintenance service whose last pass failed makes
// the report degraded while this engine runs it, and no longer once another engine leads (its
// figures stay, inactive); a database that does not answer is down whatever else holds.
func TestHealthStatusCountsOnlyActiveServices(t *testing.T) {
	failing := ServiceHealth{Name: "retention", Failing: true, LastError: "disk full", Active: true}
	cases := []struct {
		name     string
		h        Health
		want     HealthStatus
		inReason string
	}{
		{"all well", Health{Database: DatabaseHealth{OK: true}, Services: []ServiceHealth{{Name: "rescuer", Active: true}}}, HealthOK, ""},
		{"a failing service this engine runs", Health{Database: DatabaseHealth{OK: true}, Services: []ServiceHealth{failing}}, HealthDegraded, "disk full"},
		{"a failing service another engine runs now", Health{Database: DatabaseHealth{OK: true},
			Services: []ServiceHealth{{Name: "retention", Failing: true, LastError: "disk full"}}}, HealthOK, ""},
		{"database down", Health{Database: DatabaseHealth{Error: "connection refused"}, Services: []ServiceHealth{failing}}, HealthDown, "connection refused"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, reasons := healthStatus(&c.h, healthOptions{})
			if got != c.want {
				t.Fatalf("status = %s (%v), want %s", got, reasons, c.want)
			}
			if c.inReason != "" && !strings.Contains(strings.Join(reasons, "; "), c.inReason) {
				t.Fatalf("reasons %v do not say %q", reasons, c.inReason)
			}
			if c.want == HealthOK && len(reasons) > 0 {
				t.Fatalf("ok with reasons %v", reasons)
			}
		})
	}
}

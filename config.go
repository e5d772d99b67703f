package tasker

import (
	"errors"
	"fmt"
	"time"

	"github.com/tasker-systems/tasker/internal/pgname"
)

// The smallest values NewEngine accepts for Config's durations. Each one keeps the timers derived
// from it positive and a little above the database's millisecond resolution: heartbeats run every
// Lease/3, leader renewals every LeaderTTL/3, the sweeper every RepublishAfter/3.
const (
	// LeaseMin is the shortest Config.Lease.
	LeaseMin = 100 * time.Millisecond
	// LeaderTTLMin is the shortest Config.LeaderTTL.
	LeaderTTLMin = 100 * time.Millisecond
	// RescueIntervalMin is the shortest Config.RescueInterval (and the floor of its default,
	// Lease/2, when the lease is short).
	RescueIntervalMin = 10 * time.Millisecond
	// RepublishAfterMin is the shortest Config.RepublishAfter.
	RepublishAfterMin = 100 * time.Millisecond
)

// ErrInvalidConfig is matched (errors.Is) by every *ConfigError.
var ErrInvalidConfig = errors.New("tasker: invalid config")

// ConfigError reports a Config field that NewEngine refuses.
type ConfigError struct {
	// Field is the field's name, such as "Lease" or "NamespaceConcurrency[shop]".
	Field string
	// Value is the value given.
	Value any
	// Reason says what is wrong, such as "is below the minimum of 100ms (LeaseMin)".
	Reason string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("%s: Config.%s = %v %s", ErrInvalidConfig.Error(), e.Field, e.Value, e.Reason)
}

// Is makes errors.Is(err, ErrInvalidConfig) true.
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }

// checkConfig refuses values that would break the engine at run time (a ticker of a non-positive
// interval panics in a library goroutine): negative values, and durations below their minimum. Zero
// values mean defaults and are accepted. It runs before the defaults are applied.
func checkConfig(cfg *Config) error {
	durations := []struct {
		field string
		v     time.Duration
		min   time.Duration
		name  string
	}{
		{"Lease", cfg.Lease, LeaseMin, "LeaseMin"},
		{"LeaderTTL", cfg.LeaderTTL, LeaderTTLMin, "LeaderTTLMin"},
		{"RescueInterval", cfg.RescueInterval, RescueIntervalMin, "RescueIntervalMin"},
		{"RepublishAfter", cfg.RepublishAfter, RepublishAfterMin, "RepublishAfterMin"},
		{"ShutdownTimeout", cfg.ShutdownTimeout, 0, ""},
	}
	for _, d := range durations {
		switch {
		case d.v < 0:
			return &ConfigError{Field: d.field, Value: d.v, Reason: "is negative (0 means the default)"}
		case d.v > 0 && d.v < d.min:
			return &ConfigError{Field: d.field, Value: d.v, Reason: fmt.Sprintf("is below the minimum of %v (%s; 0 means the default)", d.min, d.name)}
		}
	}
	ints := []struct {
		field string
		v     int
	}{
		{"Concurrency", cfg.Concurrency},
		{"MaxPayloadBytes", cfg.MaxPayloadBytes},
		{"MaxDecisionSteps", cfg.MaxDecisionSteps},
	}
	for _, n := range ints {
		if n.v < 0 {
			return &ConfigError{Field: n.field, Value: n.v, Reason: "is negative (0 means the default)"}
		}
	}
	if err := cfg.Retention.check(); err != nil {
		return err
	}
	for ns, n := range cfg.NamespaceConcurrency {
		if n < 0 {
			return &ConfigError{Field: fmt.Sprintf("NamespaceConcurrency[%q]", ns), Value: n, Reason: "is negative (0 or no entry means no cap beyond Concurrency)"}
		}
	}
	if cfg.WorkerID != "" {
		if err := pgname.Check(cfg.WorkerID); err != "" {
			return &ConfigError{Field: "WorkerID", Value: fmt.Sprintf("%q", pgname.Truncate(cfg.WorkerID)), Reason: err}
		}
	}
	for i, ns := range cfg.Namespaces {
		if ns == "" {
			return &ConfigError{Field: fmt.Sprintf("Namespaces[%d]", i), Value: `""`, Reason: "is empty"}
		}
		if err := pgname.Check(ns); err != "" {
			return &ConfigError{Field: fmt.Sprintf("Namespaces[%d]", i), Value: fmt.Sprintf("%q", pgname.Truncate(ns)), Reason: err}
		}
	}
	return nil
}

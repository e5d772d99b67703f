package statemachine

// DeadLetterStatus is the status of a dead-letter entry: pending until an operator resolves it.
type DeadLetterStatus string

// The dead-letter statuses. Only pending moves, and only to one of the three others.
const (
	// DeadLetterPending is an entry waiting for an operator.
	DeadLetterPending DeadLetterStatus = "pending"
	// DeadLetterManuallyResolved is an entry whose problem an operator fixed (the task was resumed
	// with a step fix, or its effect was achieved by other means).
	DeadLetterManuallyResolved DeadLetterStatus = "manually_resolved"
	// DeadLetterPermanentlyFailed is an entry an operator gave up on.
	DeadLetterPermanentlyFailed DeadLetterStatus = "permanently_failed"
	// DeadLetterCancelled is an entry an operator withdrew (raised in error, or no longer relevant).
	DeadLetterCancelled DeadLetterStatus = "cancelled"
)

// DeadLetterStatuses returns every dead-letter status, pending first.
func DeadLetterStatuses() []DeadLetterStatus {
	return []DeadLetterStatus{DeadLetterPending, DeadLetterManuallyResolved, DeadLetterPermanentlyFailed, DeadLetterCancelled}
}

// Valid reports whether s is one of the dead-letter statuses.
func (s DeadLetterStatus) Valid() bool {
	switch s {
	case DeadLetterPending, DeadLetterManuallyResolved, DeadLetterPermanentlyFailed, DeadLetterCancelled:
		return true
	}
	return false
}

// Resolved reports whether s is a resolution: any status but pending.
func (s DeadLetterStatus) Resolved() bool { return s.Valid() && s != DeadLetterPending }

// CheckResolution returns nil when an entry in status from may be resolved to status to: from is
// pending and to is a resolution. Anything else is refused with a *[RefusedError]; an entry is
// resolved once, and never goes back to pending.
func CheckResolution(from, to DeadLetterStatus) error {
	if !to.Resolved() {
		return refused("%q is not a resolution (manually_resolved, permanently_failed or cancelled)", to)
	}
	if from != DeadLetterPending {
		return refused("the entry is %s, not pending", from)
	}
	return nil
}

//go:build race

package chaos_test

// raceEnabled builds the worker with the race detector when the test itself runs with it.
const raceEnabled = true

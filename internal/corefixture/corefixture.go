// Package corefixture locates Tasker Core's own task templates for tasker's compatibility tests.
//
// The templates are not part of this repository: they are read in place from the folder that the
// environment variable named by EnvVar names (.ci/run sets it to ../shared/fixtures/tasker-core
// when that folder sits beside the checkout). A test that needs them skips, saying how to run it,
// when the variable is unset, and fails when it is set but the folder cannot be read, so that a
// configured compatibility run never passes by skipping.
package corefixture

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// EnvVar is the environment variable that names the folder of Tasker Core's fixtures.
const EnvVar = "TASKER_CORE_FIXTURES"

// Lookup returns the absolute folder that EnvVar names. set is false when the variable is unset
// or empty; err is non-nil when it is set but does not name a readable folder holding *.yaml
// templates.
func Lookup() (dir string, set bool, err error) {
	v := os.Getenv(EnvVar)
	if v == "" {
		return "", false, nil
	}
	dir, err = filepath.Abs(v)
	if err != nil {
		return "", true, fmt.Errorf("%s=%q: %w", EnvVar, v, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", true, fmt.Errorf("%s=%q does not name a readable folder: %w", EnvVar, v, err)
	}
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".yaml") {
			return dir, true, nil
		}
	}
	return "", true, fmt.Errorf("%s=%q: %w", EnvVar, v, errNoTemplates)
}

var errNoTemplates = errors.New("the folder holds no *.yaml templates")

// Dir returns the folder of Tasker Core's fixtures for a test. When EnvVar is unset the test is
// skipped with a message that says how to run it; when EnvVar is set but unusable the test fails.
func Dir(t testing.TB) string {
	t.Helper()
	dir, set, err := Lookup()
	switch {
	case err != nil:
		t.Fatalf("Tasker Core compatibility run: %v", err)
	case !set:
		top, _, _ := strings.Cut(t.Name(), "/")
		t.Skipf("Tasker Core's fixtures are not configured. To run this compatibility test: "+
			"%s=../shared/fixtures/tasker-core go test -race -run '^%s$' . "+
			"(relative paths are taken from the package folder; .ci/run sets %s when ../shared/fixtures/tasker-core exists)",
			EnvVar, top, EnvVar)
	}
	return dir
}

// Own is the folder, relative to the module root, of tasker's own templates in Tasker Core's YAML
// layout: the counterparts of Tasker Core's fixtures that every test run uses.
const Own = "testdata/corelayout"

// Set is one folder of templates in Tasker Core's layout that the compatibility tests run over.
type Set struct {
	// Name is the subtest name: "own" or "tasker-core".
	Name string
	// Dir is the folder's absolute path.
	Dir string
	// Core is true for Tasker Core's own fixtures.
	Core bool
}

// Path returns the path of a file of the set.
func (s Set) Path(name string) string { return filepath.Join(s.Dir, name) }

// Pick returns core for Tasker Core's set and own for tasker's own.
func Pick[T any](s Set, core, own T) T {
	if s.Core {
		return core
	}
	return own
}

// Each runs f as a parallel subtest over each set: "own" (tasker's own templates, always) and
// "tasker-core" (Tasker Core's fixtures, which skips or fails as Dir does). Tests run from the
// module root, where Own is.
func Each(t *testing.T, f func(t *testing.T, s Set)) {
	t.Helper()
	t.Run("own", func(t *testing.T) {
		t.Parallel()
		dir, err := filepath.Abs(Own)
		if err != nil {
			t.Fatal(err)
		}
		f(t, Set{Name: "own", Dir: dir})
	})
	t.Run("tasker-core", func(t *testing.T) {
		t.Parallel()
		f(t, Set{Name: "tasker-core", Dir: Dir(t), Core: true})
	})
}

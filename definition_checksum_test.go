package tasker

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/store/memory"
)

var updateChecksums = flag.Bool("update-checksums", false, "rewrite testdata/definition_checksums.txt")

// TestTemplateDefinitionChecksumsAreStable pins the checksum of every template under testdata. A
// registered definition is immutable (ErrTemplateConflict) and the database's registry keeps its
// checksum, so a library change that alters how a definition is written (a new Template field
// without omitempty, a changed default) would make every database written by the previous
// release refuse this one at RunWorkers' start. When this test fails, that is what the change
// does: keep the definition's form, or give the registry a way to accept the old form, before
// rewriting the golden file with -update-checksums.
func TestTemplateDefinitionChecksumsAreStable(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("testdata/corelayout/*.yaml")
	require.NoError(t, err)
	more, err := filepath.Glob("testdata/templates/*.yaml")
	require.NoError(t, err)
	files = append(files, more...)
	sort.Strings(files)
	require.NotEmpty(t, files)
	var b strings.Builder
	for _, f := range files {
		tmpl, err := ParseTemplateFile(f)
		if err != nil {
			continue // invalid on purpose (the validation tests' inputs)
		}
		e, err := NewEngine(Config{Store: memory.New()})
		require.NoError(t, err)
		if e.Register(tmpl) != nil {
			continue
		}
		r, err := e.template(tmpl.Namespace, tmpl.Name, tmpl.Version)
		require.NoError(t, err)
		fmt.Fprintf(&b, "%s %s\n", filepath.ToSlash(f), r.compiled.Checksum)
	}
	const golden = "testdata/definition_checksums.txt"
	if *updateChecksums {
		require.NoError(t, os.WriteFile(golden, []byte(b.String()), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err, "run go test -run TestTemplateDefinitionChecksumsAreStable -update-checksums . once to write it")
	require.Equal(t, string(want), b.String(), "a template's stored definition changed form: see this test's comment")
}

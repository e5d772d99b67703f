package tasker

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/tasker-systems/tasker/internal/corefixture"
)

// FuzzParseTemplate feeds arbitrary bytes to the YAML loader: it must never panic, every failure
// must be a *ValidationError, and every template it accepts must validate and survive a JSON round
// trip.
func FuzzParseTemplate(f *testing.F) {
	seeds := []string{
		"name: a\nnamespace_name: n\nsteps:\n  - name: s\n    handler: {callable: h}\n",
		"name: a\nnamespace_name: n\nsteps:\n  - {name: s, handler: {callable: h}, dependencies: [t]}\n  - {name: t, handler: {callable: h}, dependencies: [s]}\n",
		"name: a\nnamespace_name: n\nsteps:\n  - name: s\n    handler: {callable: h}\n    retry: {limit: 3, max_attempts: x}\n",
		"name: a\nnamespace_name: n\ninput_schema: {type: object, required: [x]}\nsteps:\n  - {name: s, handler: {callable: h}, timeout_seconds: -1}\n",
		"[1, 2",
		"",
		"name: &x a\nnamespace_name: *x\nsteps: []\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	dirs := []string{"testdata/templates", corefixture.Own}
	// Tasker Core's own fixtures join the seeds when TASKER_CORE_FIXTURES names them.
	if dir, set, err := corefixture.Lookup(); err != nil {
		f.Fatal(err)
	} else if set {
		dirs = append(dirs, dir)
	}
	for _, dir := range dirs {
		files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
		for _, file := range files {
			if b, err := os.ReadFile(file); err == nil {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tmpl, err := ParseTemplate(data)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) == 0 {
				t.Fatalf("error is not a *ValidationError with problems: %v", err)
			}
			return
		}
		if err := tmpl.Validate(); err != nil {
			t.Fatalf("accepted template does not validate: %v", err)
		}
		b, err := json.Marshal(tmpl)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		var back Template
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("unmarshal: %v", err)
		}
	})
}

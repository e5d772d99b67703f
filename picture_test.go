package tasker_test

import (
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/corefixture"
)

// updateGolden rewrites the pictures' golden files from the current output:
//
//	go test -run 'Picture' . -update
//	TASKER_CORE_FIXTURES=../shared/fixtures/tasker-core go test -run '^TestTemplatePicturesOfFixtures$' . -update
var updateGolden = flag.Bool("update", false, "rewrite the golden files under testdata/golden from the current output")

// goldenDir holds the pictures' golden files: tasker's output, checked in, one folder per set.
const goldenDir = "testdata/golden"

// checkGolden compares got with the golden file at path, or rewrites it with -update.
func checkGolden(t *testing.T, path, got string) {
	t.Helper()
	if *updateGolden {
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "no golden file; write it with: go test -run '%s' . -update", t.Name())
	require.Equal(t, string(want), got, "%s differs from the output; if the change is intended, rewrite it with -update", path)
}

// checkTemplatePictures checks the Mermaid and DOT pictures of every template in dir against
// goldenDir/set, and that set holds no golden file without its template.
func checkTemplatePictures(t *testing.T, dir, set string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, files, "no *.yaml templates in %s", dir)
	want := map[string]bool{}
	for _, file := range files {
		base := strings.TrimSuffix(filepath.Base(file), ".yaml")
		want[base+".mmd"], want[base+".dot"] = true, true
		t.Run(base, func(t *testing.T) {
			tmpl, err := tasker.ParseTemplateFile(file)
			require.NoError(t, err)
			mmd := tmpl.Mermaid()
			require.Equal(t, mmd, tmpl.Mermaid(), "the same text on every call")
			checkGolden(t, filepath.Join(goldenDir, set, base+".mmd"), mmd)
			checkGolden(t, filepath.Join(goldenDir, set, base+".dot"), tmpl.DOT())
			// Every step is drawn, with one arrow per dependency.
			arrows := 0
			for _, s := range tmpl.Steps {
				arrows += len(s.Dependencies)
			}
			require.Equal(t, arrows, strings.Count(mmd, " --> "), "one arrow per dependency")
			require.Equal(t, len(tmpl.Steps)+arrows+2, strings.Count(mmd, "\n"), "a line per step and per arrow")
		})
	}
	if *updateGolden {
		return
	}
	entries, err := os.ReadDir(filepath.Join(goldenDir, set))
	require.NoError(t, err)
	for _, e := range entries {
		require.True(t, want[e.Name()], "%s/%s/%s has no template in %s: remove it", goldenDir, set, e.Name(), dir)
	}
}

// TestTemplatePictures checks the pictures of tasker's own picture templates (awkward names
// among them) and of its templates in Tasker Core's layout, on every run.
func TestTemplatePictures(t *testing.T) {
	t.Parallel()
	t.Run("pictures", func(t *testing.T) { checkTemplatePictures(t, "testdata/pictures", "pictures") })
	t.Run("corelayout", func(t *testing.T) { checkTemplatePictures(t, corefixture.Own, "corelayout") })
}

// TestTemplatePicturesOfFixtures checks the pictures of every Tasker Core fixture against
// testdata/golden/tasker-core (tasker's output for them, not copies of the fixtures). It runs
// when TASKER_CORE_FIXTURES names their folder (.ci/run sets it) and says how to run it
// otherwise.
func TestTemplatePicturesOfFixtures(t *testing.T) {
	t.Parallel()
	checkTemplatePictures(t, corefixture.Dir(t), "tasker-core")
}

// TestTaskPictures colours a running task's steps by state, and draws the same picture on every
// store.
func TestTaskPictures(t *testing.T) {
	t.Parallel()
	for _, be := range []string{backendPostgres, backendMemory} {
		t.Run(be, func(t *testing.T) {
			t.Parallel()
			b := setupOn(t, be)
			b.register(t, `
name: colours
namespace_name: pictures
version: "1.0.0"
steps:
  - name: start
    handler: { callable: ok }
  - name: broken
    dependencies: [start]
    handler: { callable: broken }
  - name: flaky
    dependencies: [start]
    handler: { callable: flaky }
  - name: slow
    dependencies: [start]
    handler: { callable: slow }
  - name: after_broken
    dependencies: [broken]
    handler: { callable: ok }
  - name: finish
    dependencies: [after_broken, flaky, slow]
    handler: { callable: ok }
`)
			release := make(chan struct{})
			t.Cleanup(func() { close(release) })
			ok := tasker.HandlerFunc(func(context.Context, *tasker.Step) (any, error) { return map[string]any{}, nil })
			b.engine.Handle("ok", ok)
			b.engine.Handle("broken", tasker.HandlerFunc(func(context.Context, *tasker.Step) (any, error) {
				return nil, tasker.Permanent(errors.New("no"))
			}))
			b.engine.Handle("flaky", tasker.HandlerFunc(func(context.Context, *tasker.Step) (any, error) {
				return nil, tasker.RetryAfter(time.Hour, errors.New("later"))
			}))
			b.engine.Handle("slow", tasker.HandlerFunc(func(ctx context.Context, _ *tasker.Step) (any, error) {
				select {
				case <-release:
				case <-ctx.Done():
				}
				return nil, ctx.Err()
			}))
			b.start(t)
			task := b.create(t, "pictures", "colours", nil)
			ctx := context.Background()
			want := map[string]tasker.StepState{"start": "complete", "broken": "error", "flaky": "waiting_for_retry",
				"slow": "in_progress", "after_broken": "pending", "finish": "pending"}
			require.EventuallyWithT(t, func(c *assert.CollectT) {
				got, err := b.engine.GetTask(ctx, task.ID)
				require.NoError(c, err)
				states := map[string]tasker.StepState{}
				for _, s := range got.Steps {
					states[s.Name] = s.State
				}
				require.Equal(c, tasker.TaskState("blocked_by_failures"), got.State)
				require.Equal(c, want, states)
			}, 20*time.Second, 20*time.Millisecond)

			mmd, err := b.engine.TaskMermaid(ctx, task.ID)
			require.NoError(t, err)
			dot, err := b.engine.TaskDOT(ctx, task.ID)
			require.NoError(t, err)
			anon := func(s string) string { return strings.ReplaceAll(s, task.ID.String(), "TASK_ID") }
			checkGolden(t, filepath.Join(goldenDir, "task", "colours.mmd"), anon(mmd))
			checkGolden(t, filepath.Join(goldenDir, "task", "colours.dot"), anon(dot))
			again, err := b.engine.TaskMermaid(ctx, task.ID)
			require.NoError(t, err)
			require.Equal(t, mmd, again, "an unchanged task draws the same")

			_, err = b.engine.TaskMermaid(ctx, uuid.New())
			require.ErrorIs(t, err, tasker.ErrTaskNotFound)
		})
	}
}

package httpapi

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
)

// EnvBrowserTests, when set, makes the browser test fail instead of skipping when no Chromium is
// found (.ci/run sets it).
const EnvBrowserTests = "TASKER_BROWSER_TESTS"

// chromium finds a Chromium to drive: Debian's chromium package, or another on the PATH.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv(EnvBrowserTests) != "" {
		t.Fatalf("%s is set but no Chromium was found: apt-get install -y chromium", EnvBrowserTests)
	}
	t.Skipf("no Chromium found (apt-get install -y chromium); set %s=1 to make this a failure", EnvBrowserTests)
	return ""
}

// TestBrowserUI drives the UI in headless Chromium: the task list and its filter, then a running task whose DAG
// shows its steps' states; a held step turns complete while the page stays (no reload); a failed
// step is resolved through the UI and the task resumes to complete. It saves screenshots of each
// stage, and of the other pages, to a temporary folder it logs.
func TestBrowserUI(t *testing.T) {
	t.Parallel()
	exe := chromium(t)
	b := setup(t)
	done := b.create(t, "ok", nil)
	b.waitState(t, done.ID, tasker.TaskComplete)
	held := b.create(t, "hold", map[string]any{"correlation_id": "web-42", "priority": 2})
	failed := b.create(t, "fail", nil)
	b.waitState(t, failed.ID, tasker.TaskBlockedByFailures)
	require.Eventually(t, func() bool {
		return stepNamed(t, b.waitState(t, held.ID, tasker.TaskStepsInProcess), "reserve").State == "in_progress"
	}, 30*time.Second, 20*time.Millisecond)

	shots, err := os.MkdirTemp("", "tasker-ui-")
	require.NoError(t, err)
	t.Logf("screenshots in %s", shots)

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.WindowSize(1440, 1000))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer cancelBrowser()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()

	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			// A full-page capture draws the sticky header where the page is scrolled to.
			if _, err := chromedp.Evaluate[bool](`window.scrollTo(0, 0), true`)(ctx, tg); err != nil {
				return err
			}
			buf, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(shots, name+".png"), buf, 0o644)
		})
	}
	node := func(step, state string) chromedp.CSS {
		return chromedp.CSS(fmt.Sprintf(`svg.dag g.node[data-step=%q][data-state=%q]`, step, state))
	}
	css := func(format string, args ...any) chromedp.CSS { return chromedp.CSS(fmt.Sprintf(format, args...)) }
	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		require.NoError(t, chromedp.Do(ctx, actions...), what)
	}
	eval := func(expr string) bool {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		require.NoError(t, err, expr)
		return v
	}

	// The task list shows the three tasks with their states.
	run("task list",
		chromedp.Navigate(b.srv.URL+"/ui/"),
		chromedp.WaitVisible(css(`tr[data-task-id=%q][data-state="steps_in_process"]`, held.ID)),
		chromedp.WaitVisible(css(`tr[data-task-id=%q][data-state="blocked_by_failures"]`, failed.ID)),
		chromedp.WaitVisible(css(`tr[data-task-id=%q][data-state="complete"]`, done.ID)),
		shot("01-task-list"),
		// The state filter keeps the blocked task alone.
		chromedp.SetValue(chromedp.CSS(`#f-state`), "blocked_by_failures"),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Evaluate[bool](`document.querySelector("#f-state").dispatchEvent(new Event("change")), true`)(ctx, tg)
			return err
		}),
		chromedp.WaitNotPresent(css(`tr[data-task-id=%q]`, held.ID)),
		chromedp.WaitVisible(css(`tr[data-task-id=%q]`, failed.ID)),
		shot("01b-task-list-filtered"),
		chromedp.Navigate(b.srv.URL+"/ui/#/tasks"),
		chromedp.WaitVisible(css(`tr[data-task-id=%q]`, held.ID)))

	// The running task: its DAG with the steps' states.
	run("running task",
		chromedp.Click(css(`tr[data-task-id=%q]`, held.ID)),
		chromedp.WaitVisible(chromedp.CSS(`#task-state [data-state="steps_in_process"]`)),
		chromedp.WaitVisible(node("validate", "complete")),
		chromedp.WaitVisible(node("reserve", "in_progress")),
		chromedp.WaitVisible(node("charge", "pending")),
		chromedp.WaitVisible(node("ship", "pending")),
		chromedp.Click(node("reserve", "in_progress")),
		chromedp.WaitVisible(chromedp.CSS(`#step-detail`)),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Evaluate[bool](`window.__sameDocument = true`)(ctx, tg)
			return err
		}),
		shot("02-running-task"))

	// The held step completes; the page follows without a reload.
	b.releaseHeld()
	run("step turns complete",
		chromedp.WaitVisible(node("reserve", "complete")),
		chromedp.WaitVisible(node("ship", "complete")),
		chromedp.WaitVisible(chromedp.CSS(`#task-state [data-state="complete"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#step-result`)),
		shot("03-step-completed"))
	require.True(t, eval(`window.__sameDocument === true`), "the page was not reloaded")

	// The failed task: resolve its failed step through the UI; the task resumes and completes.
	run("resolve a failed step",
		chromedp.Navigate(b.srv.URL+"/ui/#/tasks/"+failed.ID.String()),
		chromedp.WaitVisible(node("reserve", "error")),
		chromedp.WaitVisible(chromedp.CSS(`#task-state [data-state="blocked_by_failures"]`)),
		chromedp.WaitEnabled(chromedp.CSS(`#action-resolve`)),
		chromedp.SetValue(chromedp.CSS(`#operator`), "ui-operator"),
		chromedp.SendKeys(chromedp.CSS(`#action-reason`), "restocked by hand"),
		shot("04-failed-step"),
		chromedp.Click(chromedp.CSS(`#action-resolve`)),
		chromedp.WaitVisible(node("reserve", "resolved_manually")),
		chromedp.WaitVisible(node("ship", "complete")),
		chromedp.WaitVisible(chromedp.CSS(`#task-state [data-state="complete"]`)),
		shot("05-resolved"))
	require.True(t, eval(`[...document.querySelectorAll("#timeline li")].some(li => li.textContent.includes("by ui-operator"))`),
		"the timeline shows the operator's resolution")
	task, err := b.e.GetTask(context.Background(), failed.ID)
	require.NoError(t, err)
	require.Equal(t, tasker.TaskComplete, task.State)
	st, _ := task.Step("reserve")
	require.Equal(t, tasker.StepResolvedManually, st.State)

	// The other pages render; a second template with a fan-out and a join shows the layout.
	fan, err := tasker.ParseTemplate([]byte(`
name: fulfilment
namespace_name: shop
version: 2.0.0
description: Fan out to three warehouses, then join.
steps:
  - {name: plan, handler: {callable: validate}}
  - {name: east, handler: {callable: charge}, dependencies: [plan]}
  - {name: west, handler: {callable: charge}, dependencies: [plan]}
  - {name: north, handler: {callable: charge}, dependencies: [plan]}
  - {name: merge, handler: {callable: ship}, dependencies: [east, west, north]}
  - {name: audit, handler: {callable: ship}, dependencies: [plan]}
`))
	require.NoError(t, err)
	require.NoError(t, b.e.Register(fan))
	_, err = b.e.DeadLetterTask(context.Background(), done.ID, tasker.DeadLetterRequest{By: "test", Reason: "audit"})
	require.NoError(t, err)
	run("other pages",
		chromedp.Navigate(b.srv.URL+"/ui/#/templates"),
		chromedp.WaitVisible(node("ship", "")),
		shot("06-templates"),
		chromedp.Navigate(b.srv.URL+"/ui/#/dlq"),
		chromedp.WaitVisible(chromedp.CSS(`#dlq tr[data-status="pending"]`)),
		shot("07-dlq"),
		chromedp.Navigate(b.srv.URL+"/ui/#/analytics"),
		chromedp.WaitVisible(chromedp.CSS(`#perf-templates tbody tr td b`)),
		shot("08-analytics"),
		chromedp.Navigate(b.srv.URL+"/ui/#/health"),
		chromedp.WaitVisible(chromedp.CSS(`#health-status`)),
		shot("09-health"))
}

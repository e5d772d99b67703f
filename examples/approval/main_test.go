package main

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/testdb"
)

func TestApprovalRoutesByAmountAndConverges(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	var out bytes.Buffer
	outcomes, err := runWith(ctx, db.Pool, db.Schema, &out)
	require.NoError(t, err, out.String())
	t.Log("\n" + out.String())
	require.Len(t, outcomes, len(Requests))

	common := []string{"validate_request", "route_approval", "finalize_decision", "notify_requester"}
	want := map[string]struct {
		branches  []string
		decision  string
		approvers []string
		reasons   []string
	}{
		"EXP-1": {[]string{"auto_approve"}, "approved", []string{"policy"}, nil},
		"EXP-2": {[]string{"manager_approval"}, "approved", []string{"manager of bob"}, nil},
		"EXP-3": {[]string{"manager_approval", "finance_review"}, "approved", []string{"manager of carol", "finance"}, nil},
		"EXP-4": {[]string{"manager_approval", "finance_review"}, "rejected", []string{"manager of dave"},
			[]string{"finance: $50000 exceeds the remaining budget of $40000"}},
	}
	for _, o := range outcomes {
		w, ok := want[o.Request.RequestID]
		require.True(t, ok, o.Request.RequestID)
		task := o.Task
		require.Equal(t, tasker.TaskComplete, task.State, o.Request.RequestID)
		require.Equal(t, w.branches, o.Branches, "%s: the decision's branches", o.Request.RequestID)
		require.ElementsMatch(t, append(append([]string{}, common...), w.branches...), o.Created,
			"%s: exactly the chosen branches exist, the others were never created", o.Request.RequestID)
		for _, s := range task.Steps {
			require.Equal(t, tasker.StepComplete, s.State, "%s %s", o.Request.RequestID, s.Name)
			require.Equal(t, 1, s.Attempts, "%s %s", o.Request.RequestID, s.Name)
		}
		require.Equal(t, Decision{RequestID: o.Request.RequestID, Amount: o.Request.Amount, Decision: w.decision,
			Approvers: w.approvers, Reasons: w.reasons}, o.Decision)

		// The dynamic steps came into being after the decision ran, not with the task.
		route, _ := task.Step("route_approval")
		validate, _ := task.Step("validate_request")
		require.Equal(t, validate.CreatedAt, route.CreatedAt, "static steps are created with the task")
		for _, name := range append([]string{"finalize_decision", "notify_requester"}, w.branches...) {
			s, ok := task.Step(name)
			require.True(t, ok, name)
			require.NotNil(t, route.StartedAt)
			require.True(t, s.CreatedAt.After(*route.StartedAt), "%s %s created at %s, before route_approval started at %s",
				o.Request.RequestID, name, s.CreatedAt, *route.StartedAt)
		}

		// notify_requester ran after the convergence, with its decision.
		var note map[string]string
		require.NoError(t, task.Result("notify_requester", &note))
		require.Equal(t, "your request "+o.Request.RequestID+" was "+w.decision, note["message"])
		var route2 map[string]json.RawMessage
		require.NoError(t, task.Result("route_approval", &route2))
		require.Contains(t, route2, "decision_point_outcome")
	}

	for _, line := range []string{
		"route_approval chose: auto_approve\n",
		"steps created: validate_request, route_approval, auto_approve, finalize_decision, notify_requester\n",
		"decision: approved by policy\n",
		"route_approval chose: manager_approval\n",
		"decision: approved by manager of bob\n",
		"route_approval chose: manager_approval + finance_review\n",
		"decision: approved by manager of carol, finance\n",
		"decision: rejected, finance: $50000 exceeds the remaining budget of $40000 (approved by manager of dave)\n",
	} {
		require.Contains(t, out.String(), line)
	}
}

package main

import "github.com/spf13/cobra"

func newMCPCmd(a *app) *cobra.Command {
	return &cobra.Command{Use: "mcp", Short: "Serve tasker-ctl's operations as an MCP server over stdio"}
}

// Command tasker-ctl is the operations CLI of tasker: it talks to the PostgreSQL that the engines
// share, through the library's API, with no server in between. It migrates the schema, validates
// and draws templates, creates, inspects, watches and cancels tasks, fixes steps, works the
// dead-letter queue, reports health and staleness, and serves the same operations to AI agents as
// an MCP server over stdio (tasker-ctl mcp).
//
//	go install github.com/tasker-systems/tasker/cmd/tasker-ctl@latest
//	tasker-ctl --database-url postgres://localhost/app template validate order.yaml
//
// Exit codes: 0 success; 1 failure (validation problems, a refused action, a task that did not
// complete); 2 usage (a bad flag, argument or JSON value); 3 not found; 4 database unreachable.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := execute(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

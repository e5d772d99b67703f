package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/tasker-systems/tasker/migrations"
)

const rootLong = `tasker-ctl operates tasker: it talks to the PostgreSQL that the engines share,
through the library's API, with no server in between.

The database is --database-url, or the TASKER_DATABASE_URL environment variable; tasker's tables
live in --schema (default "tasker"). Output is an aligned table, coloured only on a terminal
(never with NO_COLOR or --no-color); --output json or yaml is for scripts.

Exit codes:
  0  success
  1  failure: validation problems found, an action refused, a watched task that did not complete
  2  usage: an unknown command or flag, a missing argument, a malformed JSON value
  3  not found: no such task, step, template or dead-letter entry
  4  the database is unreachable`

// execute runs tasker-ctl with args and returns its exit code.
func execute(ctx context.Context, args []string, in io.Reader, out, errOut io.Writer) int {
	a := &app{in: in, out: out, errOut: errOut}
	defer a.close()
	root := newRoot(a)
	root.SetArgs(args)
	root.SetIn(in)
	root.SetOut(out)
	root.SetErr(errOut)
	ran := false // set once a command's RunE starts: an error before it is cobra's, a usage error
	markRun(root, &ran)
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		switch a.output {
		case "table", "json", "yaml":
			return nil
		}
		return usageErr("--output %q: want table, json or yaml", a.output)
	}
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	code := exitCode(err)
	if !ran { // cobra refused the command line before any command ran
		code = exitUsage
	}
	var sf *silentFailure
	if !errors.As(err, &sf) {
		fmt.Fprintln(errOut, "tasker-ctl:", err)
		if code == exitUsage && !ran {
			fmt.Fprintln(errOut, "Run 'tasker-ctl --help' for usage.")
		}
	}
	return code
}

// markRun wraps every command's RunE so that it sets *ran first.
func markRun(c *cobra.Command, ran *bool) {
	if run := c.RunE; run != nil {
		c.RunE = func(cmd *cobra.Command, args []string) error {
			*ran = true
			return run(cmd, args)
		}
	}
	for _, sub := range c.Commands() {
		markRun(sub, ran)
	}
}

// newRoot builds the command tree.
func newRoot(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:           "tasker-ctl",
		Short:         "Operate tasker workflows on PostgreSQL",
		Long:          rootLong,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	f := root.PersistentFlags()
	f.StringVar(&a.databaseURL, "database-url", "", "PostgreSQL URL (default $"+envDatabaseURL+")")
	f.StringVar(&a.schema, "schema", migrations.SchemaDefault, "schema tasker's tables live in")
	f.StringVarP(&a.output, "output", "o", "table", "output format: table, json or yaml")
	f.BoolVar(&a.noColor, "no-color", false, "never colour the output")
	_ = root.RegisterFlagCompletionFunc("output", fixedCompletion("table", "json", "yaml"))
	root.AddCommand(group(newMigrateCmd(a)), group(newTemplateCmd(a)), group(newTaskCmd(a)), group(newStepCmd(a)),
		group(newDLQCmd(a)), group(newSystemCmd(a)), newMCPCmd(a))
	return root
}

// group makes a command that only holds subcommands refuse an unknown one (exit 2) rather than
// print its help and succeed.
func group(c *cobra.Command) *cobra.Command {
	c.Args = cobra.ArbitraryArgs
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usageErr("unknown command %q for %q", args[0], cmd.CommandPath())
		}
		return cmd.Help()
	}
	return c
}

// fixedCompletion completes a flag from a fixed list.
func fixedCompletion(values ...string) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return values, cobra.ShellCompDirectiveNoFileComp
	}
}

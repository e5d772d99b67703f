package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/tasker-systems/tasker/migrations"
)

func newMigrateCmd(a *app) *cobra.Command {
	c := &cobra.Command{Use: "migrate", Short: "Apply, list or print tasker's schema migrations"}
	c.AddCommand(&cobra.Command{
		Use:   "up",
		Short: "Apply the migrations the schema lacks (safe to run from many processes at once)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pool, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			if err := migrations.Migrate(cmd.Context(), pool, migrations.WithSchema(a.schema)); err != nil {
				return err
			}
			st, err := migrationStatus(cmd, a)
			if err != nil {
				return err
			}
			return a.emit(st, func(w io.Writer) {
				fmt.Fprintf(w, "schema %s is at version %d (latest %d)\n", a.schema, st.Current, st.Latest)
			})
		},
	})
	c.AddCommand(&cobra.Command{
		Use:   "status",
		Short: "List the migrations and whether each is applied; exit 1 when some are pending",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := migrationStatus(cmd, a)
			if err != nil {
				return err
			}
			if err := a.emit(st, func(w io.Writer) {
				row(w, "VERSION", "NAME", "APPLIED")
				for _, m := range st.Migrations {
					row(w, fmt.Sprintf("%04d", m.Version), m.Name, when(m.AppliedAt))
				}
			}); err != nil {
				return err
			}
			if st.Current < st.Latest {
				return &silentFailure{code: exitFailure}
			}
			return nil
		},
	})
	var goose string
	sqlCmd := &cobra.Command{
		Use:   "sql",
		Short: "Print the migrations' SQL for the schema (for atlas, psql), or write goose files with --goose DIR",
		Args:  cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			if err := migrations.ValidateSchemaName(a.schema); err != nil {
				return usageErr("--schema %q: %v", a.schema, err)
			}
			if goose != "" {
				if err := migrations.ExportGoose(goose, a.schema); err != nil {
					return err
				}
				fmt.Fprintf(a.errOut, "wrote %d goose migrations to %s\n", migrations.Latest(), goose)
				return nil
			}
			all, err := migrations.All(a.schema)
			if err != nil {
				return err
			}
			for _, m := range all {
				fmt.Fprintf(a.out, "-- %04d_%s\n%s\n", m.Version, m.Name, m.SQL)
			}
			return nil
		},
	}
	sqlCmd.Flags().StringVar(&goose, "goose", "", "write goose migration files into this directory instead")
	c.AddCommand(sqlCmd)
	return c
}

type migrationView struct {
	Version   int        `json:"version"`
	Name      string     `json:"name"`
	AppliedAt *time.Time `json:"applied_at,omitempty"`
}

type migrationStatusView struct {
	Schema     string          `json:"schema"`
	Current    int             `json:"current"`
	Latest     int             `json:"latest"`
	Migrations []migrationView `json:"migrations"`
}

// migrationStatus reads which migrations the schema has applied (schema_migrations).
func migrationStatus(cmd *cobra.Command, a *app) (*migrationStatusView, error) {
	pool, err := a.connect(cmd.Context())
	if err != nil {
		return nil, err
	}
	all, err := migrations.All(a.schema)
	if err != nil {
		return nil, err
	}
	rows, err := migrations.Applied(cmd.Context(), pool, migrations.WithSchema(a.schema))
	if err != nil {
		return nil, err
	}
	applied := map[int]time.Time{}
	for _, m := range rows {
		applied[m.Version] = m.AppliedAt
	}
	st := &migrationStatusView{Schema: a.schema, Latest: migrations.Latest(), Migrations: []migrationView{}}
	for _, m := range all {
		mv := migrationView{Version: m.Version, Name: m.Name}
		if at, ok := applied[m.Version]; ok {
			mv.AppliedAt = &at
			st.Current = max(st.Current, m.Version)
		}
		st.Migrations = append(st.Migrations, mv)
	}
	return st, nil
}

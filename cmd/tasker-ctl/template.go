package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/tasker-systems/tasker"
)

func newTemplateCmd(a *app) *cobra.Command {
	c := &cobra.Command{Use: "template", Short: "Validate, draw and list task templates"}
	var env string
	validate := &cobra.Command{
		Use:   "validate FILE...",
		Short: "Check templates and report every problem, with its line; exit 1 when any is found",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, files []string) error {
			results := make([]validationView, 0, len(files))
			bad := false
			for _, f := range files {
				v := validateFile(f, env)
				bad = bad || !v.Valid
				results = append(results, v)
			}
			if err := a.emit(results, func(w io.Writer) {
				for _, v := range results {
					if v.Valid {
						fmt.Fprintf(w, "%s: ok (%s, %d steps)\n", v.File, v.Template, v.Steps)
						continue
					}
					for _, p := range v.Problems {
						fmt.Fprintf(w, "%s:%s\n", v.File, p.String())
					}
				}
			}); err != nil {
				return err
			}
			if bad {
				return &silentFailure{code: exitFailure}
			}
			return nil
		},
	}
	validate.Flags().StringVar(&env, "environment", "", "apply this environment's overrides before checking")
	c.AddCommand(validate)

	var format string
	visualize := &cobra.Command{
		Use:   "visualize FILE",
		Short: "Draw a template's DAG as Mermaid or Graphviz DOT",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			if format != "mermaid" && format != "dot" {
				return usageErr("--format %q: want mermaid or dot", format)
			}
			t, err := loadTemplate(args[0], "")
			if err != nil {
				return err
			}
			if format == "dot" {
				fmt.Fprint(a.out, t.DOT())
			} else {
				fmt.Fprint(a.out, t.Mermaid())
			}
			return nil
		},
	}
	visualize.Flags().StringVar(&format, "format", "mermaid", "mermaid or dot")
	_ = visualize.RegisterFlagCompletionFunc("format", fixedCompletion("mermaid", "dot"))
	c.AddCommand(visualize)

	c.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the templates the database's registry knows",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			eng, err := a.engine(cmd.Context())
			if err != nil {
				return err
			}
			list, err := eng.RegisteredTemplates(cmd.Context())
			if err != nil {
				return err
			}
			views := make([]templateView, 0, len(list))
			for _, r := range list {
				v := templateView{Namespace: r.Namespace, Name: r.Name, Version: r.Version, Checksum: r.Checksum, RegisteredAt: r.CreatedAt}
				if t, err := r.Template(); err == nil {
					v.Steps, v.Description = len(t.Steps), t.Description
				}
				views = append(views, v)
			}
			return a.emit(views, func(w io.Writer) {
				row(w, "NAMESPACE", "NAME", "VERSION", "STEPS", "REGISTERED", "CHECKSUM")
				for _, v := range views {
					row(w, v.Namespace, v.Name, v.Version, v.Steps, when(&v.RegisteredAt), v.Checksum[:min(12, len(v.Checksum))])
				}
			})
		},
	})
	return c
}

type templateView struct {
	Namespace    string    `json:"namespace"`
	Name         string    `json:"name"`
	Version      string    `json:"version"`
	Description  string    `json:"description,omitempty"`
	Steps        int       `json:"steps"`
	Checksum     string    `json:"checksum"`
	RegisteredAt time.Time `json:"registered_at"`
}

type problemView struct {
	Code    string `json:"code"`
	Line    int    `json:"line,omitempty"`
	Field   string `json:"field,omitempty"`
	Step    string `json:"step,omitempty"`
	Message string `json:"message"`
	text    string
}

// String is the problem as "LINE: CODE at FIELD (step NAME): MESSAGE", to follow "FILE:".
func (p problemView) String() string { return p.text }

type validationView struct {
	File     string        `json:"file"`
	Valid    bool          `json:"valid"`
	Template string        `json:"template,omitempty"`
	Steps    int           `json:"steps,omitempty"`
	Problems []problemView `json:"problems,omitempty"`
}

// validateFile parses and checks one template file.
func validateFile(path, env string) validationView {
	v := validationView{File: path}
	data, err := os.ReadFile(path)
	if err != nil {
		v.Problems = []problemView{{Code: "UNREADABLE", Message: err.Error(), text: " " + err.Error()}}
		return v
	}
	var opts []tasker.ParseOption
	if env != "" {
		opts = append(opts, tasker.WithEnvironment(env))
	}
	t, err := tasker.ParseTemplate(data, opts...)
	if err == nil {
		err = t.Validate()
	}
	if err != nil {
		v.Problems = problems(err)
		return v
	}
	v.Valid, v.Template, v.Steps = true, t.Key(), len(t.Steps)
	return v
}

// problems lists a template error's problems (one for an error that is not a *ValidationError).
func problems(err error) []problemView {
	var ve *tasker.ValidationError
	if !errors.As(err, &ve) {
		return []problemView{{Code: "INVALID", Message: err.Error(), text: " " + err.Error()}}
	}
	out := make([]problemView, 0, len(ve.Problems))
	for _, p := range ve.Problems {
		text := p.Code
		if p.Field != "" {
			text += " at " + p.Field
		}
		if p.Step != "" {
			text += fmt.Sprintf(" (step %q)", p.Step)
		}
		text += ": " + p.Message
		if p.Line > 0 {
			text = fmt.Sprintf("%d: %s", p.Line, text)
		} else {
			text = " " + text
		}
		out = append(out, problemView{Code: p.Code, Line: p.Line, Field: p.Field, Step: p.Step, Message: p.Message, text: text})
	}
	return out
}

// loadTemplate parses a template file, failing (exit 1) with every problem when it is invalid.
func loadTemplate(path, env string) (*tasker.Template, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, &exitError{code: exitNotFound, err: err}
	}
	var opts []tasker.ParseOption
	if env != "" {
		opts = append(opts, tasker.WithEnvironment(env))
	}
	t, err := tasker.ParseTemplateFile(path, opts...)
	if err != nil {
		msg := path + " is not a valid template:"
		for _, p := range problems(err) {
			msg += "\n  " + path + ":" + p.String()
		}
		return nil, failure("%s", msg)
	}
	return t, nil
}

package tasker_test

import (
	"errors"
	"fmt"
	"log"

	"github.com/tasker-systems/tasker"
)

// A template in Tasker Core's YAML layout: steps name their handler with
// handler.callable and their parents with dependencies.
const orderYAML = `
name: order_fulfillment
namespace_name: shop
version: 1.0.0
steps:
  - name: validate_order
    handler:
      callable: validate_order
  - name: reserve_stock
    dependencies: [validate_order]
    handler:
      callable: reserve_stock
      initialization:
        warehouse: central
    retry:
      max_attempts: 5
      backoff: exponential
      backoff_base_ms: 500
    timeout_seconds: 10
environments:
  test:
    steps:
      - name: reserve_stock
        timeout_seconds: 2
        retry:
          max_attempts: 1
`

func Example_parseTemplate() {
	tmpl, err := tasker.ParseTemplate([]byte(orderYAML))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(tmpl.Key())
	for _, s := range tmpl.Steps {
		fmt.Printf("%s after %v: %d attempts, backoff from %v, timeout %v\n",
			s.Name, s.Dependencies, s.Retry.MaxAttempts, s.Retry.BackoffBase, s.Timeout)
	}

	test, err := tmpl.ForEnvironment("test")
	if err != nil {
		log.Fatal(err)
	}
	stock, _ := test.Step("reserve_stock")
	fmt.Printf("in test: %d attempt, timeout %v, warehouse %v\n",
		stock.Retry.MaxAttempts, stock.Timeout, stock.Handler.Initialization["warehouse"])

	// Every problem is reported at once, with its YAML path and line.
	_, err = tasker.ParseTemplate([]byte(`
name: broken
namespace_name: shop
steps:
  - name: charge
    dependencies: [pay]
    handler: {callable: charge}
    retry:
      limit: 3
`))
	var verr *tasker.ValidationError
	if errors.As(err, &verr) {
		for _, p := range verr.Problems {
			fmt.Println(p)
		}
	}
	// Output:
	// shop/order_fulfillment@1.0.0
	// validate_order after []: 3 attempts, backoff from 1s, timeout 30s
	// reserve_stock after [validate_order]: 5 attempts, backoff from 500ms, timeout 10s
	// in test: 1 attempt, timeout 2s, warehouse central
	// line 6: MISSING_DEP_REF at steps[0].dependencies[0] (step "charge"): depends on unknown step "pay"
	// line 9: UNKNOWN_KEY at steps[0].retry.limit (step "charge"): unknown key "limit" in steps[].retry (did you mean "max_attempts"?)
}

func ExampleTemplate_Validate() {
	// A template built in Go: zero values mean the documented defaults.
	tmpl := &tasker.Template{
		Namespace: "shop",
		Name:      "refund",
		Steps: []tasker.StepTemplate{
			{Name: "check", Handler: tasker.HandlerSpec{Callable: "check_refund"}},
			{Name: "pay", Handler: tasker.HandlerSpec{Callable: "pay_refund"},
				Dependencies: []string{"check"}, Retry: tasker.RetryPolicy{NoRetry: true}},
		},
	}
	fmt.Println(tmpl.Validate())
	d := tmpl.WithDefaults()
	fmt.Println(d.Key(), d.Steps[0].Retry.MaxAttempts, d.Steps[1].Retry.MaxAttempts, d.Steps[0].Timeout)
	// Output:
	// <nil>
	// shop/refund@0.0.0 3 1 30s
}

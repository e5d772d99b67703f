package main

import (
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/tasker-systems/tasker/httpapi"
)

// operatorCookie carries the operator token for the UI, which a browser sends with every API call
// (set it once, for example from the browser's console: document.cookie = "tasker_operator=…").
const operatorCookie = "tasker_operator"

// operatorAuthorizer is the example's httpapi.Authorizer: anyone who reaches /tasker/ may read
// (a real service would check its own session here too), and a write — creating or cancelling a
// task, retrying, resolving or completing a step, resolving a dead letter — needs the operator
// token, as "Authorization: Bearer <token>" or the tasker_operator cookie. Without a token
// configured, writes are allowed from the loopback interface only, for a developer's machine.
func operatorAuthorizer(token string) httpapi.Authorizer {
	return func(r *http.Request, a httpapi.Action) error {
		if !a.Write() {
			return nil
		}
		if token == "" {
			host, _, _ := net.SplitHostPort(r.RemoteAddr)
			if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
				return nil
			}
			return fmt.Errorf("%s is allowed from this machine only (set TASKER_OPERATOR_TOKEN to allow it elsewhere)", a)
		}
		given := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		if c, err := r.Cookie(operatorCookie); given == "" && err == nil {
			given = c.Value
		}
		if given == "" {
			return fmt.Errorf("%w: %s needs the operator token", httpapi.ErrUnauthenticated, a)
		}
		if subtle.ConstantTimeCompare([]byte(given), []byte(token)) != 1 {
			return fmt.Errorf("%s: the operator token does not match", a)
		}
		return nil
	}
}

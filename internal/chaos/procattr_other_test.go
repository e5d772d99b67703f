//go:build !linux

package chaos_test

import "syscall"

// sysProcAttr has no parent-death signal outside Linux; the worker watches its parent instead.
func sysProcAttr() *syscall.SysProcAttr { return nil }

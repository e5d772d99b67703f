package chaos_test

import "syscall"

// sysProcAttr makes the kernel SIGKILL a worker when the test binary dies, whatever kills it.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }

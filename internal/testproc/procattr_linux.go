package testproc

import "syscall"

// childAttr puts a child in its own process group (so that killing the
// group kills what it forks) and has the kernel kill it if this process
// dies without cleaning up (a test timeout, a closed output pipe, SIGKILL):
// no leaked redis-server or sidecar holding ports and test databases.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

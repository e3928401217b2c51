package main

import "syscall"

// childAttr puts a child in its own process group (so it can be killed
// with what it forks) and has the kernel kill it if the driver dies
// without cleaning up.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

//go:build !linux

package testproc

import "syscall"

// childAttr puts a child in its own process group, so that killing the
// group kills what it forks. (Only Linux can also tie the child's life to
// ours.)
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

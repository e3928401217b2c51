//go:build !linux

package faults

import "syscall"

// childAttr puts a child in its own process group, so cleanup can kill what
// it forks. (Only Linux can also tie the child's life to ours.)
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

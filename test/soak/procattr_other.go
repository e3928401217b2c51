//go:build !linux

package main

import "syscall"

// childAttr puts a child in its own process group, so it can be killed
// with what it forks.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

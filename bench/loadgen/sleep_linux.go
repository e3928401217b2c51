//go:build linux

package loadgen

import (
	"context"
	"runtime"
	"syscall"
	"time"
)

const (
	// prSetTimerSlack is prctl's PR_SET_TIMERSLACK (linux/prctl.h).
	prSetTimerSlack = 29
	// timerSlack is the slack asked for the scheduler's thread, in ns;
	// the kernel's default, 50µs, would be added to most wake-ups.
	timerSlack = 1000
	// maxNap bounds one nanosleep, so that an ended context is noticed.
	maxNap = 20 * time.Millisecond
)

// newSleeper returns sleep(ctx, t), which returns true at t, or false once
// ctx has ended.
//
// Go's timers wake an idle process through epoll_wait, whose timeout is in
// whole milliseconds: a fixed-rate scheduler sleeping on them sends most
// requests up to 1 ms after their due time, and that lateness is counted
// in their latency. So on Linux the caller is locked to its OS thread, the
// thread's timer slack set to 1µs, and sleeps are nanosleep calls, which
// wake within some tens of µs. The caller must not unlock the thread: when
// its goroutine ends, the runtime ends the altered thread with it.
func newSleeper() func(context.Context, time.Time) bool {
	runtime.LockOSThread()
	// Best effort: if prctl fails, sleeps keep the default slack.
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerSlack, timerSlack, 0)
	return func(ctx context.Context, t time.Time) bool {
		for ctx.Err() == nil {
			d := time.Until(t)
			if d <= 0 {
				return true
			}
			ts := syscall.NsecToTimespec(int64(min(d, maxNap)))
			_ = syscall.Nanosleep(&ts, nil) // interrupted: the loop sleeps the rest
		}
		return false
	}
}

//go:build !linux

package loadgen

import (
	"context"
	"time"
)

// newSleeper returns sleep(ctx, t), which returns true at t, or false once
// ctx has ended. Elsewhere than on Linux it uses Go's timers, which may
// wake the scheduler up to about a millisecond late (see sleep_linux.go).
func newSleeper() func(context.Context, time.Time) bool {
	return func(ctx context.Context, t time.Time) bool {
		d := time.Until(t)
		if d <= 0 {
			return ctx.Err() == nil
		}
		timer := time.NewTimer(d)
		defer timer.Stop()
		select {
		case <-timer.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
}

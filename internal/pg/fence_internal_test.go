package pg

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
)

// TestFenceWait drives Fence.wait through its outcomes with a scripted
// replay position (TestReplicaFence does so on a real standby).
func TestFenceWait(t *testing.T) {
	t.Parallel()
	errDown := errors.New("standby down")
	tests := []struct {
		name string
		// raised and covered invalidations, and the primary position
		// covering them
		raised, covered, target uint64
		// replay answers the standby gives, in turn (the last repeats)
		replay  []replayAnswer
		cancel  bool // the caller's context is cancelled already
		wantErr error
		outcome string // authz_pg_replica_reads_total's label
	}{
		{name: "nothing raised", outcome: "current"},
		{name: "replayed past the target already", raised: 1, covered: 1, target: 100, replay: []replayAnswer{{lsn: 100, recovering: true}}, outcome: "waited"},
		{name: "catches up on the third poll", raised: 2, covered: 2, target: 100,
			replay: []replayAnswer{{lsn: 10, recovering: true}, {lsn: 99, recovering: true}, {lsn: 150, recovering: true}}, outcome: "waited"},
		{name: "never catches up", raised: 1, covered: 1, target: 100, replay: []replayAnswer{{lsn: 99, recovering: true}}, wantErr: ErrReplicaLag, outcome: "lag"},
		{name: "primary position unknown", raised: 2, covered: 1, target: 100, replay: []replayAnswer{{lsn: 200, recovering: true}}, wantErr: ErrReplicaLag, outcome: "lag"},
		{name: "promoted", raised: 1, covered: 1, target: 100, replay: []replayAnswer{{lsn: 50}}, outcome: "waited"},
		{name: "replay position unreadable", raised: 1, covered: 1, target: 100, replay: []replayAnswer{{err: errDown}}, wantErr: errDown, outcome: "error"},
		{name: "caller gave up", raised: 1, covered: 1, target: 100, replay: []replayAnswer{{lsn: 99, recovering: true}}, cancel: true, wantErr: context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, err := NewFence("", FenceConfig{MaxWait: 50 * time.Millisecond}, zap.NewNop(), prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			f.raised.Store(tt.raised)
			f.covered.Store(tt.covered)
			f.target.Store(tt.target)
			calls := 0
			replay := func(ctx context.Context) (uint64, bool, error) {
				if err := ctx.Err(); err != nil {
					return 0, false, err
				}
				a := tt.replay[min(calls, len(tt.replay)-1)]
				calls++
				return a.lsn, a.recovering, a.err
			}
			ctx, cancel := context.WithCancel(context.Background())
			if tt.cancel {
				cancel()
			}
			defer cancel()
			err = f.wait(ctx, replay)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("wait: %v, want %v", err, tt.wantErr)
			}
			if tt.outcome != "" {
				if n := testutil.ToFloat64(f.m.outcome.WithLabelValues(tt.outcome)); n != 1 {
					t.Errorf("outcome %s counted %v times, want 1", tt.outcome, n)
				}
			}
		})
	}
}

type replayAnswer struct {
	lsn        uint64
	recovering bool
	err        error
}

// An inactive fence (the database is a primary) raises nothing: reads
// never wait and Run never asks the primary.
func TestFenceInactive(t *testing.T) {
	t.Parallel()
	f, err := NewFence("", FenceConfig{}, zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	f.Raise()
	if n := f.raised.Load(); n != 0 {
		t.Fatalf("an inactive fence raised %d", n)
	}
	f.activate()
	f.Raise()
	if n := f.raised.Load(); n != 2 {
		t.Fatalf("an active fence raised %d, want 2 (activation and Raise)", n)
	}
}

func TestFormatLSN(t *testing.T) {
	t.Parallel()
	for lsn, want := range map[uint64]string{0: "0/0", 0x16B3748: "0/16B3748", 0x1_0000_00FF: "1/FF"} {
		if got := formatLSN(lsn); got != want {
			t.Errorf("formatLSN(%#x) = %q, want %q", lsn, got, want)
		}
	}
}

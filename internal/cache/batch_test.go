package cache

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestReadBatcher reads from many goroutines at once through one batcher:
// every lookup gets exactly the values of the keys it asked for (a missing
// key nil), whichever batch carried it, and a caller that gives up fails
// alone.
func TestReadBatcher(t *testing.T) {
	t.Parallel()
	rdb, prefix := redisClient(t)
	ctx := context.Background()
	const keys = 50
	for i := range keys {
		if i%5 == 0 {
			continue // missing
		}
		if err := rdb.Set(ctx, prefix+"k"+strconv.Itoa(i), "v"+strconv.Itoa(i), time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
	}
	b := &readBatcher{rdb: rdb, timeout: 10 * time.Second}

	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for g := range 40 {
		wg.Go(func() {
			for n := range 25 {
				// 1 to 4 keys, as an entry and its markers.
				var ks []int
				for j := range 1 + (g+n)%4 {
					ks = append(ks, (g*7+n*3+j*11)%keys)
				}
				names := make([]string, len(ks))
				for j, k := range ks {
					names[j] = prefix + "k" + strconv.Itoa(k)
				}
				vals, err := b.getMany(ctx, names)
				if err != nil {
					errs <- err
					return
				}
				for j, k := range ks {
					want := "v" + strconv.Itoa(k)
					if k%5 == 0 {
						want = ""
					}
					if got := string(vals[j]); got != want || (k%5 == 0) != (vals[j] == nil) {
						errs <- fmt.Errorf("key %d: got %q (nil %v), want %q", k, got, vals[j] == nil, want)
						return
					}
				}
			}
		})
	}
	// A caller whose context has ended gets its error at once; nobody
	// else is affected.
	gone, cancel := context.WithCancel(ctx)
	cancel()
	wg.Go(func() {
		b.mu.Lock()
		busy := b.out == maxRoundTrips
		b.mu.Unlock()
		if _, err := b.getMany(gone, []string{prefix + "k1"}); busy && err == nil {
			errs <- fmt.Errorf("a canceled caller queued behind a round trip got no error")
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// A canceled caller's batch may still be out: the batcher goes idle
	// once it is back.
	waitFor(t, "the batcher idle", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.out == 0 && len(b.pending) == 0
	})
}

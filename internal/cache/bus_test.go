package cache

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// The bus delivers messages, and after its connection is killed it
// resubscribes by itself and says so (the caller then flushes).
func TestRedisBusReconnects(t *testing.T) {
	t.Parallel()
	rdb, prefix := redisClient(t)
	// A client of its own, named, so the test can find and kill exactly its
	// subscription connection on a shared Redis.
	name := strings.ReplaceAll(prefix, ":", "-") + "bus"
	opts := *rdb.Options()
	opts.ClientName = name
	sub := redis.NewClient(&opts)
	defer sub.Close()
	channel := prefix + "chan"
	bus := NewRedisBus(sub, channel, zaptest.NewLogger(t))
	bus.minBackoff = 10 * time.Millisecond

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	subscribed := make(chan string, 10)
	got := make(chan string, 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		bus.Subscribe(ctx, func() { subscribed <- "subscribed" }, func(b []byte) { got <- string(b) })
	}()
	receive(t, subscribed) // the first subscription

	pub := NewRedisBus(rdb, channel, zap.NewNop())
	if err := pub.Publish(ctx, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if m := receive(t, got); m != "hello" {
		t.Fatalf("got %q", m)
	}

	if err := killClient(ctx, rdb, name); err != nil {
		t.Fatal(err)
	}
	receive(t, subscribed) // the resubscription
	if err := pub.Publish(ctx, []byte("again")); err != nil {
		t.Fatal(err)
	}
	if m := receive(t, got); m != "again" {
		t.Fatalf("after reconnect got %q", m)
	}
	cancel()
	<-done
}

// killClient kills every connection named name.
func killClient(ctx context.Context, rdb *redis.Client, name string) error {
	list, err := rdb.ClientList(ctx).Result()
	if err != nil {
		return err
	}
	for line := range strings.SplitSeq(list, "\n") {
		if !strings.Contains(line, " name="+name+" ") {
			continue
		}
		for field := range strings.FieldsSeq(line) {
			if id, ok := strings.CutPrefix(field, "id="); ok {
				if err := rdb.Do(ctx, "CLIENT", "KILL", "ID", id).Err(); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

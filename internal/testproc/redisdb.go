package testproc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisURL is the shared test Redis: $AUTHZ_TEST_REDIS_URL, else the
// machine's redis://127.0.0.1:6379/0.
func RedisURL() string {
	if u := os.Getenv("AUTHZ_TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// RedisDB connects to the shared test Redis and returns a client and a key
// prefix of t's own, so parallel tests and packages never collide; the
// prefix's keys are deleted and the client closed when t ends. An
// unreachable Redis fails t under CI and skips it elsewhere.
func RedisDB(t testing.TB) (*redis.Client, string) {
	t.Helper()
	url := RedisURL()
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("testproc: redis url %q: %v", url, err)
	}
	rdb := redis.NewClient(opts)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // generous: a miss fails CI
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		RequireOrSkip(t, "redis at %s unreachable: %v", url, err)
	}
	b := make([]byte, 6)
	rand.Read(b)
	prefix := "authztest:" + hex.EncodeToString(b) + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
		rdb.Close()
	})
	return rdb, prefix
}

package cache

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// RedisBus carries invalidation messages between replicas over one Redis
// pub/sub channel. It knows nothing of the messages' format.
type RedisBus struct {
	rdb     redis.UniversalClient
	channel string
	log     *zap.Logger
	// PingEvery is how long the subscription may stay silent before it is
	// pinged, so that a connection that died without a word (no FIN, no
	// RST) is noticed and replaced.
	pingEvery  time.Duration
	minBackoff time.Duration
	maxBackoff time.Duration
}

// NewRedisBus returns a bus on channel of rdb.
func NewRedisBus(rdb redis.UniversalClient, channel string, log *zap.Logger) *RedisBus {
	return &RedisBus{
		rdb: rdb, channel: channel, log: log.Named("bus"),
		pingEvery: 15 * time.Second, minBackoff: 100 * time.Millisecond, maxBackoff: 5 * time.Second,
	}
}

// Publish sends payload to every subscriber of the channel.
func (b *RedisBus) Publish(ctx context.Context, payload []byte) error {
	if err := b.rdb.Publish(ctx, b.channel, payload).Err(); err != nil {
		return fmt.Errorf("cache: publish on %q: %w", b.channel, err)
	}
	return nil
}

// Subscribe receives the channel's messages until ctx ends, reconnecting
// with backoff when the connection is lost. onSubscribed runs each time
// the subscription is (re)established, before any message received on it:
// messages published while it was down are lost, and the caller must act
// as if it had missed some. onMessage runs for each message, in order, on
// this goroutine.
func (b *RedisBus) Subscribe(ctx context.Context, onSubscribed func(), onMessage func([]byte)) {
	ps := b.rdb.Subscribe(ctx, b.channel)
	defer ps.Close()
	// go-redis does not watch ctx during a blocked read: closing the
	// subscription is what ends one promptly.
	stop := context.AfterFunc(ctx, func() { ps.Close() })
	defer stop()
	backoff := b.minBackoff
	down := false
	for ctx.Err() == nil {
		msg, err := ps.ReceiveTimeout(ctx, b.pingEvery)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Silence: ping. A failed ping makes go-redis reconnect
				// (and resubscribe) on the next receive.
				if err := ps.Ping(ctx); err != nil && !down {
					b.log.Warn("invalidation subscription ping failed", zap.Error(err))
				}
				continue
			}
			if !down {
				b.log.Warn("invalidation subscription lost; reconnecting", zap.String("channel", b.channel), zap.Error(err))
				down = true
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, b.maxBackoff)
			continue
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" && m.Channel == b.channel {
				if down {
					b.log.Info("invalidation subscription restored", zap.String("channel", b.channel))
				}
				down, backoff = false, b.minBackoff
				onSubscribed()
			}
		case *redis.Message:
			onMessage([]byte(m.Payload))
		}
	}
}

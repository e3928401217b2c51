package pg

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
)

// DefaultListenChannel is the channel sql/invalidation-triggers.sql
// notifies.
const DefaultListenChannel = "authz_invalidate"

// ListenerConfig tunes a Listener. Zero fields take defaults.
type ListenerConfig struct {
	// Channel to LISTEN on; DefaultListenChannel by default.
	Channel string
	// ApplicationName of the session; "authz-sidecar-listen" by default
	// (tests set their own to find the session).
	ApplicationName string
	// PingInterval is how long the connection may stay silent before it
	// is pinged, so a connection that died without a word is replaced;
	// 15s by default.
	PingInterval time.Duration
	// MinBackoff and MaxBackoff bound the wait between reconnection
	// attempts (doubling, with jitter); 100ms and 5s by default.
	MinBackoff, MaxBackoff time.Duration
	// ConnectTimeout bounds one connection attempt; DefaultConnectTimeout
	// by default.
	ConnectTimeout time.Duration
}

func (c *ListenerConfig) defaults() {
	if c.Channel == "" {
		c.Channel = DefaultListenChannel
	}
	if c.ApplicationName == "" {
		c.ApplicationName = applicationName + "-listen"
	}
	if c.PingInterval <= 0 {
		c.PingInterval = 15 * time.Second
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = 100 * time.Millisecond
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = max(5*time.Second, c.MinBackoff)
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
}

// Listener receives PostgreSQL notifications on one channel over a
// dedicated connection (LISTEN needs a session of its own: a pooled
// connection goes back to the pool, and its LISTEN with it).
//
// The session is read-only like the pool's (default_transaction_read_only
// = on): LISTEN is allowed in a read-only session. It is not allowed on a
// hot standby, and notifications are not replicated, so the URL must point
// at the primary.
type Listener struct {
	conn *pgx.ConnConfig
	cfg  ListenerConfig
	log  *zap.Logger
}

// NewListener configures a Listener for databaseURL; it does not connect.
func NewListener(databaseURL string, cfg ListenerConfig, log *zap.Logger) (*Listener, error) {
	cfg.defaults()
	cc, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("pg: listener: %w", err)
	}
	cc.ConnectTimeout = cfg.ConnectTimeout
	cc.RuntimeParams["default_transaction_read_only"] = "on"
	cc.RuntimeParams["application_name"] = cfg.ApplicationName
	return &Listener{conn: cc, cfg: cfg, log: log.Named("listen")}, nil
}

// Listen LISTENs until ctx ends, reconnecting with backoff whenever the
// connection fails. onConnected runs each time LISTEN has taken effect,
// before any notification received on that connection: notifications sent
// while no LISTEN was in effect are lost, and the caller must act as if it
// had missed some. onNotify runs for each notification's payload, in
// order, on this goroutine.
func (l *Listener) Listen(ctx context.Context, onConnected func(), onNotify func(payload string)) {
	backoff := l.cfg.MinBackoff
	down := false
	for ctx.Err() == nil {
		started := time.Now()
		err := l.session(ctx, func() {
			if down {
				l.log.Info("listening again", zap.String("channel", l.cfg.Channel))
			}
			down = false
			onConnected()
		}, onNotify)
		if ctx.Err() != nil {
			return
		}
		if !down {
			l.log.Warn("database notifications lost; reconnecting",
				zap.String("channel", l.cfg.Channel), zap.Error(err))
			down = true
		}
		if time.Since(started) > l.cfg.MaxBackoff {
			backoff = l.cfg.MinBackoff // a long session: start over
		}
		// Full jitter keeps replicas from reconnecting in step.
		wait := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(2*backoff, l.cfg.MaxBackoff)
	}
}

// session runs one connection: connect, LISTEN, then wait for
// notifications, pinging when silent. It returns the error that ended it
// (nil when ctx ended).
func (l *Listener) session(ctx context.Context, onConnected func(), onNotify func(string)) error {
	conn, err := pgx.ConnectConfig(ctx, l.conn)
	if err != nil {
		return fmt.Errorf("pg: listen: connect: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{l.cfg.Channel}.Sanitize()); err != nil {
		return fmt.Errorf("pg: listen: %w", err)
	}
	onConnected()
	for {
		wctx, cancel := context.WithTimeout(ctx, l.cfg.PingInterval)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			onNotify(n.Payload)
			continue
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, context.DeadlineExceeded) && !conn.IsClosed():
			// Silence (the deadline only interrupts the read; the
			// connection stays usable): make sure the server is there.
			pctx, cancel := context.WithTimeout(ctx, l.cfg.PingInterval)
			err = conn.Ping(pctx)
			cancel()
			if err != nil {
				return fmt.Errorf("pg: listen: ping: %w", err)
			}
			continue
		default:
			return fmt.Errorf("pg: listen: wait: %w", err)
		}
	}
}

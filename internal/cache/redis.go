package cache

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Redis topologies, chosen by configuration (--redis-mode).
const (
	// RedisSingle is one server (with or without replicas the client
	// ignores): the URL names it.
	RedisSingle = "single"
	// RedisCluster is a Redis Cluster: the URL and its addr= parameters are
	// seed nodes; the client discovers the rest and follows slot moves.
	RedisCluster = "cluster"
	// RedisSentinel is a master watched by Sentinels: the URL and its
	// addr= parameters are Sentinels, MasterName the master's name; the
	// client follows failovers.
	RedisSentinel = "sentinel"
)

// RedisConfig says how to reach a Redis deployment.
type RedisConfig struct {
	// URL is redis://[user:password@]host:port[/db][?addr=host:port&...]
	// (rediss:// for TLS). Extra seed addresses (cluster nodes, sentinels)
	// are addr= query parameters; go-redis's other options (dial_timeout,
	// pool_size, ...) may be given as parameters too. In sentinel mode the
	// user and password are the Sentinels'; the master's go in the
	// username= and password= parameters.
	URL string
	// Mode is RedisSingle (the default when empty), RedisCluster or
	// RedisSentinel.
	Mode string
	// MasterName is the Sentinel master name (sentinel mode; may also be
	// given as the master_name= parameter).
	MasterName string
	// Timeout, when positive, bounds the socket reads and writes of every
	// call, and each call's context deadline is honoured as well (go-redis
	// ignores it without ContextTimeoutEnabled: a paused Redis would hold
	// each call for its 3-5 s default socket timeouts, long past a check's
	// deadline). Zero keeps go-redis's defaults, for a subscription.
	Timeout time.Duration
}

// NewRedis returns a client for cfg's topology. One client type serves
// them all (L2 entries, invalidation markers, the pub/sub bus, Better
// Auth's secondary storage): every command the sidecar sends touches one
// key, or is a pipeline the cluster client splits by node, so no key needs
// to share a hash slot with another.
func NewRedis(cfg RedisConfig) (redis.UniversalClient, error) {
	if cfg.URL == "" {
		return nil, errors.New("cache: no redis URL")
	}
	switch cfg.Mode {
	case "", RedisSingle:
		u, err := url.Parse(cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("redis url: %w", redactURLError(err))
		}
		if u.Query().Has("addr") {
			return nil, errors.New("redis url: addr= parameters name more servers: set the mode to cluster or sentinel")
		}
		o, err := redis.ParseURL(cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("redis url: %w", redactURLError(err))
		}
		if cfg.Timeout > 0 {
			o.ContextTimeoutEnabled = true
			o.ReadTimeout, o.WriteTimeout = cfg.Timeout, cfg.Timeout
		}
		return redis.NewClient(o), nil
	case RedisCluster:
		o, err := redis.ParseClusterURL(cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("redis cluster url: %w", redactURLError(err))
		}
		if cfg.Timeout > 0 {
			o.ContextTimeoutEnabled = true
			o.ReadTimeout, o.WriteTimeout = cfg.Timeout, cfg.Timeout
		}
		return redis.NewClusterClient(o), nil
	case RedisSentinel:
		o, err := redis.ParseFailoverURL(cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("redis sentinel url: %w", redactURLError(err))
		}
		if cfg.MasterName != "" {
			o.MasterName = cfg.MasterName
		}
		if o.MasterName == "" {
			return nil, errors.New("redis sentinel: no master name (--redis-master-name)")
		}
		if cfg.Timeout > 0 {
			o.ContextTimeoutEnabled = true
			o.ReadTimeout, o.WriteTimeout = cfg.Timeout, cfg.Timeout
		}
		return redis.NewFailoverClient(o), nil
	default:
		return nil, fmt.Errorf("redis mode %q: want single, cluster or sentinel", cfg.Mode)
	}
}

// redactURLError drops the URL from a parse error: it may hold a password.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

// LogRedisTo routes go-redis's own log lines (reconnections, pool
// trouble), which go to a process-wide logger of its own, into log instead
// of plain text on stderr.
func LogRedisTo(log *zap.Logger) { redis.SetLogger(redisLogger{log}) }

// redisLogger adapts zap to go-redis's logging interface.
type redisLogger struct{ log *zap.Logger }

func (l redisLogger) Printf(_ context.Context, format string, v ...any) {
	l.log.Warn(fmt.Sprintf(format, v...))
}

package testproc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// topologyPatience bounds every wait for a Redis Cluster or Sentinel
// condition: generous, for a loaded machine; a failure bound, never what a
// test measures.
const topologyPatience = 30 * time.Second

// redisNode is one redis-server child of a cluster or a sentinel group.
type redisNode struct {
	port int
	proc *Process
}

func (n *redisNode) addr() string { return fmt.Sprintf("127.0.0.1:%d", n.port) }

// startRedisNode runs redis-server (with extra arguments, or a config file
// first) on a free port in dir and waits until it answers PING.
func startRedisNode(dir, logDir, name string, args func(port int) ([]string, error)) (*redisNode, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not installed (run scripts/services.sh): %w", err)
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	a, err := args(port)
	if err != nil {
		return nil, err
	}
	p, err := Start(Spec{Name: fmt.Sprintf("%s-%d", name, port), Dir: dir, Bin: bin, Args: a}, logDir)
	if err != nil {
		return nil, err
	}
	n := &redisNode{port: port, proc: p}
	r := &Redis{port: port}
	if err := waitUntil(30*time.Second, func() (bool, error) {
		if _, exited := p.exited(); exited {
			return false, fatalError{fmt.Errorf("%s exited at start:\n%s", p.Name(), p.Tail(20))}
		}
		return r.ping(time.Second), nil
	}); err != nil {
		p.Kill()
		return nil, fmt.Errorf("%s on %s: %w", name, n.addr(), err)
	}
	return n, nil
}

// waitUntil polls cond every 50ms until it holds, returns a fatalError, or
// timeout passes; other errors are only remembered for the report.
func waitUntil(timeout time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if err != nil {
			var fatal fatalError
			if errors.As(err, &fatal) {
				return err
			}
			last = err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not so after %v (last error: %v)", timeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// fatalError ends a waitUntil at once.
type fatalError struct{ error }

// info returns the fields of a section of INFO from the server at addr.
func info(ctx context.Context, addr, section string) (map[string]string, error) {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: 2 * time.Second})
	defer c.Close()
	s, err := c.Info(ctx, section).Result()
	if err != nil {
		return nil, err
	}
	return parseInfo(s), nil
}

func parseInfo(s string) map[string]string {
	m := map[string]string{}
	for line := range strings.SplitSeq(s, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			m[k] = v
		}
	}
	return m
}

// RedisCluster is a Redis Cluster of masters without replicas, each a
// redis-server child on loopback ports of its own (client and bus).
type RedisCluster struct {
	nodes []*redisNode
}

// NewRedisCluster starts n masters in dir (logs in logDir), joins them with
// redis-cli --cluster create, and waits until every node reports
// cluster_state:ok and knows all n. The caller must Kill it.
func NewRedisCluster(dir, logDir string, n int) (*RedisCluster, error) {
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return nil, fmt.Errorf("redis-cli not installed (run scripts/services.sh): %w", err)
	}
	c := &RedisCluster{}
	for range n {
		node, err := startRedisNode(dir, logDir, "redis-cluster", func(port int) ([]string, error) {
			bus, err := FreePort()
			if err != nil {
				return nil, err
			}
			return []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
				"--cluster-port", strconv.Itoa(bus), "--cluster-config-file", fmt.Sprintf("nodes-%d.conf", port),
				"--cluster-node-timeout", "5000", "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", dir}, nil
		})
		if err != nil {
			c.Kill()
			return nil, err
		}
		c.nodes = append(c.nodes, node)
	}
	args := []string{"--cluster", "create"}
	args = append(args, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), topologyPatience)
	defer cancel()
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		c.Kill()
		return nil, fmt.Errorf("redis-cli --cluster create: %w:\n%s", err, out)
	}
	for _, node := range c.nodes {
		if err := waitUntil(topologyPatience, func() (bool, error) {
			m, err := clusterInfo(ctx, node.addr())
			return err == nil && m["cluster_state"] == "ok" && m["cluster_known_nodes"] == strconv.Itoa(n) &&
				m["cluster_slots_ok"] == "16384", err
		}); err != nil {
			c.Kill()
			return nil, fmt.Errorf("cluster node %s: %w", node.addr(), err)
		}
	}
	return c, nil
}

func clusterInfo(ctx context.Context, addr string) (map[string]string, error) {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: 2 * time.Second})
	defer c.Close()
	s, err := c.ClusterInfo(ctx).Result()
	if err != nil {
		return nil, err
	}
	return parseInfo(s), nil
}

// StartRedisClusterT is NewRedisCluster for a test: a missing redis-server
// or redis-cli fails the test under CI and skips it otherwise, and the
// nodes are killed at cleanup.
func StartRedisClusterT(t testing.TB, n int) *RedisCluster {
	t.Helper()
	c, err := NewRedisCluster(t.TempDir(), t.TempDir(), n)
	if errors.Is(err, exec.ErrNotFound) {
		RequireOrSkip(t, "%v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, node := range c.nodes {
		node.proc.KillAtCleanup(t)
	}
	return c
}

// Addrs are the nodes' host:port.
func (c *RedisCluster) Addrs() []string {
	var a []string
	for _, n := range c.nodes {
		a = append(a, n.addr())
	}
	return a
}

// URL is a cluster URL for the sidecar's --redis-url: the first node, the
// others as addr= parameters.
func (c *RedisCluster) URL() string { return seedURL(c.Addrs()) }

func seedURL(addrs []string) string {
	u := "redis://" + addrs[0]
	for i, a := range addrs[1:] {
		sep := "&"
		if i == 0 {
			sep = "?"
		}
		u += sep + "addr=" + a
	}
	return u
}

// Kill kills every node.
func (c *RedisCluster) Kill() {
	for _, n := range c.nodes {
		n.proc.Kill()
	}
}

// RedisSentinel is a master, a replica and three Sentinels watching them
// under one master name, each a redis-server child on a loopback port of
// its own.
type RedisSentinel struct {
	// MasterName is the name the Sentinels know the master by.
	MasterName string
	data       [2]*redisNode // the first master and its replica
	sentinels  []*redisNode
}

// NewRedisSentinel starts the group in dir (logs in logDir) and waits until
// the replica is in sync and every Sentinel knows the replica and the two
// other Sentinels. The caller must Kill it.
func NewRedisSentinel(dir, logDir string) (*RedisSentinel, error) {
	s := &RedisSentinel{MasterName: "mymaster"}
	dataArgs := func(replicaOf int) func(int) ([]string, error) {
		return func(port int) ([]string, error) {
			a := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
				"--daemonize", "no", "--dir", dir}
			if replicaOf != 0 {
				a = append(a, "--replicaof", "127.0.0.1", strconv.Itoa(replicaOf))
			}
			return a, nil
		}
	}
	master, err := startRedisNode(dir, logDir, "redis-master", dataArgs(0))
	if err != nil {
		return nil, err
	}
	s.data[0] = master
	if s.data[1], err = startRedisNode(dir, logDir, "redis-replica", dataArgs(master.port)); err != nil {
		s.Kill()
		return nil, err
	}
	for range 3 {
		node, err := startRedisNode(dir, logDir, "redis-sentinel", func(port int) ([]string, error) {
			// A Sentinel rewrites its configuration file: one each.
			conf := filepath.Join(dir, fmt.Sprintf("sentinel-%d.conf", port))
			body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndaemonize no\ndir %s\n"+
				"sentinel monitor %s 127.0.0.1 %d 2\n"+
				"sentinel down-after-milliseconds %s 5000\n"+
				"sentinel failover-timeout %s 10000\n"+
				"sentinel parallel-syncs %s 1\n", port, dir, s.MasterName, master.port, s.MasterName, s.MasterName, s.MasterName)
			if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
				return nil, err
			}
			return []string{conf, "--sentinel"}, nil
		})
		if err != nil {
			s.Kill()
			return nil, err
		}
		s.sentinels = append(s.sentinels, node)
	}
	ctx, cancel := context.WithTimeout(context.Background(), topologyPatience)
	defer cancel()
	if err := waitUntil(topologyPatience, func() (bool, error) {
		m, err := info(ctx, s.data[1].addr(), "replication")
		return err == nil && m["master_link_status"] == "up", err
	}); err != nil {
		s.Kill()
		return nil, fmt.Errorf("replica in sync: %w", err)
	}
	for _, sn := range s.sentinels {
		if err := waitUntil(topologyPatience, func() (bool, error) {
			m, err := s.sentinelMaster(ctx, sn.addr())
			return err == nil && m["num-slaves"] == "1" && m["num-other-sentinels"] == "2", err
		}); err != nil {
			s.Kill()
			return nil, fmt.Errorf("sentinel %s sees the group: %w", sn.addr(), err)
		}
	}
	return s, nil
}

// sentinelMaster is SENTINEL MASTER <name> as a map.
func (s *RedisSentinel) sentinelMaster(ctx context.Context, addr string) (map[string]string, error) {
	c := redis.NewSentinelClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: 2 * time.Second})
	defer c.Close()
	return c.Master(ctx, s.MasterName).Result()
}

// StartRedisSentinelT is NewRedisSentinel for a test: a missing
// redis-server fails the test under CI and skips it otherwise, and every
// process is killed at cleanup.
func StartRedisSentinelT(t testing.TB) *RedisSentinel {
	t.Helper()
	s, err := NewRedisSentinel(t.TempDir(), t.TempDir())
	if errors.Is(err, exec.ErrNotFound) {
		RequireOrSkip(t, "%v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range append(s.data[:], s.sentinels...) {
		n.proc.KillAtCleanup(t)
	}
	return s
}

// URL is a sentinel URL for the sidecar's --redis-url: the first Sentinel,
// the others as addr= parameters.
func (s *RedisSentinel) URL() string {
	var addrs []string
	for _, n := range s.sentinels {
		addrs = append(addrs, n.addr())
	}
	return seedURL(addrs)
}

// MasterAddr is the master's host:port as the first Sentinel reports it.
func (s *RedisSentinel) MasterAddr(ctx context.Context) (string, error) {
	c := redis.NewSentinelClient(&redis.Options{Addr: s.sentinels[0].addr(), MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: 2 * time.Second})
	defer c.Close()
	hp, err := c.GetMasterAddrByName(ctx, s.MasterName).Result()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(hp[0], hp[1]), nil
}

// Failover forces a failover (SENTINEL FAILOVER on the first Sentinel) and
// waits until every Sentinel names the former replica as master, the
// former replica says it is the master, and the former master is its
// replica, in sync. It returns the new master's address.
func (s *RedisSentinel) Failover(ctx context.Context) (string, error) {
	old, err := s.MasterAddr(ctx)
	if err != nil {
		return "", err
	}
	var next string
	for _, n := range s.data {
		if n.addr() != old {
			next = n.addr()
		}
	}
	c := redis.NewSentinelClient(&redis.Options{Addr: s.sentinels[0].addr(), MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: 5 * time.Second})
	defer c.Close()
	if err := c.Failover(ctx, s.MasterName).Err(); err != nil {
		return "", fmt.Errorf("SENTINEL FAILOVER: %w", err)
	}
	for _, sn := range s.sentinels {
		if err := waitUntil(topologyPatience, func() (bool, error) {
			m, err := s.sentinelMaster(ctx, sn.addr())
			return err == nil && net.JoinHostPort(m["ip"], m["port"]) == next, err
		}); err != nil {
			return "", fmt.Errorf("sentinel %s names %s master: %w", sn.addr(), next, err)
		}
	}
	if err := waitUntil(topologyPatience, func() (bool, error) {
		m, err := info(ctx, next, "replication")
		return err == nil && m["role"] == "master", err
	}); err != nil {
		return "", fmt.Errorf("%s becomes master: %w", next, err)
	}
	if err := waitUntil(topologyPatience, func() (bool, error) {
		m, err := info(ctx, old, "replication")
		return err == nil && m["role"] == "slave" && m["master_port"] == next[strings.LastIndexByte(next, ':')+1:] &&
			m["master_link_status"] == "up", err
	}); err != nil {
		return "", fmt.Errorf("%s becomes a replica of %s: %w", old, next, err)
	}
	return next, nil
}

// Kill kills every process.
func (s *RedisSentinel) Kill() {
	for _, n := range append(s.data[:], s.sentinels...) {
		if n != nil {
			n.proc.Kill()
		}
	}
}

package stacktest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
)

// Environment variables that name the opt-in Redis deployments: a Redis
// Cluster, Redis behind Sentinel, and the TLS material both use when they
// were started with --tls (deploy/local/redis-cluster.sh,
// deploy/local/redis-sentinel.sh print them).
const (
	// RedisClusterEnv names cluster nodes, comma-separated host:port pairs.
	RedisClusterEnv = "IDSYNC_TEST_REDIS_CLUSTER"
	// RedisSentinelEnv names Sentinels, comma-separated host:port pairs.
	RedisSentinelEnv = "IDSYNC_TEST_REDIS_SENTINEL"
	// RedisMasterEnv is the master name the Sentinels monitor (default
	// "idsync").
	RedisMasterEnv = "IDSYNC_TEST_REDIS_MASTER"
	// RedisTLSDirEnv, when set, is a directory holding ca.pem, client.pem
	// and client.key (deploy/local/certs.sh): the cluster and the
	// Sentinels are reached over mutual TLS with them.
	RedisTLSDirEnv = "IDSYNC_TEST_REDIS_TLS_DIR"
)

// RedisHA is a client for the Redis Cluster or the Sentinel-managed Redis
// named by the environment, plus a key prefix owned by one test, as
// [Keyspace] is for the standalone server. The prefix's keys are deleted
// when the test ends, on every master. A RedisHA is safe for concurrent use.
type RedisHA struct {
	redis.UniversalClient
	opts   *redis.UniversalOptions
	prefix string
}

// RedisCluster returns a client for the Redis Cluster named by
// IDSYNC_TEST_REDIS_CLUSTER (over TLS when IDSYNC_TEST_REDIS_TLS_DIR is set)
// with a fresh key prefix for t. The cluster tests are opt-in: when the
// variable is unset the test is skipped, with or without -short, saying how
// to run it.
func RedisCluster(t testing.TB) *RedisHA {
	t.Helper()
	addrs := optIn(t, RedisClusterEnv, "deploy/local/redis-cluster.sh start")
	return newRedisHA(t, &redis.UniversalOptions{Addrs: addrs, IsClusterMode: true})
}

// RedisSentinel returns a client for the master that the Sentinels named by
// IDSYNC_TEST_REDIS_SENTINEL monitor under IDSYNC_TEST_REDIS_MASTER (over
// TLS when IDSYNC_TEST_REDIS_TLS_DIR is set), with a fresh key prefix for
// t. Opt-in like RedisCluster.
func RedisSentinel(t testing.TB) *RedisHA {
	t.Helper()
	addrs := optIn(t, RedisSentinelEnv, "deploy/local/redis-sentinel.sh start")
	return newRedisHA(t, &redis.UniversalOptions{Addrs: addrs, MasterName: RedisMasterName()})
}

// RedisMasterName is the master name of the Sentinel tests:
// IDSYNC_TEST_REDIS_MASTER, or "idsync" (deploy/local's default).
func RedisMasterName() string {
	if v := strings.TrimSpace(os.Getenv(RedisMasterEnv)); v != "" {
		return v
	}
	return "idsync"
}

// RedisTLSDir is IDSYNC_TEST_REDIS_TLS_DIR: "" when the opt-in deployments
// are plain TCP.
func RedisTLSDir() string {
	return strings.TrimSpace(os.Getenv(RedisTLSDirEnv))
}

// RedisTLSConfig returns the client TLS configuration made of dir's ca.pem,
// client.pem and client.key (deploy/local/certs.sh).
func RedisTLSConfig(dir string) (*tls.Config, error) {
	ca, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		return nil, fmt.Errorf("reading the test CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, errors.New("the test CA file holds no PEM certificate")
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key"))
	if err != nil {
		return nil, fmt.Errorf("loading the test client certificate: %w", err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, Certificates: []tls.Certificate{cert}}, nil
}

func optIn(t testing.TB, name, start string) []string {
	t.Helper()
	v := strings.TrimSpace(os.Getenv(name))
	if v == "" {
		t.Skipf("%s is not set: this opt-in test needs a live deployment. Start one with `%s` "+
			"(it prints the variables to export), or run `make test-redis-cluster`, which does all of it.", name, start)
	}
	return strings.Split(v, ",")
}

func newRedisHA(t testing.TB, opts *redis.UniversalOptions) *RedisHA {
	t.Helper()
	if dir := RedisTLSDir(); dir != "" {
		tc, err := RedisTLSConfig(dir)
		if err != nil {
			t.Fatalf("%s=%s: %v", RedisTLSDirEnv, dir, err)
		}
		opts.TLSConfig = tc
	}
	checkReachable(t, "Redis", strings.Join(opts.Addrs, ","), func(ctx context.Context) error {
		c := redis.NewUniversalClient(cloneUniversal(opts))
		defer c.Close()
		return c.Ping(ctx).Err()
	})
	r := &RedisHA{UniversalClient: redis.NewUniversalClient(cloneUniversal(opts)), opts: opts, prefix: Name(t) + ":"}
	t.Cleanup(func() {
		defer r.Close()
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		if err := r.DeleteMatching(ctx, r.prefix+"*"); err != nil {
			t.Errorf("deleting Redis keys under %q: %v", r.prefix, err)
		}
	})
	return r
}

// cloneUniversal copies opts: go-redis keeps per-client state in the
// options it is given.
func cloneUniversal(opts *redis.UniversalOptions) *redis.UniversalOptions {
	o := *opts
	o.Addrs = append([]string(nil), opts.Addrs...)
	if opts.TLSConfig != nil {
		o.TLSConfig = opts.TLSConfig.Clone()
	}
	return &o
}

// Options returns a copy of the options the client was built with, for a
// test that builds clients of its own.
func (r *RedisHA) Options() *redis.UniversalOptions { return cloneUniversal(r.opts) }

// Prefix returns the test's key prefix, as [Keyspace.Prefix].
func (r *RedisHA) Prefix() string { return r.prefix }

// Cluster reports whether the client is a cluster client.
func (r *RedisHA) Cluster() bool { return r.opts.IsClusterMode }

// Keys returns every key matching pattern, on every master of a cluster
// (SCAN on each), or on the Sentinel's master.
func (r *RedisHA) Keys(ctx context.Context, pattern string) ([]string, error) {
	return ScanAll(ctx, r.UniversalClient, pattern)
}

// DeleteMatching deletes every key matching pattern, one at a time (keys of
// one test may live in different slots).
func (r *RedisHA) DeleteMatching(ctx context.Context, pattern string) error {
	keys, err := r.Keys(ctx, pattern)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := r.Del(ctx, k).Err(); err != nil {
			return fmt.Errorf("DEL: %w", err)
		}
	}
	return nil
}

// ScanAll returns every key matching pattern that rdb holds: on a cluster,
// the union of a SCAN on every master; otherwise one SCAN.
func ScanAll(ctx context.Context, rdb redis.UniversalClient, pattern string) ([]string, error) {
	scan := func(ctx context.Context, c redis.Cmdable) ([]string, error) {
		var keys []string
		iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			return nil, fmt.Errorf("SCAN: %w", err)
		}
		return keys, nil
	}
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return scan(ctx, rdb)
	}
	var (
		mu  sync.Mutex
		all []string
	)
	err := cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		keys, err := scan(ctx, node)
		mu.Lock()
		all = append(all, keys...)
		mu.Unlock()
		return err
	})
	return all, err
}

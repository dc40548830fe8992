package stacktest

import (
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// Keyspace is a Redis client for the server named by IDSYNC_TEST_REDIS, plus a
// key prefix owned by one test. All of go-redis's commands are available on
// it; keep the test's keys under [Keyspace.Prefix] (build them with
// [Keyspace.Key]) and they are deleted when the test ends. Keys outside the
// prefix are neither isolated nor cleaned up. A Keyspace is safe for
// concurrent use.
type Keyspace struct {
	*redis.Client
	prefix string
}

// Redis returns a client for the Redis server named by IDSYNC_TEST_REDIS with
// a fresh key prefix for t, after checking once per test binary that the
// server answers PING. When t's cleanup runs, every key under the prefix is
// deleted (SCAN then DEL) and the client is closed. When the variable is unset
// the test is skipped under -short and failed otherwise.
func Redis(t testing.TB) *Keyspace {
	t.Helper()
	addr := lookupEnv(t, RedisEnv)
	opts := &redis.Options{Addr: addr}
	if strings.Contains(addr, "://") {
		var err error
		if opts, err = redis.ParseURL(addr); err != nil {
			t.Fatalf("parsing %s=%q: %v", RedisEnv, addr, err)
		}
	}
	checkReachable(t, "Redis", addr, func(ctx context.Context) error {
		c := redis.NewClient(opts)
		defer c.Close()
		return c.Ping(ctx).Err()
	})

	ks := &Keyspace{Client: redis.NewClient(opts), prefix: Name(t) + ":"}
	t.Cleanup(func() {
		defer ks.Close()
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		if err := ks.deleteAll(ctx); err != nil {
			t.Errorf("deleting Redis keys under %q: %v", ks.prefix, err)
		}
	})
	return ks
}

// Prefix returns the test's key prefix: a [Name] followed by ":". It contains
// no glob characters, so Prefix()+"*" is a safe SCAN or KEYS pattern.
func (ks *Keyspace) Prefix() string {
	return ks.prefix
}

// Key returns Prefix() followed by name.
func (ks *Keyspace) Key(name string) string {
	return ks.prefix + name
}

// deleteAll deletes every key under the prefix, one SCAN page at a time.
func (ks *Keyspace) deleteAll(ctx context.Context) error {
	iter := ks.Scan(ctx, 0, ks.prefix+"*", 500).Iterator()
	var batch []string
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := ks.Del(ctx, batch...).Err()
		batch = batch[:0]
		return err
	}
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 500 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	return flush()
}

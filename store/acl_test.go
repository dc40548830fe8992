package store

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// aclRules is the Redis ACL docs/store.md recommends for idsync with the
// default prefix: only its own keys and channel, only the commands it uses.
const aclRules = "on >s3cret resetkeys ~idsync:* resetchannels &idsync:* -@all " +
	"+hget +hgetall +hset +lpush +ltrim +lrange +watch +unwatch +multi +exec +discard " +
	"+publish +subscribe +unsubscribe +ping +hello +auth"

// TestStoreACL runs a store and a cache as a Redis user restricted by
// aclRules, on a redis-server of the test's own (ACL users are
// server-wide, so not on the shared test Redis).
func TestStoreACL(t *testing.T) {
	addr, _, _ := startRedisServer(t)
	ctx := t.Context()
	admin := redis.NewClient(&redis.Options{Addr: addr})
	defer admin.Close()
	args := []any{"ACL", "SETUSER", "idsync"}
	for _, r := range splitFields(aclRules) {
		args = append(args, r)
	}
	if err := admin.Do(ctx, args...).Err(); err != nil {
		t.Fatalf("ACL SETUSER: %v", err)
	}

	e := newEnv(t, &redis.Options{Addr: addr, Username: "idsync", Password: "s3cret"}, DefaultPrefix)
	clk := newClock()
	s := e.store(t, clk, Options{Activation: testActivation()})
	c, _ := newCache(t, s, e.rdb, clk, CacheOptions{TTL: time.Hour, HealthInterval: 50 * time.Millisecond})
	run(t, c)

	k := Key{"spa_1", "aud_1", "hook_1"}
	if _, err := s.Put(ctx, k, webhook("v1"), "alice", 0); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if _, err := c.Connections(ctx, k.Space, k.Audience); err != nil {
		t.Fatalf("Connections: %v", err)
	}
	if _, err := s.Put(ctx, k, webhook("v2"), "alice", 1); err != nil {
		t.Fatalf("Put with If-Match: %v", err)
	}
	eventually(t, 10*time.Second, "the cache sees version 2", func() bool {
		conns, err := c.Connections(ctx, k.Space, k.Audience)
		return err == nil && hasVersion(conns, "hook_1", 2)
	})
	if _, err := s.Get(ctx, k); err != nil {
		t.Errorf("Get: %v", err)
	}
	if _, err := s.History(ctx, k); err != nil {
		t.Errorf("History: %v", err)
	}
	if _, err := s.Delete(ctx, k, "alice", 0); err != nil {
		t.Errorf("Delete: %v", err)
	}
	if up := c.up.Load(); !up {
		t.Error("the health check's PING failed under the ACL")
	}
	// The user really is restricted.
	if err := e.rdb.Set(ctx, "other:key", "x", 0).Err(); err == nil {
		t.Error("the restricted user could SET a key outside the prefix")
	}
}

func splitFields(s string) []string {
	var out []string
	start := -1
	for i, r := range s + " " {
		switch {
		case r == ' ' && start >= 0:
			out = append(out, s[start:i])
			start = -1
		case r != ' ' && start < 0:
			start = i
		}
	}
	return out
}

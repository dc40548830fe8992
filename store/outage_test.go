package store

import (
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// TestCacheOutage stops Redis under a warm cache and starts it again: warm
// audiences keep being served (stale) without trying Redis, a cold one
// fails with ErrUnavailable, redis_up and staleness follow, and after the
// restart the cache is back in sync and hears of new edits.
func TestCacheOutage(t *testing.T) {
	for _, o := range outages() {
		t.Run(o.name, func(t *testing.T) {
			t.Parallel()
			addr, stop, restart := o.start(t)
			e := newEnv(t, &redis.Options{Addr: addr}, "idsync-test:")
			ctx := t.Context()
			clk := newClock()
			s := e.store(t, clk, Options{Activation: testActivation()})
			c, reg := newCache(t, s, e.rdb, clk, CacheOptions{TTL: time.Hour, HealthInterval: 20 * time.Millisecond})
			run(t, c)

			k := Key{e.space, "warm", "hook_1"}
			if _, err := s.Put(ctx, k, webhook("v1"), "alice", 0); err != nil {
				t.Fatalf("Put: %v", err)
			}
			if conns, err := c.Connections(ctx, e.space, "warm"); err != nil || !hasVersion(conns, "hook_1", 1) {
				t.Fatalf("warming: %+v, %v", conns, err)
			}

			stop()
			eventually(t, 10*time.Second, "redis_up = 0", func() bool { return metric(t, reg, "idsync_redis_up") == 0 })
			if c.Ready() != true {
				t.Error("not ready with an entry cached")
			}

			// Past the TTL the warm entry would be refetched; Redis being
			// down, it is served as it is, at once, without trying.
			clk.Advance(2 * time.Hour)
			e.cmds.reset()
			staleBefore := requests(t, reg, ResultStale)
			began := time.Now()
			conns, err := c.Connections(ctx, e.space, "warm")
			if err != nil || !hasVersion(conns, "hook_1", 1) {
				t.Errorf("warm audience while Redis is down: %+v, %v; want version 1", conns, err)
			}
			if _, err := c.Connections(ctx, e.space, "cold"); !isUnavailable(err) {
				t.Errorf("cold audience while Redis is down: err = %v, want ErrUnavailable", err)
			}
			if took := time.Since(began); took > time.Second {
				t.Errorf("lookups while Redis is down took %s", took)
			}
			if n := e.cmds.count("hgetall"); n != 0 {
				t.Errorf("%d HGETALL tried while Redis was known down, want 0", n)
			}
			if d := requests(t, reg, ResultStale) - staleBefore; d != 1 {
				t.Errorf("stale results grew by %v, want 1", d)
			}
			if v := metric(t, reg, "idsync_config_staleness_seconds"); v < 2*3600 {
				t.Errorf("staleness = %vs after the clock moved 2h, want at least 7200", v)
			}

			restart()
			eventually(t, 20*time.Second, "redis_up = 1", func() bool { return metric(t, reg, "idsync_redis_up") == 1 })
			if v := metric(t, reg, "idsync_config_staleness_seconds"); v != 0 {
				t.Errorf("staleness = %v once Redis is back, want 0", v)
			}
			// The subscription comes back by itself; edits made from then
			// on reach the cache by pub/sub.
			eventually(t, 20*time.Second, "resubscribed", func() bool { return c.subs.Load() >= 2 })
			if conns, err := c.Connections(ctx, e.space, "warm"); err != nil || !hasVersion(conns, "hook_1", 1) {
				t.Fatalf("warm audience after the restart: %+v, %v", conns, err)
			}
			if conns, err := c.Connections(ctx, e.space, "cold"); err != nil || len(conns) != 0 {
				t.Errorf("cold audience after the restart: %+v, %v; want none", conns, err)
			}
			if _, err := s.Put(ctx, k, webhook("v2"), "bob", 0); err != nil {
				t.Fatalf("Put after the restart: %v", err)
			}
			eventually(t, 10*time.Second, "the cache sees version 2", func() bool {
				conns, err := c.Connections(ctx, e.space, "warm")
				return err == nil && hasVersion(conns, "hook_1", 2)
			})
		})
	}
}

// TestCacheRefetchFailure: when a refetch fails before the health check
// has noticed anything, the old entry is served and Redis is marked down.
func TestCacheRefetchFailure(t *testing.T) {
	mr := miniredis.RunT(t)
	e := newEnv(t, &redis.Options{Addr: mr.Addr(), MaxRetries: -1}, "idsync-test:")
	ctx := t.Context()
	clk := newClock()
	s := e.store(t, clk, Options{Activation: testActivation()})
	c, reg := newCache(t, s, e.rdb, clk, CacheOptions{TTL: time.Minute, HealthInterval: time.Hour})
	if _, err := s.Put(ctx, Key{e.space, "aud_1", "hook_1"}, webhook("v1"), "alice", 0); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if _, err := c.Connections(ctx, e.space, "aud_1"); err != nil {
		t.Fatalf("warming: %v", err)
	}
	mr.Close()
	clk.Advance(time.Hour)
	conns, err := c.Connections(ctx, e.space, "aud_1")
	if err != nil || !hasVersion(conns, "hook_1", 1) {
		t.Errorf("failed refetch: %+v, %v; want the cached version 1", conns, err)
	}
	if up := metric(t, reg, "idsync_redis_up"); up != 0 {
		t.Errorf("redis_up = %v after a failed fetch, want 0", up)
	}
	if v := requests(t, reg, ResultStale); v != 1 {
		t.Errorf("stale results = %v, want 1", v)
	}
	if _, err := c.Connections(ctx, e.space, "aud_2"); !isUnavailable(err) {
		t.Errorf("cold audience: err = %v, want ErrUnavailable", err)
	}
	if v := requests(t, reg, ResultError); v != 1 {
		t.Errorf("error results = %v, want 1", v)
	}
}

package store

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/idsync/idsync/idsync"
)

// newCache returns a cache on s with its own registry.
func newCache(t *testing.T, s *Store, rdb redis.UniversalClient, clk *clock, opt CacheOptions) (*Cache, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	opt.Registerer = reg
	if clk != nil {
		opt.Now = clk.Now
	}
	c, err := NewCache(s, rdb, opt)
	if err != nil {
		t.Fatalf("NewCache: %v", err)
	}
	return c, reg
}

// run runs c.Run until the test ends, checks that it returns nil, and
// waits until the cache has subscribed.
func run(t *testing.T, c *Cache) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v, want nil on cancel", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10s of its context's end")
		}
	})
	eventually(t, 10*time.Second, "subscribed to notifications", func() bool { return c.subs.Load() >= 1 })
}

// metric returns the value of the series name{label=value} (or of the
// unlabelled series) in reg.
func metric(t *testing.T, reg *prometheus.Registry, name string, labelValue ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gathering metrics: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if len(labelValue) == 2 {
				match := false
				for _, l := range m.GetLabel() {
					if l.GetName() == labelValue[0] && l.GetValue() == labelValue[1] {
						match = true
					}
				}
				if !match {
					continue
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	t.Fatalf("no series %s%v", name, labelValue)
	return 0
}

func requests(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	return metric(t, reg, "idsync_config_cache_requests_total", "result", result)
}

// versionAt returns the version of dest that applies at ref among conns.
func versionAt(conns []idsync.Connection, dest string, ref time.Time) int64 {
	for _, c := range conns {
		if c.DestinationID == dest {
			if v := idsync.VersionAt(c.Versions, ref); v != nil {
				return v.Version
			}
		}
	}
	return 0
}

// hasVersion reports whether conns hold version n of dest.
func hasVersion(conns []idsync.Connection, dest string, n int64) bool {
	for _, c := range conns {
		if c.DestinationID == dest {
			for _, v := range c.Versions {
				if v.Version == n {
					return true
				}
			}
		}
	}
	return false
}

// TestCacheTwoInstances plays two idsync instances: after one edit, both
// keep applying the old version until effective_at and the new one from
// then on, having learnt of the edit from pub/sub alone (the TTL is far).
func TestCacheTwoInstances(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		clk := newClock()
		s := e.store(t, clk, Options{Activation: testActivation()})
		var caches [2]*Cache
		for i := range caches {
			caches[i], _ = newCache(t, s, e.rdb, clk, CacheOptions{TTL: time.Hour})
			run(t, caches[i])
		}
		const aud = "aud_1"
		k := Key{e.space, aud, "hook_1"}
		if _, err := s.Put(ctx, k, webhook("v1"), "alice", 0); err != nil {
			t.Fatalf("Put v1: %v", err)
		}
		for i, c := range caches {
			conns, err := c.Connections(ctx, e.space, aud)
			if err != nil || versionAt(conns, "hook_1", clk.Now()) != 1 {
				t.Fatalf("cache %d: %+v, %v; want version 1", i, conns, err)
			}
		}

		clk.Advance(time.Minute)
		v2, err := s.Put(ctx, k, webhook("v2"), "bob", 0)
		if err != nil {
			t.Fatalf("Put v2: %v", err)
		}
		for i, c := range caches {
			var conns []idsync.Connection
			eventually(t, 10*time.Second, fmt.Sprintf("cache %d sees version 2", i), func() bool {
				conns, err = c.Connections(ctx, e.space, aud)
				return err == nil && hasVersion(conns, "hook_1", 2)
			})
			before := v2.EffectiveAt.Add(-time.Nanosecond)
			if got := versionAt(conns, "hook_1", before); got != 1 {
				t.Errorf("cache %d: version %d applies just before effective_at, want 1", i, got)
			}
			if got := versionAt(conns, "hook_1", clk.Now()); got != 1 {
				t.Errorf("cache %d: version %d applies now, want 1", i, got)
			}
		}

		clk.Set(v2.EffectiveAt)
		for i, c := range caches {
			conns, err := c.Connections(ctx, e.space, aud)
			if err != nil {
				t.Fatalf("cache %d: %v", i, err)
			}
			if got := versionAt(conns, "hook_1", clk.Now()); got != 2 {
				t.Errorf("cache %d: version %d applies at effective_at, want 2", i, got)
			}
			clk.Advance(time.Hour / 2)
			conns, _ = c.Connections(ctx, e.space, aud)
			if got := versionAt(conns, "hook_1", clk.Now()); got != 2 {
				t.Errorf("cache %d: version %d applies after effective_at, want 2", i, got)
			}
			clk.Set(v2.EffectiveAt)
		}
	})
}

// oneHookCache stores one webhook connection for aud_1 and returns a cache
// over it, the command counter reset.
func oneHookCache(t *testing.T, e *env) (*Cache, *prometheus.Registry) {
	t.Helper()
	clk := newClock()
	s := e.store(t, clk, Options{Activation: testActivation()})
	if _, err := s.Put(t.Context(), Key{e.space, "aud_1", "hook_1"}, webhook("v1"), "alice", 0); err != nil {
		t.Fatalf("Put: %v", err)
	}
	c, reg := newCache(t, s, e.rdb, clk, CacheOptions{})
	e.cmds.reset()
	return c, reg
}

// TestCacheSingleflight holds the first HGETALL until every other lookup
// for the audience has started: one Redis call serves them all.
func TestCacheSingleflight(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		c, reg := oneHookCache(t, e)
		gate, reached := make(chan struct{}), make(chan struct{}, 1)
		e.cmds.mu.Lock()
		e.cmds.gate, e.cmds.reached = gate, reached
		e.cmds.mu.Unlock()

		const lookups = 20
		var wg sync.WaitGroup
		errs := make(chan error, lookups)
		lookup := func() {
			conns, err := c.Connections(ctx, e.space, "aud_1")
			if err == nil && len(conns) != 1 {
				err = fmt.Errorf("got %d connections, want 1", len(conns))
			}
			errs <- err
		}
		wg.Go(lookup)
		<-reached // the first lookup's HGETALL is on hold
		for range lookups - 1 {
			wg.Go(lookup)
		}
		eventually(t, 10*time.Second, "all lookups waiting", func() bool {
			c.mu.Lock()
			defer c.mu.Unlock()
			return len(c.flights) == 1
		})
		close(gate)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
		if n := e.cmds.count("hgetall"); n != 1 {
			t.Errorf("%d HGETALL for %d concurrent lookups, want 1", n, lookups)
		}
		if hit, miss := requests(t, reg, ResultHit), requests(t, reg, ResultMiss); hit+miss != lookups || miss < 1 {
			t.Errorf("hits %v + misses %v, want %d with at least one miss", hit, miss, lookups)
		}
	})
}

// TestCachePrefetch: Prefetch starts an audience's fetch without waiting
// for it (two audiences' HGETALLs are held at once), once per audience,
// none for invalid ids; the lookups that follow use what it fetched and
// are the only ones counted.
func TestCachePrefetch(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		c, reg := oneHookCache(t, e)
		gate := make(chan struct{})
		e.cmds.mu.Lock()
		e.cmds.gate, e.cmds.reached = gate, make(chan struct{}, 1)
		e.cmds.mu.Unlock()

		// aud_1 twice (one fetch in flight), an invalid id (never asked).
		c.Prefetch(ctx, inSpace(e.space, "aud_1", "aud_2", "aud_1", "bad id!"))
		eventually(t, 10*time.Second, "both fetches held at once", func() bool { return e.cmds.count("hgetall") == 2 })
		close(gate)

		conns, err := c.Connections(ctx, e.space, "aud_1")
		if err != nil || len(conns) != 1 {
			t.Fatalf("aud_1: %d connections, %v; want 1", len(conns), err)
		}
		if conns, err := c.Connections(ctx, e.space, "aud_2"); err != nil || len(conns) != 0 {
			t.Fatalf("aud_2: %d connections, %v; want none", len(conns), err)
		}
		c.Prefetch(ctx, inSpace(e.space, "aud_1")) // fresh: nothing to fetch
		if n := e.cmds.count("hgetall"); n != 2 {
			t.Errorf("%d HGETALL, want 2 (one per prefetched audience)", n)
		}
		if hit, miss := requests(t, reg, ResultHit), requests(t, reg, ResultMiss); hit+miss != 2 {
			t.Errorf("hits %v + misses %v, want the 2 lookups", hit, miss)
		}
	})
}

// inSpace yields (space, audience) for each of audiences.
func inSpace(space string, audiences ...string) iter.Seq2[string, string] {
	return func(yield func(string, string) bool) {
		for _, a := range audiences {
			if !yield(space, a) {
				return
			}
		}
	}
}

// TestCacheLRU bounds the cache to three audiences.
func TestCacheLRU(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		clk := newClock()
		s := e.store(t, clk, Options{Activation: testActivation()})
		c, reg := newCache(t, s, e.rdb, clk, CacheOptions{MaxEntries: 3})
		get := func(aud string) {
			t.Helper()
			if _, err := c.Connections(ctx, e.space, aud); err != nil {
				t.Fatalf("Connections(%s): %v", aud, err)
			}
		}
		for _, aud := range []string{"a1", "a2", "a3"} {
			get(aud)
		}
		get("a1") // a2 is now the least recently used
		get("a4")
		if n := metric(t, reg, "idsync_config_cache_entries"); n != 3 {
			t.Errorf("entries gauge = %v, want 3", n)
		}
		e.cmds.reset()
		get("a1")
		get("a3")
		get("a4")
		if n := e.cmds.count("hgetall"); n != 0 {
			t.Errorf("%d HGETALL for the three most recent audiences, want 0", n)
		}
		get("a2")
		if n := e.cmds.count("hgetall"); n != 1 {
			t.Errorf("%d HGETALL for the evicted audience, want 1", n)
		}
		if n := metric(t, reg, "idsync_config_cache_entries"); n != 3 {
			t.Errorf("entries gauge = %v, want 3", n)
		}
	})
}

// TestCacheNegativeAndTTL: an audience without connections is cached too,
// and an entry older than the TTL is fetched again.
func TestCacheNegativeAndTTL(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		clk := newClock()
		s := e.store(t, clk, Options{Activation: testActivation()})
		c, reg := newCache(t, s, e.rdb, clk, CacheOptions{TTL: time.Minute})
		e.cmds.reset()
		for i := range 2 {
			conns, err := c.Connections(ctx, e.space, "nobody")
			if err != nil || len(conns) != 0 {
				t.Fatalf("lookup %d: %v, %v; want no connections", i, conns, err)
			}
		}
		if n := e.cmds.total.Load(); n != 1 {
			t.Errorf("%d Redis commands for two lookups of an empty audience, want 1", n)
		}
		// Without Run, nothing invalidates: only the TTL makes it refetch.
		if _, err := s.Put(ctx, Key{e.space, "nobody", "hook_1"}, webhook("v1"), "alice", 0); err != nil {
			t.Fatalf("Put: %v", err)
		}
		clk.Advance(59 * time.Second)
		if conns, _ := c.Connections(ctx, e.space, "nobody"); len(conns) != 0 {
			t.Errorf("within the TTL: %d connections, want the cached none", len(conns))
		}
		clk.Advance(time.Second)
		if conns, _ := c.Connections(ctx, e.space, "nobody"); len(conns) != 1 {
			t.Errorf("at the TTL: %d connections, want 1 fetched again", len(conns))
		}
		if hit, miss := requests(t, reg, ResultHit), requests(t, reg, ResultMiss); hit != 2 || miss != 2 {
			t.Errorf("hits %v, misses %v; want 2 and 2", hit, miss)
		}
	})
}

func TestCacheOptionsAndMetrics(t *testing.T) {
	e := backends()[0].open(t)
	s := e.store(t, nil, Options{})
	c, reg := newCache(t, s, e.rdb, nil, CacheOptions{})
	for _, r := range Results {
		if v := requests(t, reg, r); v != 0 {
			t.Errorf("requests{result=%q} = %v at start, want 0", r, v)
		}
	}
	for name, want := range map[string]float64{
		"idsync_config_cache_entries":     0,
		"idsync_redis_up":                 1,
		"idsync_config_staleness_seconds": 0,
	} {
		if v := metric(t, reg, name); v != want {
			t.Errorf("%s = %v at start, want %v", name, v, want)
		}
	}
	if c.max != DefaultCacheMaxEntries || c.ttl != DefaultCacheTTL || c.interval != DefaultCacheHealthInterval {
		t.Errorf("defaults: %d entries, TTL %s, interval %s", c.max, c.ttl, c.interval)
	}
	if _, err := NewCache(s, e.rdb, CacheOptions{Registerer: reg}); err == nil {
		t.Error("NewCache registered its metrics twice on one registry")
	}
	if _, err := NewCache(s, e.rdb, CacheOptions{TTL: -1}); err == nil {
		t.Error("NewCache accepted a negative TTL")
	}
	if _, err := c.Connections(t.Context(), "bad space", "a"); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("Connections with an invalid space: err = %v, want ErrInvalidKey", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := c.Run(ctx); err != nil {
		t.Errorf("Run on a cancelled context: %v", err)
	}
	if err := c.Run(ctx); err == nil {
		t.Error("second Run succeeded")
	}
}

// TestCacheInvalidationDuringFetch: a notification that arrives while the
// audience is being fetched marks the fetched result for refetch, since it
// may predate the edit.
func TestCacheInvalidationDuringFetch(t *testing.T) {
	e := backends()[0].open(t)
	ctx := t.Context()
	s := e.store(t, nil, Options{})
	c, _ := newCache(t, s, e.rdb, nil, CacheOptions{TTL: time.Hour})
	gate, reached := make(chan struct{}), make(chan struct{}, 1)
	e.cmds.gate, e.cmds.reached = gate, reached
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = c.Connections(ctx, e.space, "aud_1")
	}()
	<-reached
	c.invalidate(audienceKey{e.space, "aud_1"})
	close(gate)
	<-done
	e.cmds.reset()
	if _, err := c.Connections(ctx, e.space, "aud_1"); err != nil || e.cmds.count("hgetall") != 1 {
		t.Errorf("lookup after an invalidated fetch: %v, %d HGETALL; want a refetch", err, e.cmds.count("hgetall"))
	}
}

package store

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/idsync/idsync/idsync"
)

// BenchmarkCache1MConnectionsRSS loads 1,000,000 connections (100,000
// audiences of 10, the mix of BenchmarkCacheMemory: half webhooks sharing
// two configurations, half Facebook lists each with its own
// external_audience_id, two versions apiece) into one Cache and reports
// the process's resident memory (VmRSS, after a GC that returns freed
// memory to the OS) and the live heap. Issue 7's target: ≤ 1 GiB RSS.
//
// With a real Redis it also reports what the records take in Redis
// (redis-B/connection: INFO memory's used_memory before and after the load,
// per connection), the input of the capacity model in docs/operations.md.
//
// It writes ~1M records to Redis, so it runs only with IDSYNC_BENCH_1M=1.
// With IDSYNC_TEST_REDIS it uses that Redis and the process holds nothing
// but the cache and the client; on miniredis the in-process Redis holds its
// copy too and rss-MB overstates the cache (heap-MB-cache does not).
func BenchmarkCache1MConnectionsRSS(b *testing.B) {
	if os.Getenv("IDSYNC_BENCH_1M") == "" {
		b.Skip("set IDSYNC_BENCH_1M=1 (and IDSYNC_TEST_REDIS=host:port for a real Redis) to load 1M connections")
	}
	const audiences, perAudience = 100_000, 10
	addr := os.Getenv("IDSYNC_TEST_REDIS")
	if addr == "" {
		addr = miniredis.RunT(b).Addr()
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	prefix := fmt.Sprintf("idsync-rss-%d:", os.Getpid())
	clk := newClock()
	s, err := New(rdb, Options{Prefix: prefix, Now: clk.Now})
	if err != nil {
		b.Fatal(err)
	}
	t0 := clk.Now()
	cfg := webhook("Audience Entered")
	cfg2 := webhook("Audience Entered")
	cfg2.Identifiers[1].Strategy = idsync.LastAdded
	ctx := b.Context()
	defer func() {
		iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
	}()
	usedBefore := redisUsedMemory(ctx, rdb)
	pipe := rdb.Pipeline()
	for a := range audiences {
		fields := make([]any, 0, 2*perAudience)
		for d := range perAudience {
			c1, c2 := cfg, cfg2
			if d%2 == 0 {
				c1, c2 = facebook(fmt.Sprint(a*perAudience+d)), facebook(fmt.Sprint(a*perAudience+d, "b"))
			}
			value, _ := json.Marshal(record{Versions: []idsync.Version{
				{Version: 1, UpdatedAt: t0, EffectiveAt: t0, Config: c1},
				{Version: 2, UpdatedAt: t0, EffectiveAt: t0.Add(delay), Config: c2},
			}})
			fields = append(fields, fmt.Sprintf("dest_%d", d), value)
		}
		pipe.HSet(ctx, s.connectionsKey("spa_1", fmt.Sprint("aud_", a)), fields...)
		if a%1000 == 999 {
			if _, err := pipe.Exec(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		b.Fatal(err)
	}
	usedAfter := redisUsedMemory(ctx, rdb)
	for range b.N {
		runtime.GC()
		debug.FreeOSMemory()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		rssBefore := vmRSSKB()
		c, err := NewCache(s, rdb, CacheOptions{MaxEntries: audiences})
		if err != nil {
			b.Fatal(err)
		}
		peak := int64(0)
		for a := range audiences {
			conns, err := c.Connections(ctx, "spa_1", fmt.Sprint("aud_", a))
			if err != nil || len(conns) != perAudience {
				b.Fatalf("audience %d: %d connections, %v", a, len(conns), err)
			}
			if a%10_000 == 0 {
				peak = max(peak, vmRSSKB())
			}
		}
		runtime.GC()
		debug.FreeOSMemory()
		runtime.ReadMemStats(&after)
		rss := vmRSSKB()
		peak = max(peak, rss)
		b.ReportMetric(float64(rss)/1024, "rss-MB")
		b.ReportMetric(float64(peak)/1024, "peak-rss-MB")
		b.ReportMetric(float64(rss-rssBefore)/1024, "rss-growth-MB")
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "heap-MB-cache")
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(audiences*perAudience), "heap-B/connection")
		if os.Getenv("IDSYNC_TEST_REDIS") != "" && usedBefore > 0 && usedAfter > usedBefore {
			b.ReportMetric(float64(usedAfter-usedBefore)/(audiences*perAudience), "redis-B/connection")
		}
		runtime.KeepAlive(c)
	}
}

// redisUsedMemory returns INFO memory's used_memory, 0 when it cannot be read.
func redisUsedMemory(ctx context.Context, rdb *redis.Client) int64 {
	info, err := rdb.Info(ctx, "memory").Result()
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// vmRSSKB returns this process's VmRSS in KiB.
func vmRSSKB() int64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		if rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("VmRSS:")); ok {
			n, _ := strconv.ParseInt(string(bytes.TrimSpace(bytes.TrimSuffix(bytes.TrimSpace(rest), []byte("kB")))), 10, 64)
			return n
		}
	}
	return 0
}

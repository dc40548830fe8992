package store

import (
	"encoding/json"
	"fmt"
	"runtime"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/idsync/idsync/idsync"
)

// BenchmarkCacheMemory fills a cache with 10,000 audiences of 10
// connections each, half webhooks with a common configuration and half
// Facebook lists with their own external_audience_id, two versions apiece
// (as in the hours after an edit), and reports the live heap per cached
// connection. Issue target: 1,000,000 cached
// connections within 1 GiB RSS.
func BenchmarkCacheMemory(b *testing.B) {
	const audiences, perAudience = 10_000, 10
	mr := miniredis.RunT(b)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	clk := newClock()
	s, err := New(rdb, Options{Now: clk.Now})
	if err != nil {
		b.Fatal(err)
	}
	t0 := clk.Now()
	cfg := webhook("Audience Entered")
	cfg2 := webhook("Audience Entered")
	cfg2.Identifiers[1].Strategy = idsync.LastAdded
	for a := range audiences {
		fields := make([]any, 0, 2*perAudience)
		for d := range perAudience {
			c1, c2 := cfg, cfg2
			if d%2 == 0 { // a list: unique external_audience_id, nothing shared but mappings
				c1, c2 = facebook(fmt.Sprint(a*perAudience+d)), facebook(fmt.Sprint(a*perAudience+d, "b"))
			}
			value, _ := json.Marshal(record{Versions: []idsync.Version{
				{Version: 1, UpdatedAt: t0, EffectiveAt: t0, Config: c1},
				{Version: 2, UpdatedAt: t0, EffectiveAt: t0.Add(delay), Config: c2},
			}})
			fields = append(fields, fmt.Sprintf("dest_%d", d), value)
		}
		if err := rdb.HSet(b.Context(), s.connectionsKey("spa_1", fmt.Sprint("aud_", a)), fields...).Err(); err != nil {
			b.Fatal(err)
		}
	}
	for range b.N {
		c, err := NewCache(s, rdb, CacheOptions{MaxEntries: audiences})
		if err != nil {
			b.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for a := range audiences {
			if _, err := c.Connections(b.Context(), "spa_1", fmt.Sprint("aud_", a)); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(audiences*perAudience), "heap-B/connection")
		runtime.KeepAlive(c)
	}
}

// facebook returns a valid Facebook configuration for list id.
func facebook(id string) *idsync.Config {
	s := idsync.DefaultSettings()
	s.UploadKeyType = ""
	s.SendMobileIDs = true
	return &idsync.Config{
		DestinationType:    idsync.FacebookCustomAudiences,
		ExternalAudienceID: "2385123456" + id,
		Settings:           s,
		Setup:              idsync.SetupCustomized,
		Identifiers: []idsync.Mapping{
			{Segment: "email", Destination: "EMAIL", Strategy: idsync.All},
			{Segment: "phone", Destination: "PHONE", Strategy: idsync.LastAdded},
			{Segment: "ios.idfa", Destination: "MADID", Strategy: idsync.FirstAdded},
		},
	}
}

package store

import (
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestStoreAcrossSlots: edits and reads of audiences whose keys hash to
// different slots (on Redis Cluster: different masters) all work, and one
// cache subscription receives the notifications of every one of them, so
// that an edit on any master reaches a running cache within seconds (the
// TTL is an hour: only a notification can do it).
func TestStoreAcrossSlots(t *testing.T) {
	const audiences = 24
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		s := e.store(t, nil, Options{Activation: testActivation()})
		aud := func(i int) string { return fmt.Sprintf("aud_%02d", i) }
		for i := range audiences {
			for _, d := range []string{"hook_a", "hook_b"} {
				if _, err := s.Put(ctx, Key{e.space, aud(i), d}, webhook(d), "alice", 0); err != nil {
					t.Fatalf("Put %s/%s: %v", aud(i), d, err)
				}
			}
		}
		if cc, ok := e.rdb.(*redis.ClusterClient); ok {
			masters := mastersOf(t, cc, func(yield func(string) bool) {
				for i := range audiences {
					if !yield(s.connectionsKey(e.space, aud(i))) {
						return
					}
				}
			})
			if len(masters) < 2 {
				t.Fatalf("the %d audiences hash to the slots of %d master(s); the test needs several", audiences, len(masters))
			}
			t.Logf("%d audiences on %d masters", audiences, len(masters))
		}

		c, _ := newCache(t, s, e.rdb, nil, CacheOptions{TTL: time.Hour})
		run(t, c)
		for i := range audiences {
			conns, err := c.Connections(ctx, e.space, aud(i))
			if err != nil || len(conns) != 2 {
				t.Fatalf("Connections %s: %d connections, %v; want 2", aud(i), len(conns), err)
			}
		}
		for i := range audiences {
			if _, err := s.Put(ctx, Key{e.space, aud(i), "hook_c"}, webhook("c"), "bob", 0); err != nil {
				t.Fatalf("Put %s/hook_c: %v", aud(i), err)
			}
		}
		eventually(t, 10*time.Second, "every audience's new connection served by the cache", func() bool {
			for i := range audiences {
				if conns, err := c.Connections(ctx, e.space, aud(i)); err != nil || len(conns) != 3 {
					return false
				}
			}
			return true
		})
	})
}

// mastersOf returns the addresses of the masters that own the slots of
// keys, as the cluster reports them now.
func mastersOf(t *testing.T, cc *redis.ClusterClient, keys func(func(string) bool)) map[string]bool {
	t.Helper()
	slots, err := cc.ClusterSlots(t.Context()).Result()
	if err != nil {
		t.Fatalf("CLUSTER SLOTS: %v", err)
	}
	masters := map[string]bool{}
	for k := range keys {
		slot, err := cc.ClusterKeySlot(t.Context(), k).Result()
		if err != nil {
			t.Fatalf("CLUSTER KEYSLOT: %v", err)
		}
		for _, r := range slots {
			if int64(r.Start) <= slot && slot <= int64(r.End) && len(r.Nodes) > 0 {
				masters[r.Nodes[0].Addr] = true
			}
		}
	}
	return masters
}

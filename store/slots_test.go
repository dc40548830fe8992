package store

import (
	"errors"
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
	//lint:ignore SA1019 CLUSTER SLOTS answers slot ranges with their master directly; Redis 7 still serves it
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

// TestStoreReplicaAcks: with ReplicaAcks, an edit succeeds once that many
// replicas have it (Cluster, Sentinel: one replica each), and without
// them fails with ErrNotReplicated after ReplicaAckTimeout — though it was
// applied on the master, which History shows.
func TestStoreReplicaAcks(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		s := e.store(t, nil, Options{Activation: testActivation(), ReplicaAcks: 1, ReplicaAckTimeout: 200 * time.Millisecond})
		k := Key{e.space, "aud_1", "hook_1"}
		v, err := s.Put(ctx, k, webhook("v1"), "alice", 0)
		if e.replicas > 0 {
			if err != nil || v.Version != 1 {
				t.Fatalf("Put with a replica to acknowledge: %+v, %v", v, err)
			}
			return
		}
		if !errors.Is(err, ErrNotReplicated) {
			t.Fatalf("Put without replicas: err = %v, want ErrNotReplicated", err)
		}
		if h, err := s.History(ctx, k); err != nil || len(h) != 1 {
			t.Errorf("History after ErrNotReplicated: %d entries, %v; want the applied edit", len(h), err)
		}
	})
	if _, err := New(redis.NewClient(&redis.Options{}), Options{ReplicaAcks: -1}); err == nil {
		t.Error("New accepted negative replica acknowledgements")
	}
}

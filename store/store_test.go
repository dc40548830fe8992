package store

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idsync/idsync/idsync"
	"github.com/idsync/idsync/internal/stacktest"
)

// The Store suite: every test runs against miniredis and the real Redis.

const (
	delay  = 5 * time.Minute
	retain = 24 * time.Hour
)

func testActivation() idsync.Activation {
	return idsync.Activation{Delay: delay, RetainSuperseded: retain}
}

func TestStorePutGet(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		clk := newClock()
		s := e.store(t, clk, Options{Activation: testActivation()})
		k := Key{e.space, "aud_1", "hook_1"}

		if _, err := s.Get(ctx, k); !errors.Is(err, idsync.ErrNotFound) {
			t.Fatalf("Get before any Put: err = %v, want ErrNotFound", err)
		}
		t0 := clk.Now()
		v1, err := s.Put(ctx, k, webhook("v1"), "alice", 0)
		if err != nil {
			t.Fatalf("Put v1: %v", err)
		}
		if v1.Version != 1 || !v1.UpdatedAt.Equal(t0) || !v1.EffectiveAt.Equal(t0) || v1.Deleted {
			t.Errorf("first version = %+v, want version 1 effective at once (%s)", v1, t0)
		}

		clk.Advance(time.Minute)
		t1 := clk.Now()
		v2, err := s.Put(ctx, k, webhook("v2"), "bob", 0)
		if err != nil {
			t.Fatalf("Put v2: %v", err)
		}
		if v2.Version != 2 || !v2.EffectiveAt.Equal(t1.Add(delay)) {
			t.Errorf("second version = %+v, want version 2 effective at %s", v2, t1.Add(delay))
		}

		got, err := s.Get(ctx, k)
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if got.DestinationID != "hook_1" || len(got.Versions) != 2 {
			t.Fatalf("Get = %+v, want hook_1 with two versions", got)
		}
		if !reflect.DeepEqual(got.Versions[0].Config, webhook("v1")) || !reflect.DeepEqual(got.Versions[1].Config, webhook("v2")) {
			t.Errorf("stored configurations differ from the ones put: %+v", got.Versions)
		}
		active, pending := idsync.ActiveAndPending(got.Versions, clk.Now())
		if active == nil || active.Version != 1 || pending == nil || pending.Version != 2 {
			t.Errorf("active, pending = %v, %v; want 1 and 2", active, pending)
		}

		// An edit while version 2 is pending replaces it and restarts the delay.
		clk.Advance(time.Minute)
		v3, err := s.Put(ctx, k, webhook("v3"), "carol", 0)
		if err != nil {
			t.Fatalf("Put v3: %v", err)
		}
		got, _ = s.Get(ctx, k)
		if v3.Version != 3 || len(got.Versions) != 2 || got.Versions[1].Version != 3 || !v3.EffectiveAt.Equal(clk.Now().Add(delay)) {
			t.Errorf("after replacing the pending version: %+v (created %+v)", got.Versions, v3)
		}
	})
}

func TestStoreIfMatch(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		clk := newClock()
		s := e.store(t, clk, Options{Activation: testActivation()})
		k := Key{e.space, "aud_1", "hook_1"}

		if _, err := s.Put(ctx, k, webhook("v1"), "alice", 1); !errors.Is(err, ErrPreconditionFailed) {
			t.Errorf("If-Match 1 on a missing connection: err = %v, want ErrPreconditionFailed", err)
		}
		if _, err := s.Put(ctx, k, webhook("v1"), "alice", 0); err != nil {
			t.Fatalf("Put: %v", err)
		}
		if _, err := s.Put(ctx, k, webhook("v2"), "alice", 1); err != nil {
			t.Fatalf("Put with If-Match 1 on version 1: %v", err)
		}
		// Version 2 is pending: it is the newest, so If-Match 1 fails.
		if _, err := s.Put(ctx, k, webhook("stale"), "bob", 1); !errors.Is(err, ErrPreconditionFailed) {
			t.Errorf("If-Match 1 when 2 is newest: err = %v, want ErrPreconditionFailed", err)
		}
		if _, err := s.Delete(ctx, k, "bob", 7); !errors.Is(err, ErrPreconditionFailed) {
			t.Errorf("Delete with If-Match 7: err = %v, want ErrPreconditionFailed", err)
		}
		h, err := s.History(ctx, k)
		if err != nil || len(h) != 2 {
			t.Errorf("History after two refused edits: %d entries, %v; want 2", len(h), err)
		}
		if _, err := s.Delete(ctx, k, "bob", 2); err != nil {
			t.Errorf("Delete with If-Match 2: %v", err)
		}
	})
}

// TestStoreIfAbsent: an edit made on condition that the connection does
// not exist (If-None-Match: *) creates it, and fails while it has a version
// in effect or pending — also while its deletion is pending — and succeeds
// again once the deletion took effect.
func TestStoreIfAbsent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		clk := newClock()
		s := e.store(t, clk, Options{Activation: testActivation()})
		k := Key{e.space, "aud_1", "hook_1"}

		if v, err := s.Put(ctx, k, webhook("v1"), "alice", IfAbsent); err != nil || v.Version != 1 {
			t.Fatalf("creating with IfAbsent: %+v, %v", v, err)
		}
		if _, err := s.Put(ctx, k, webhook("again"), "bob", IfAbsent); !errors.Is(err, ErrPreconditionFailed) {
			t.Errorf("IfAbsent on an existing connection: err = %v, want ErrPreconditionFailed", err)
		}
		if _, err := s.Delete(ctx, k, "alice", 1); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Put(ctx, k, webhook("early"), "bob", IfAbsent); !errors.Is(err, ErrPreconditionFailed) {
			t.Errorf("IfAbsent while the deletion is pending: err = %v, want ErrPreconditionFailed", err)
		}
		clk.Advance(delay + time.Second)
		if v, err := s.Put(ctx, k, webhook("recreated"), "bob", IfAbsent); err != nil || v.Version != 3 || v.EffectiveAt.After(clk.Now()) {
			t.Errorf("IfAbsent after the deletion took effect: %+v, %v", v, err)
		}
	})
}

func TestStoreDeleteAndRecreate(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		clk := newClock()
		s := e.store(t, clk, Options{Activation: testActivation()})
		k := Key{e.space, "aud_1", "hook_1"}

		if _, err := s.Delete(ctx, k, "alice", 0); !errors.Is(err, idsync.ErrNotFound) {
			t.Errorf("Delete of a missing connection: err = %v, want ErrNotFound", err)
		}
		if _, err := s.Put(ctx, k, webhook("v1"), "alice", 0); err != nil {
			t.Fatalf("Put: %v", err)
		}
		tomb, err := s.Delete(ctx, k, "alice", 0)
		if err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if tomb.Version != 2 || !tomb.Deleted || tomb.Config != nil || !tomb.EffectiveAt.Equal(clk.Now().Add(delay)) {
			t.Errorf("tombstone = %+v, want version 2, deleted, effective after the delay", tomb)
		}

		// Once the deletion is effective there is nothing left to delete.
		clk.Advance(delay)
		if _, err := s.Delete(ctx, k, "alice", 0); !errors.Is(err, idsync.ErrNotFound) {
			t.Errorf("second Delete: err = %v, want ErrNotFound", err)
		}
		// Within retention, the tombstone is still visible.
		got, err := s.Get(ctx, k)
		if err != nil || len(got.Versions) != 2 || !got.Versions[1].Deleted {
			t.Errorf("Get within retention = %+v, %v; want v1 and the tombstone", got, err)
		}

		// Re-creating after the deletion is effective: effective at once,
		// with the next version number.
		clk.Advance(time.Minute)
		v3, err := s.Put(ctx, k, webhook("again"), "bob", 0)
		if err != nil {
			t.Fatalf("re-create: %v", err)
		}
		if v3.Version != 3 || !v3.EffectiveAt.Equal(clk.Now()) {
			t.Errorf("re-created version = %+v, want version 3 effective at once", v3)
		}

		// Delete again and let the tombstone expire past retention.
		if _, err := s.Delete(ctx, k, "bob", 0); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		clk.Advance(delay + retain + time.Second)
		if _, err := s.Get(ctx, k); !errors.Is(err, idsync.ErrNotFound) {
			t.Errorf("Get after the tombstone expired: err = %v, want ErrNotFound", err)
		}
		if l, err := s.List(ctx, k.Space, k.Audience); err != nil || len(l) != 0 {
			t.Errorf("List after the tombstone expired = %+v, %v; want empty", l, err)
		}
		if _, err := s.Delete(ctx, k, "bob", 0); !errors.Is(err, idsync.ErrNotFound) {
			t.Errorf("Delete after the tombstone expired: err = %v, want ErrNotFound", err)
		}
		// Version numbers are never reused, even after expiry.
		v5, err := s.Put(ctx, k, webhook("third life"), "carol", 0)
		if err != nil {
			t.Fatalf("re-create after expiry: %v", err)
		}
		if v5.Version != 5 || !v5.EffectiveAt.Equal(clk.Now()) {
			t.Errorf("version after expiry = %+v, want 5 effective at once", v5)
		}
	})
}

func TestStorePrune(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		clk := newClock()
		s := e.store(t, clk, Options{Activation: testActivation()})
		k := Key{e.space, "aud_1", "hook_1"}

		for _, name := range []string{"v1", "v2"} {
			if _, err := s.Put(ctx, k, webhook(name), "alice", 0); err != nil {
				t.Fatalf("Put %s: %v", name, err)
			}
		}
		// Version 1 is superseded at +delay; kept for retain after that.
		clk.Advance(delay + retain)
		got, _ := s.Get(ctx, k)
		if len(got.Versions) != 2 {
			t.Errorf("at the end of retention: %d versions, want 2", len(got.Versions))
		}
		clk.Advance(time.Second)
		got, _ = s.Get(ctx, k)
		if len(got.Versions) != 1 || got.Versions[0].Version != 2 {
			t.Errorf("past retention: %+v, want only version 2", got.Versions)
		}
		l, _ := s.List(ctx, k.Space, k.Audience)
		if len(l) != 1 || len(l[0].Versions) != 1 {
			t.Errorf("List past retention: %+v, want one connection with one version", l)
		}
		// The next edit writes the pruned list back.
		if _, err := s.Put(ctx, k, webhook("v3"), "alice", 0); err != nil {
			t.Fatalf("Put v3: %v", err)
		}
		raw, err := e.rdb.HGet(ctx, s.connectionsKey(k.Space, k.Audience), k.Destination).Result()
		if err != nil {
			t.Fatalf("HGET: %v", err)
		}
		if strings.Contains(raw, `"version":1,`) {
			t.Errorf("pruned version 1 still stored: %s", raw)
		}
	})
}

func TestStoreAudit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		clk := newClock()
		s := e.store(t, clk, Options{Activation: testActivation(), AuditLimit: 3})
		k := Key{e.space, "aud_1", "hook_1"}

		if _, err := s.History(ctx, k); !errors.Is(err, idsync.ErrNotFound) {
			t.Errorf("History of a missing connection: err = %v, want ErrNotFound", err)
		}
		for i := 1; i <= 4; i++ {
			clk.Advance(time.Minute)
			if _, err := s.Put(ctx, k, webhook(fmt.Sprint("v", i)), fmt.Sprint("actor", i), 0); err != nil {
				t.Fatalf("Put %d: %v", i, err)
			}
		}
		clk.Advance(time.Minute)
		if _, err := s.Delete(ctx, k, "deleter", 0); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		h, err := s.History(ctx, k)
		if err != nil {
			t.Fatalf("History: %v", err)
		}
		if len(h) != 3 {
			t.Fatalf("History has %d entries, want the limit 3", len(h))
		}
		want := []struct {
			version  int64
			action   string
			actor    string
			old, new *idsync.Config
		}{
			{5, ActionDelete, "deleter", webhook("v4"), nil},
			{4, ActionPut, "actor4", webhook("v3"), webhook("v4")},
			{3, ActionPut, "actor3", webhook("v2"), webhook("v3")},
		}
		for i, w := range want {
			g := h[i]
			if g.Version != w.version || g.Action != w.action || g.Actor != w.actor ||
				!reflect.DeepEqual(g.Old, w.old) || !reflect.DeepEqual(g.New, w.new) {
				t.Errorf("History[%d] = %+v, want version %d %s by %s", i, g, w.version, w.action, w.actor)
			}
		}
		if !h[0].At.Equal(clk.Now()) || !h[0].EffectiveAt.Equal(clk.Now().Add(delay)) {
			t.Errorf("History[0] at %s effective %s, want %s and +%s", h[0].At, h[0].EffectiveAt, clk.Now(), delay)
		}
	})
}

func TestStoreListOneRoundTrip(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		clk := newClock()
		s := e.store(t, clk, Options{Activation: testActivation()})
		dests := []string{"d9", "d1", "d5", "d3", "d0", "d7"}
		for _, d := range dests {
			if _, err := s.Put(ctx, Key{e.space, "aud_1", d}, webhook(d), "alice", 0); err != nil {
				t.Fatalf("Put %s: %v", d, err)
			}
		}
		// Another audience's connections stay out of the list.
		if _, err := s.Put(ctx, Key{e.space, "aud_2", "other"}, webhook("x"), "alice", 0); err != nil {
			t.Fatalf("Put: %v", err)
		}

		e.cmds.reset()
		l, err := s.List(ctx, e.space, "aud_1")
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		if n := e.cmds.total.Load(); n != 1 || e.cmds.count("hgetall") != 1 {
			t.Errorf("List sent %d commands, want one HGETALL", n)
		}
		var got []string
		for _, c := range l {
			got = append(got, c.DestinationID)
			if len(c.Versions) != 1 || c.Versions[0].Config.Settings.EnterEvent != c.DestinationID {
				t.Errorf("connection %s = %+v", c.DestinationID, c.Versions)
			}
		}
		want := slices.Clone(dests)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("List order = %v, want %v", got, want)
		}

		if l, err := s.List(ctx, e.space, "aud_none"); err != nil || len(l) != 0 {
			t.Errorf("List of an audience without connections = %v, %v; want empty, nil", l, err)
		}
	})
}

func TestStoreKeysAndChannel(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		s := e.store(t, newClock(), Options{Activation: testActivation()})
		k := Key{e.space, "aud.1", "hook_1"}

		sub := e.rdb.Subscribe(ctx, s.Channel())
		defer sub.Close()
		if _, err := sub.Receive(ctx); err != nil { // the subscription confirmation
			t.Fatalf("subscribing: %v", err)
		}
		if _, err := s.Put(ctx, k, webhook("v1"), "alice", 0); err != nil {
			t.Fatalf("Put: %v", err)
		}
		msg, err := sub.ReceiveMessage(ctx)
		if err != nil {
			t.Fatalf("receiving the notification: %v", err)
		}
		n, err := ParseNotification(msg.Payload)
		if err != nil || n != (Notification{k.Space, k.Audience, k.Destination, 1}) {
			t.Errorf("notification = %+v, %v; want %+v version 1", n, err, k)
		}
		if !strings.HasPrefix(s.Channel(), e.prefix) {
			t.Errorf("channel %q does not start with the prefix %q", s.Channel(), e.prefix)
		}

		// Every key of this space starts with the prefix, and they are
		// exactly the connections hash and the audit list.
		keys, err := stacktest.ScanAll(ctx, e.rdb, "*"+e.space+"*")
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(keys)
		tag := "{" + e.space + "/aud.1}"
		want := []string{e.prefix + tag + ":audit:hook_1", e.prefix + tag + ":connections"}
		if !slices.Equal(keys, want) {
			t.Errorf("keys = %q, want %q", keys, want)
		}
	})
}

func TestStoreConcurrentEdits(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		s := e.store(t, nil, Options{Activation: testActivation(), AuditLimit: 200})
		k := Key{e.space, "aud_1", "hook_1"}
		if _, err := s.Put(ctx, k, webhook("v1"), "setup", 0); err != nil {
			t.Fatalf("Put: %v", err)
		}

		const editors = 50
		var (
			wg       sync.WaitGroup
			mu       sync.Mutex
			accepted = map[int64]string{}
			refused  int
		)
		start := make(chan struct{})
		for i := range editors {
			wg.Go(func() {
				actor := fmt.Sprint("editor", i)
				var ifMatch int64
				if i%2 == 1 { // half of them guard the edit with the version they saw
					c, err := s.Get(ctx, k)
					if err != nil {
						t.Errorf("Get: %v", err)
						return
					}
					ifMatch = c.Versions[len(c.Versions)-1].Version
				}
				<-start
				var v idsync.Version
				var err error
				if i%10 == 9 {
					v, err = s.Delete(ctx, k, actor, ifMatch)
				} else {
					v, err = s.Put(ctx, k, webhook(actor), actor, ifMatch)
				}
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					if prev, dup := accepted[v.Version]; dup {
						t.Errorf("version %d given to %s and %s", v.Version, prev, actor)
					}
					accepted[v.Version] = actor
				case errors.Is(err, ErrConflict), errors.Is(err, ErrPreconditionFailed):
					refused++
				default:
					t.Errorf("%s: unexpected error %v", actor, err)
				}
			})
		}
		close(start)
		wg.Wait()
		t.Logf("%d edits accepted, %d refused", len(accepted), refused)
		if len(accepted) == 0 || len(accepted)+refused != editors {
			t.Fatalf("%d accepted + %d refused, want %d in all and some accepted", len(accepted), refused, editors)
		}

		h, err := s.History(ctx, k)
		if err != nil {
			t.Fatalf("History: %v", err)
		}
		if len(h) != len(accepted)+1 {
			t.Errorf("History has %d entries, want %d accepted edits + the first", len(h), len(accepted))
		}
		for i, a := range h[:len(h)-1] {
			if accepted[a.Version] != a.Actor {
				t.Errorf("audit entry %d: version %d by %q, accepted as by %q", i, a.Version, a.Actor, accepted[a.Version])
			}
			if i > 0 && a.Version >= h[i-1].Version {
				t.Errorf("audit entries not newest first: %d after %d", a.Version, h[i-1].Version)
			}
		}
		c, err := s.Get(ctx, k)
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		newest := c.Versions[len(c.Versions)-1]
		if newest.Version != h[0].Version {
			t.Errorf("newest stored version %d, newest audited %d", newest.Version, h[0].Version)
		}
	})
}

func TestStoreInvalidInput(t *testing.T) {
	e := backends()[0].open(t)
	ctx := t.Context()
	s := e.store(t, newClock(), Options{})
	for _, tc := range []struct {
		k    Key
		part string
	}{
		{Key{"", "a", "d"}, "space"},
		{Key{"s p", "a", "d"}, "space"},
		{Key{"s", "{a}", "d"}, "audience"},
		{Key{"s", "a", "D"}, "destination_id"},
		{Key{"s", "a", ""}, "destination_id"},
	} {
		for name, call := range map[string]func() error{
			"Put":     func() error { _, err := s.Put(ctx, tc.k, webhook("x"), "a", 0); return err },
			"Delete":  func() error { _, err := s.Delete(ctx, tc.k, "a", 0); return err },
			"Get":     func() error { _, err := s.Get(ctx, tc.k); return err },
			"History": func() error { _, err := s.History(ctx, tc.k); return err },
		} {
			err := call()
			if !errors.Is(err, ErrInvalidKey) || !strings.Contains(err.Error(), tc.part) {
				t.Errorf("%s(%+v): err = %v, want ErrInvalidKey naming %s", name, tc.k, err, tc.part)
			}
		}
	}
	if _, err := s.List(ctx, "s", "a/b"); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("List with a slash in the audience: err = %v, want ErrInvalidKey", err)
	}

	bad := webhook("x")
	bad.Identifiers[0].Strategy = "sometimes"
	var verr *idsync.ValidationError
	if _, err := s.Put(ctx, Key{"s", "a", "d"}, bad, "a", 0); !errors.As(err, &verr) {
		t.Errorf("Put of an invalid configuration: err = %v, want *idsync.ValidationError", err)
	}
	if _, err := s.Put(ctx, Key{"s", "a", "d"}, nil, "a", 0); err == nil {
		t.Error("Put of a nil configuration succeeded")
	}
	if n, _ := e.rdb.DBSize(ctx).Result(); n != 0 {
		t.Errorf("refused edits wrote %d keys", n)
	}

	for _, p := range []string{"a{b}:", "x*", "with space"} {
		if _, err := New(e.rdb, Options{Prefix: p}); err == nil {
			t.Errorf("New accepted prefix %q", p)
		}
	}
	if _, err := New(e.rdb, Options{AuditLimit: -1}); err == nil {
		t.Error("New accepted a negative audit limit")
	}
	if _, err := New(e.rdb, Options{Activation: idsync.Activation{Delay: -time.Second}}); err == nil {
		t.Error("New accepted a negative delay")
	}
	if s, err := New(e.rdb, Options{}); err != nil || s.Channel() != "idsync:notifications" ||
		s.Activation() != idsync.DefaultActivation() || s.limit != DefaultAuditLimit {
		t.Errorf("defaults: %v, channel %q, activation %+v", err, s.Channel(), s.Activation())
	}
}

func TestParseNotification(t *testing.T) {
	for _, payload := range []string{
		``, `{}`, `[1]`,
		`{"space":"s","audience":"a","destination":"d","version":0}`,
		`{"space":"s","audience":"a","destination":"D","version":1}`,
	} {
		if _, err := ParseNotification(payload); err == nil {
			t.Errorf("ParseNotification(%q) succeeded", payload)
		}
	}
	n, err := ParseNotification(`{"space":"s","audience":"a","destination":"d","version":4}`)
	if err != nil || n != (Notification{"s", "a", "d", 4}) {
		t.Errorf("ParseNotification = %+v, %v", n, err)
	}
}

// TestStoreTimesAreUTC checks that a clock in another zone stores the same
// instants, so every instance resolves versions the same way.
func TestStoreTimesAreUTC(t *testing.T) {
	e := backends()[0].open(t)
	ctx := context.Background()
	loc := time.FixedZone("UTC+2", 2*3600)
	now := time.Date(2026, 6, 1, 14, 0, 0, 0, loc)
	s := e.store(t, nil, Options{Now: func() time.Time { return now }})
	v, err := s.Put(ctx, Key{"s", "a", "d"}, webhook("x"), "a", 0)
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	if v.UpdatedAt.Location() != time.UTC || !v.UpdatedAt.Equal(now) {
		t.Errorf("updated_at = %v, want %v in UTC", v.UpdatedAt, now)
	}
}

func TestCheckPrefix(t *testing.T) {
	for _, tc := range []struct {
		prefix string
		want   string // a substring of the error, "" for accepted
	}{
		{"idsync:", ""},
		{"idsync:prod:eu-1.", ""},
		{"", ""}, // New defaults it; config refuses it as required
		{strings.Repeat("p", MaxPrefixLen), ""},
		{strings.Repeat("p", MaxPrefixLen+1), "at most 256 bytes"},
		{"a{b}:", "braces"},
		{"a}", "braces"},
		{"x*", "glob"},
		{"x?", "glob"},
		{"x[1]", "glob"},
		{`x\`, "glob"},
		{"with space", "spaces"},
		{"tab\t", "spaces"},
		{"nbsp\u00a0", "spaces"},
		{"nul\x00", "control"},
	} {
		err := CheckPrefix(tc.prefix)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("CheckPrefix(%q) = %v, want nil", tc.prefix, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("CheckPrefix(%q) = %v, want an error saying %q", tc.prefix, err, tc.want)
		case err != nil && tc.prefix != "" && strings.Contains(err.Error(), tc.prefix):
			t.Errorf("CheckPrefix(%q) quotes the prefix: %v", tc.prefix, err)
		}
		if tc.prefix == "" {
			continue
		}
		if _, nerr := New(redisClientForNew, Options{Prefix: tc.prefix}); (nerr == nil) != (err == nil) {
			t.Errorf("New with prefix %q: %v, but CheckPrefix says %v", tc.prefix, nerr, err)
		}
	}
}

// redisClientForNew is a client that is never dialled: New does not
// contact Redis.
var redisClientForNew = redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})

package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idsync/idsync/idsync"
)

// What the tests below plant in stored records where a value could leak
// into an error or a log: none of these strings may ever come out.
const (
	leakEmail = "jane.leak@example.com"
	leakList  = "LEAK-23851234567890123"
)

// rawRecord encodes versions as the store writes them, each version's
// config given as raw JSON ("" for none).
func rawRecord(t *testing.T, versions ...rawVersion) string {
	t.Helper()
	type wire struct {
		Version     int64           `json:"version"`
		UpdatedAt   time.Time       `json:"updated_at"`
		EffectiveAt time.Time       `json:"effective_at"`
		Deleted     bool            `json:"deleted,omitempty"`
		Config      json.RawMessage `json:"config,omitempty"`
	}
	var r struct {
		Versions []wire `json:"versions"`
	}
	t0 := newClock().Now()
	for _, v := range versions {
		w := wire{Version: v.n, UpdatedAt: t0, EffectiveAt: t0.Add(time.Duration(v.n) * time.Second), Deleted: v.deleted}
		if v.config != "" {
			w.Config = json.RawMessage(v.config)
		}
		r.Versions = append(r.Versions, w)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

type rawVersion struct {
	n       int64
	config  string
	deleted bool
}

func configJSON(t *testing.T, c *idsync.Config) string {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// unusableCases are stored records this binary cannot use, each planted in
// its own field beside a good connection. connection: the record as a
// whole is unusable (Connection.Invalid); otherwise the newest version is
// (Version.Invalid), with its configuration decoded when decoded is set.
func unusableCases(t *testing.T) []struct {
	name, field, raw, why string
	connection, decoded   bool
} {
	unknown := webhook("x")
	unknown.DestinationType = "tiktok_audiences"
	broken := webhook("x")
	broken.Identifiers[0].Strategy = "sometimes"
	list := facebook("1")
	list.ExternalAudienceID = leakList
	list.Settings.SendMobileIDs = false // breaks the ios.idfa mapping's rule
	good := configJSON(t, webhook("good"))
	return []struct {
		name, field, raw, why string
		connection, decoded   bool
	}{
		{"not JSON", "d_syntax", `{"versions":[{"version":1,"config":"` + leakEmail, "malformed JSON", true, false},
		{"wrong JSON type", "d_type", `{"versions":[{"version":"` + leakEmail + `"}]}`, "versions.version must be a number", true, false},
		{"bad time", "d_time", `{"versions":[{"version":1,"effective_at":"` + leakEmail + `"}]}`, "malformed JSON", true, false},
		{"no versions", "d_empty", `{"versions":[]}`, "no versions", true, false},
		{"versions out of order", "d_order", rawRecord(t, rawVersion{n: 2, config: good}, rawVersion{n: 1, config: good}), "out of order", true, false},
		{"version zero", "d_zero", rawRecord(t, rawVersion{n: 0, config: good}), "version must be positive", true, false},
		{"no effective_at", "d_noeff", `{"versions":[{"version":1,"config":` + good + `}]}`, "effective_at missing", true, false},
		{"invalid destination field", "Not A Destination", rawRecord(t, rawVersion{n: 1, config: good}), "not a valid destination id", true, false},
		{"unknown destination type", "d_unknown", rawRecord(t, rawVersion{n: 1, config: good}, rawVersion{n: 2, config: configJSON(t, unknown)}), "unknown destination type", false, true},
		{"configuration breaks the rules", "d_rules", rawRecord(t, rawVersion{n: 1, config: configJSON(t, broken)}), "identifiers[0].strategy", false, true},
		{"list configuration breaks the rules", "d_list", rawRecord(t, rawVersion{n: 1, config: configJSON(t, list)}), "send_mobile_ids", false, true},
		{"configuration cannot be decoded", "d_cfgtype", rawRecord(t, rawVersion{n: 1, config: `{"destination_type":"webhook","identifiers":"` + leakEmail + `"}`}), "identifiers must be an array", false, false},
		{"no configuration", "d_nocfg", rawRecord(t, rawVersion{n: 1}), "has no configuration", false, false},
	}
}

// noLeak fails t when s holds one of the planted values.
func noLeak(t *testing.T, what, s string) {
	t.Helper()
	for _, v := range []string{leakEmail, leakList} {
		if strings.Contains(s, v) {
			t.Errorf("%s holds the stored value %q: %s", what, v, s)
		}
	}
}

// TestStoreReadsUnusableRecords: one unusable record never hides the
// audience's other connections; it is marked, with why and no value.
func TestStoreReadsUnusableRecords(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		clk := newClock()
		s := e.store(t, clk, Options{Activation: testActivation()})
		const aud = "aud_1"
		if _, err := s.Put(ctx, Key{e.space, aud, "a_good"}, webhook("good"), "alice", 0); err != nil {
			t.Fatalf("Put: %v", err)
		}
		cases := unusableCases(t)
		hkey := s.connectionsKey(e.space, aud)
		for _, tc := range cases {
			if err := e.rdb.HSet(ctx, hkey, tc.field, tc.raw).Err(); err != nil {
				t.Fatalf("HSET %s: %v", tc.field, err)
			}
		}
		clk.Advance(time.Minute) // every planted version is effective

		conns, rep, err := s.list(ctx, e.space, aud)
		if err != nil {
			t.Fatalf("List with unusable records: %v", err)
		}
		byDest := map[string]idsync.Connection{}
		for _, c := range conns {
			byDest[c.DestinationID] = c
		}
		if g := byDest["a_good"]; g.Invalid != "" || len(g.Versions) != 1 || g.Versions[0].Invalid != "" || g.Versions[0].Config == nil {
			t.Errorf("the good connection = %+v, want it served untouched", g)
		}
		if len(conns) != len(cases)+1 {
			t.Errorf("List returned %d connections, want %d (every record, usable or not)", len(conns), len(cases)+1)
		}
		wantConns, wantVersions := 0, 0
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				c, ok := byDest[tc.field]
				if !ok {
					t.Fatalf("connection %s missing from List", tc.field)
				}
				if tc.connection {
					if !strings.Contains(c.Invalid, tc.why) || len(c.Versions) != 0 {
						t.Errorf("Connection = %+v, want Invalid saying %q and no versions", c, tc.why)
					}
					noLeak(t, "Connection.Invalid", c.Invalid)
					return
				}
				if c.Invalid != "" || len(c.Versions) == 0 {
					t.Fatalf("Connection = %+v, want versions and no connection-wide Invalid", c)
				}
				newest := c.Versions[len(c.Versions)-1]
				if !strings.Contains(newest.Invalid, tc.why) {
					t.Errorf("newest version's Invalid = %q, want it to say %q", newest.Invalid, tc.why)
				}
				noLeak(t, "Version.Invalid", newest.Invalid)
				if tc.decoded != (newest.Config != nil) {
					t.Errorf("newest version's Config = %+v, want decoded: %v", newest.Config, tc.decoded)
				}
				for _, v := range c.Versions[:len(c.Versions)-1] {
					if v.Invalid != "" {
						t.Errorf("the older, valid version %d is marked %q", v.Version, v.Invalid)
					}
				}
			})
			if tc.connection {
				wantConns++
			} else {
				wantVersions++
			}
		}
		if rep.connections != wantConns || rep.versions != wantVersions || rep.reason == "" {
			t.Errorf("report = %+v, want %d connections and %d versions with a reason", rep, wantConns, wantVersions)
		}

		// Get marks versions as List does, and refuses a record it cannot
		// decode with ErrUnusableConfig, never ErrNotFound.
		for _, tc := range cases {
			if !idsync.ValidDestinationID(tc.field) {
				continue
			}
			c, err := s.Get(ctx, Key{e.space, aud, tc.field})
			switch {
			case tc.connection:
				if !errors.Is(err, idsync.ErrUnusableConfig) || !strings.Contains(err.Error(), tc.why) {
					t.Errorf("Get %s: %+v, %v; want ErrUnusableConfig saying %q", tc.name, c, err, tc.why)
				} else {
					noLeak(t, "Get's error", err.Error())
				}
			case err != nil || !strings.Contains(c.Versions[len(c.Versions)-1].Invalid, tc.why):
				t.Errorf("Get %s: %+v, %v; want the newest version marked %q", tc.name, c, err, tc.why)
			}
		}

		// A version this binary cannot use is repaired by an ordinary edit;
		// a record it cannot decode is not overwritten.
		k := Key{e.space, aud, "d_unknown"}
		v, err := s.Put(ctx, k, webhook("repaired"), "alice", 0)
		if err != nil {
			t.Fatalf("Put over a version of an unknown type: %v", err)
		}
		clk.Set(v.EffectiveAt)
		c, err := s.Get(ctx, k)
		if err != nil || idsync.VersionAt(c.Versions, clk.Now()).Invalid != "" {
			t.Errorf("after the repair: %+v, %v; want the new version valid", c, err)
		}
		if _, err := s.Put(ctx, Key{e.space, aud, "d_syntax"}, webhook("x"), "alice", 0); !errors.Is(err, idsync.ErrUnusableConfig) {
			t.Errorf("Put over an undecodable record: err = %v, want ErrUnusableConfig", err)
		}
		if _, err := s.Delete(ctx, Key{e.space, aud, "d_syntax"}, "alice", 0); !errors.Is(err, idsync.ErrUnusableConfig) {
			t.Errorf("Delete of an undecodable record: err = %v, want ErrUnusableConfig", err)
		}
		if raw, _ := e.rdb.HGet(ctx, hkey, "d_syntax").Result(); raw != cases[0].raw {
			t.Errorf("the undecodable record was changed to %q", raw)
		}
	})
}

// TestStoreWrongType: a connections key of another Redis type is
// ErrUnusableConfig for every read and edit, not a Redis failure.
func TestStoreWrongType(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		s := e.store(t, newClock(), Options{Activation: testActivation()})
		if err := e.rdb.Set(ctx, s.connectionsKey(e.space, "aud_1"), leakEmail, 0).Err(); err != nil {
			t.Fatalf("SET: %v", err)
		}
		k := Key{e.space, "aud_1", "hook_1"}
		for name, call := range map[string]func() error{
			"List":   func() error { _, err := s.List(ctx, k.Space, k.Audience); return err },
			"Get":    func() error { _, err := s.Get(ctx, k); return err },
			"Put":    func() error { _, err := s.Put(ctx, k, webhook("x"), "alice", 0); return err },
			"Delete": func() error { _, err := s.Delete(ctx, k, "alice", 0); return err },
		} {
			err := call()
			if !errors.Is(err, idsync.ErrUnusableConfig) || !strings.Contains(err.Error(), "not a Redis hash") {
				t.Errorf("%s on a string key: err = %v, want ErrUnusableConfig saying the key is not a hash", name, err)
			} else {
				noLeak(t, name+"'s error", err.Error())
			}
		}
	})
}

// TestStoreChecksConfigOnce: a shared configuration is validated when it
// is first decoded, not on every read.
func TestStoreChecksConfigOnce(t *testing.T) {
	in := newInterner()
	raw := []byte(configJSON(t, webhook("x")))
	c1, invalid, err := in.config(raw)
	if err != nil || invalid != "" {
		t.Fatalf("config: %v, %q", err, invalid)
	}
	// Tamper with the shared verdict: a second decode must take it as it
	// is rather than validate again.
	in.configs[string(raw)] = internedConfig{c: c1, invalid: "checked once"}
	c2, invalid, err := in.config(raw)
	if err != nil || c2 != c1 || invalid != "checked once" {
		t.Errorf("second decode: %p (first %p), %q, %v; want the shared configuration and verdict", c2, c1, invalid, err)
	}
	bad := webhook("x")
	bad.DestinationType = "tiktok_audiences"
	rawBad := []byte(configJSON(t, bad))
	if _, invalid, _ := in.config(rawBad); !strings.Contains(invalid, "unknown destination type") {
		t.Errorf("unknown type: invalid = %q", invalid)
	}
	if v := in.configs[string(rawBad)]; v.c == nil || v.invalid == "" {
		t.Errorf("the invalid configuration is not shared with its verdict: %+v", v)
	}
}

// logRecorder is a slog handler keeping every record's message and
// attributes as text.
type logRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *logRecorder) WithGroup(string) slog.Handler            { return r }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	var b bytes.Buffer
	b.WriteString(rec.Message)
	rec.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.String())
		return true
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, b.String())
	return nil
}

func (r *logRecorder) matching(s string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, l := range r.lines {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return out
}

// TestCacheUnusable: through the cache, an audience with unusable records
// serves its other connections, counts and logs once per fetch; an
// audience whose key is of another type is a cached final answer, never
// ErrUnavailable, and never marks Redis down.
func TestCacheUnusable(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		clk := newClock()
		s := e.store(t, clk, Options{Activation: testActivation()})
		logs := &logRecorder{}
		c, reg := newCache(t, s, e.rdb, clk, CacheOptions{TTL: time.Minute, Logger: slog.New(logs)})
		for _, kind := range UnusableKinds {
			if v := metric(t, reg, "idsync_config_unusable_total", "kind", kind); v != 0 {
				t.Errorf("unusable{kind=%s} = %v at start, want 0", kind, v)
			}
		}

		// Some connections of an audience unusable.
		if _, err := s.Put(ctx, Key{e.space, "mixed", "a_good"}, webhook("good"), "alice", 0); err != nil {
			t.Fatalf("Put: %v", err)
		}
		bad := webhook("x")
		bad.DestinationType = "tiktok_audiences"
		hkey := s.connectionsKey(e.space, "mixed")
		if err := e.rdb.HSet(ctx, hkey, "b_corrupt", `{"versions":[`+leakEmail, "c_unknown", rawRecord(t, rawVersion{n: 1, config: configJSON(t, bad)})).Err(); err != nil {
			t.Fatalf("HSET: %v", err)
		}
		for range 2 { // the second is a hit: no second count, no second log
			conns, err := c.Connections(ctx, e.space, "mixed")
			if err != nil || len(conns) != 3 || conns[0].Invalid != "" || conns[1].Invalid == "" || conns[2].Versions[0].Invalid == "" {
				t.Fatalf("Connections(mixed) = %+v, %v; want the good one served and the two others marked", conns, err)
			}
		}
		if v := metric(t, reg, "idsync_config_unusable_total", "kind", UnusableConnection); v != 1 {
			t.Errorf("unusable{kind=connection} = %v, want 1", v)
		}
		if v := metric(t, reg, "idsync_config_unusable_total", "kind", UnusableVersion); v != 1 {
			t.Errorf("unusable{kind=version} = %v, want 1", v)
		}
		if l := logs.matching("stored connections cannot be used"); len(l) != 1 {
			t.Errorf("%d log lines for one fetch, want 1: %q", len(l), l)
		}

		// The whole audience unusable: the key holds a string.
		if err := e.rdb.Set(ctx, s.connectionsKey(e.space, "wrong"), leakEmail, 0).Err(); err != nil {
			t.Fatalf("SET: %v", err)
		}
		e.cmds.reset()
		for i := range 3 {
			conns, err := c.Connections(ctx, e.space, "wrong")
			if !errors.Is(err, idsync.ErrUnusableConfig) || isUnavailable(err) || conns != nil {
				t.Fatalf("lookup %d of a string key: %v, %v; want ErrUnusableConfig, not ErrUnavailable", i, conns, err)
			}
		}
		if n := e.cmds.count("hgetall"); n != 1 {
			t.Errorf("%d HGETALL for three lookups of an unusable audience, want 1 (cached)", n)
		}
		if up := metric(t, reg, "idsync_redis_up"); up != 1 {
			t.Errorf("redis_up = %v after an unusable answer, want 1", up)
		}
		if v := metric(t, reg, "idsync_config_unusable_total", "kind", UnusableAudience); v != 1 {
			t.Errorf("unusable{kind=audience} = %v, want 1", v)
		}
		for _, l := range logs.matching("") {
			noLeak(t, "log", l)
			if strings.Contains(l, e.space) {
				t.Errorf("log line names the space: %s", l)
			}
		}

		// Past the TTL it is asked again; once repaired, served.
		if err := e.rdb.Del(ctx, s.connectionsKey(e.space, "wrong")).Err(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Put(ctx, Key{e.space, "wrong", "hook_1"}, webhook("v1"), "alice", 0); err != nil {
			t.Fatalf("Put: %v", err)
		}
		if _, err := c.Connections(ctx, e.space, "wrong"); !errors.Is(err, idsync.ErrUnusableConfig) {
			t.Errorf("within the TTL: err = %v, want the cached ErrUnusableConfig", err)
		}
		clk.Advance(time.Minute)
		if conns, err := c.Connections(ctx, e.space, "wrong"); err != nil || len(conns) != 1 {
			t.Errorf("past the TTL, repaired: %+v, %v; want the connection", conns, err)
		}
	})
}

// TestCacheInvalidKeyFirst: an invalid id is ErrInvalidKey whatever
// Redis's state, never ErrUnavailable, and never asks Redis.
func TestCacheInvalidKeyFirst(t *testing.T) {
	for _, o := range outages() {
		t.Run(o.name, func(t *testing.T) {
			t.Parallel()
			addr, stop, _ := o.start(t)
			e := newEnv(t, &redis.Options{Addr: addr}, "idsync-test:")
			ctx := t.Context()
			clk := newClock()
			s := e.store(t, clk, Options{Activation: testActivation()})
			c, reg := newCache(t, s, e.rdb, clk, CacheOptions{TTL: time.Hour, HealthInterval: 20 * time.Millisecond})
			run(t, c)
			if err := e.rdb.Set(ctx, s.connectionsKey(e.space, "wrong"), "x", 0).Err(); err != nil {
				t.Fatalf("SET: %v", err)
			}
			if _, err := c.Connections(ctx, e.space, "wrong"); !errors.Is(err, idsync.ErrUnusableConfig) {
				t.Fatalf("warming the unusable audience: %v", err)
			}
			bad := []struct{ space, audience string }{
				{"spa 1", "aud_1"}, {e.space, "a/b"}, {e.space, strings.Repeat("a", 129)}, {e.space, "aüd"}, {"", "aud_1"},
			}
			check := func(when string) {
				t.Helper()
				e.cmds.reset()
				for _, b := range bad {
					_, err := c.Connections(ctx, b.space, b.audience)
					if !errors.Is(err, ErrInvalidKey) || isUnavailable(err) {
						t.Errorf("%s: Connections(%q, %q): err = %v, want ErrInvalidKey", when, b.space, b.audience, err)
					}
				}
				if n := e.cmds.count("hgetall"); n != 0 {
					t.Errorf("%s: %d HGETALL for invalid ids, want 0", when, n)
				}
			}
			check("Redis up")
			if up := metric(t, reg, "idsync_redis_up"); up != 1 {
				t.Errorf("redis_up = %v after invalid ids, want 1", up)
			}

			stop()
			eventually(t, 10*time.Second, "redis_up = 0", func() bool { return metric(t, reg, "idsync_redis_up") == 0 })
			check("Redis down")
			// The unusable answer is served while fresh, and not stale.
			if _, err := c.Connections(ctx, e.space, "wrong"); !errors.Is(err, idsync.ErrUnusableConfig) {
				t.Errorf("the unusable audience within the TTL, Redis down: err = %v, want ErrUnusableConfig", err)
			}
			clk.Advance(2 * time.Hour)
			if _, err := c.Connections(ctx, e.space, "wrong"); !isUnavailable(err) {
				t.Errorf("the unusable audience past the TTL, Redis down: err = %v, want ErrUnavailable", err)
			}
		})
	}
}

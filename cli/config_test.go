package cli

import (
	"context"
	"encoding/json"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/idsync/idsync/admin"
	"github.com/idsync/idsync/idsync"
	"github.com/idsync/idsync/internal/adminstore"
	"github.com/idsync/idsync/store"
)

// memStore is an in-memory admin.Store with the store's rules.
type memStore struct {
	mu    sync.Mutex
	now   func() time.Time
	conns map[admin.Key][]idsync.Version
	audit map[admin.Key][]admin.AuditEntry
}

func (m *memStore) edit(k admin.Key, cfg *idsync.Config, actor string, ifMatch int64) (idsync.Version, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.conns[k]
	var newest int64
	var prev *idsync.Config
	if n := len(old); n > 0 {
		newest, prev = old[n-1].Version, old[n-1].Config
	}
	if ifMatch != 0 && ifMatch != newest {
		return idsync.Version{}, admin.ErrPreconditionFailed
	}
	versions, v, err := idsync.DefaultActivation().Edit(old, cfg, m.now())
	if err != nil {
		return idsync.Version{}, err
	}
	action := "put"
	if cfg == nil {
		action = "delete"
	}
	m.conns[k] = versions
	m.audit[k] = append([]admin.AuditEntry{{Version: v.Version, Action: action, Actor: actor, At: v.UpdatedAt, EffectiveAt: v.EffectiveAt, Old: prev, New: cfg}}, m.audit[k]...)
	return v, nil
}

func (m *memStore) Put(_ context.Context, k admin.Key, cfg *idsync.Config, actor string, ifMatch int64) (idsync.Version, error) {
	return m.edit(k, cfg, actor, ifMatch)
}

func (m *memStore) Delete(_ context.Context, k admin.Key, actor string, ifMatch int64) (idsync.Version, error) {
	return m.edit(k, nil, actor, ifMatch)
}

func (m *memStore) Get(_ context.Context, k admin.Key) (idsync.Connection, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.conns[k]
	if !ok {
		return idsync.Connection{}, idsync.ErrNotFound
	}
	return idsync.Connection{DestinationID: k.Destination, Versions: slices.Clone(v)}, nil
}

func (m *memStore) List(_ context.Context, space, audience string) ([]idsync.Connection, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []idsync.Connection
	for k, v := range m.conns {
		if k.Space == space && k.Audience == audience {
			out = append(out, idsync.Connection{DestinationID: k.Destination, Versions: slices.Clone(v)})
		}
	}
	return out, nil
}

func (m *memStore) History(_ context.Context, k admin.Key) ([]admin.AuditEntry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.audit[k]), nil
}

const (
	writeToken = "cli-write-token"
	readToken  = "cli-read-token"
)

// backends are the stores the CLI tests run the API over.
var backends = []struct {
	name string
	open func(t *testing.T, now func() time.Time) admin.Store
}{
	{"memory", func(_ *testing.T, now func() time.Time) admin.Store {
		return &memStore{now: now, conns: map[admin.Key][]idsync.Version{}, audit: map[admin.Key][]admin.AuditEntry{}}
	}},
	{"redis-store", func(t *testing.T, now func() time.Time) admin.Store {
		mr := miniredis.RunT(t)
		rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
		t.Cleanup(func() { rdb.Close() })
		st, err := store.New(rdb, store.Options{Now: now})
		if err != nil {
			t.Fatal(err)
		}
		return adminstore.New(st)
	}},
}

// apiServer starts the admin API over st and returns its URL.
func apiServer(t *testing.T, st admin.Store, now func() time.Time) string {
	t.Helper()
	srv, err := admin.New(st, admin.Options{
		Tokens: []admin.Token{
			{Name: "ops", Secret: writeToken, Scope: admin.ScopeWrite},
			{Name: "viewer", Secret: readToken, Scope: admin.ScopeRead},
		},
		Now: now,
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return ts.URL
}

// run runs the CLI with stdin and env, returning exit code and streams.
func run(t *testing.T, env map[string]string, stdin string, args ...string) (int, string, string) {
	t.Helper()
	return runWith(context.Background(), env, stdin, args...)
}

const yamlConfig = `# Facebook, customized
destination_type: facebook_custom_audiences
external_audience_id: "23851234567890123"
settings:
  send_mobile_ids: true
setup: customized
identifiers:
  - {segment: email, destination: EMAIL, strategy: all}
  - segment: ios.idfa
    destination: MADID
    strategy: first_added
`

const eventJSON = `{"message_id":"m1","timestamp":"2026-06-01T11:00:00Z","space_id":"spa_1","audience_id":"aud_1",
 "action":"entered","profile":{"segment_id":"use_1"},
 "external_ids":[{"type":"email","id":"jane@example.com","created_at":"2025-01-01T00:00:00Z"}]}`

func TestConfigCommands(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			var mu sync.Mutex
			clock := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
			now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
			url := apiServer(t, b.open(t, now), now)
			env := map[string]string{"IDSYNC_ADMIN_ADDR": url, "IDSYNC_ADMIN_TOKEN": writeToken}
			dir := t.TempDir()
			write := func(name, content string) string {
				p := filepath.Join(dir, name)
				if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
				return p
			}
			ok := func(stdin string, args ...string) string {
				t.Helper()
				code, out, errOut := run(t, env, stdin, args...)
				if code != ExitOK {
					t.Fatalf("%v: exit %d, stderr %s", args, code, errOut)
				}
				return out
			}
			contains := func(out string, want ...string) {
				t.Helper()
				for _, w := range want {
					if !strings.Contains(out, w) {
						t.Errorf("output lacks %q:\n%s", w, out)
					}
				}
			}

			// put from YAML on stdin, flags after the arguments.
			out := ok(yamlConfig, "config", "put", "spa_1", "aud_1", "fbca_01", "-f", "-")
			contains(out, "created spa_1/aud_1/fbca_01: version 1 active since 2026-06-01T12:00:00Z")

			// put from a JSON file with --if-match: pending.
			mu.Lock()
			clock = clock.Add(time.Minute)
			mu.Unlock()
			file := write("iterable.json", `{"destination_type":"iterable","setup":"default"}`)
			out = ok("", "config", "put", "--if-match", "1", "-f", file, "spa_1", "aud_1", "fbca_01")
			contains(out, "updated spa_1/aud_1/fbca_01: version 2 pending, effective at 2026-06-01T12:06:00Z")

			out = ok("", "config", "get", "spa_1", "aud_1", "fbca_01")
			contains(out, "destination", "fbca_01", "version 1,", "facebook_custom_audiences customized",
				"version 2,", "iterable default", `"identifiers"`, "pending configuration (version 2)")

			var got struct {
				DestinationID string `json:"destination_id"`
				Active        struct {
					Version int64 `json:"version"`
				} `json:"active"`
			}
			if err := json.Unmarshal([]byte(ok("", "config", "get", "spa_1", "aud_1", "fbca_01", "-o", "json")), &got); err != nil || got.DestinationID != "fbca_01" || got.Active.Version != 1 {
				t.Errorf("get -o json: %+v %v", got, err)
			}

			ok(`{"destination_type":"webhook","setup":"default"}`, "config", "put", "spa_1", "aud_1", "hook", "-f", "-")
			out = ok("", "config", "list", "spa_1", "aud_1")
			contains(out, "DESTINATION", "fbca_01", "facebook_custom_audiences", "v1", "v2", "2026-06-01T12:06:00Z", "hook", "webhook")
			var list struct {
				Connections []json.RawMessage `json:"connections"`
			}
			if err := json.Unmarshal([]byte(ok("", "config", "list", "spa_1", "aud_1", "-o", "json")), &list); err != nil || len(list.Connections) != 2 {
				t.Errorf("list -o json: %+v %v", list, err)
			}

			out = ok("", "config", "delete", "spa_1", "aud_1", "hook")
			contains(out, "deleted spa_1/aud_1/hook: version 2 pending")

			out = ok("", "config", "history", "spa_1", "aud_1", "fbca_01")
			contains(out, "VERSION", "ACTOR", "ops", "iterable", "facebook_custom_audiences")
			if i, j := strings.Index(out, "\n2 "), strings.Index(out, "\n1 "); i < 0 || j < 0 || i > j {
				t.Errorf("history not newest first:\n%s", out)
			}

			contains(ok("", "config", "types"), "facebook_custom_audiences", "list", "EMAIL", "webhook", "free text")

			// preview from separate files, and from one request on stdin.
			connFile := write("conn.yaml", yamlConfig)
			evFile := write("event.json", eventJSON)
			out = ok("", "config", "preview", "--connection", connFile, "--event", evFile, "--destination", "fb")
			contains(out, "1 record(s)", "topic idsync.dest.fb", "key use_1", `"message_id": "m1:fb:0"`)
			req := `{"connection":{"destination_type":"iterable","setup":"default"},"event":` + eventJSON + `}`
			var pv struct {
				Records []struct {
					Value map[string]any `json:"value"`
				} `json:"records"`
			}
			if err := json.Unmarshal([]byte(ok(req, "config", "preview", "-f", "-", "-o", "json")), &pv); err != nil || len(pv.Records) != 1 || pv.Records[0].Value["destination_id"] != "preview" {
				t.Errorf("preview -o json: %+v %v", pv, err)
			}
			out = ok(`{"connection":{"destination_type":"iterable"},"event":{"message_id":"x"}}`, "config", "preview", "-f", "-")
			contains(out, "dead letter: schema_violation")

			// Refusals: exit 3 with every problem on stderr.
			code, _, errOut := run(t, env, "destination_type: google_ads_remarketing_lists\nsetup: customized\nidentifiers:\n  - {segment: email, destination: EMAIL, strategy: often}\n",
				"config", "put", "spa_1", "aud_1", "g1", "-f", "-")
			if code != ExitRefused {
				t.Fatalf("invalid config: exit %d", code)
			}
			contains(errOut, "refused (400", "invalid connection configuration", "external_audience_id: required",
				"identifiers[0].destination: must be one of", "identifiers[0].strategy: must be")
			code, _, errOut = run(t, env, "", "config", "put", "spa_1", "aud_1", "fbca_01", "-f", file, "--if-match", "9")
			if code != ExitRefused || !strings.Contains(errOut, "412") {
				t.Errorf("stale if-match: exit %d, %s", code, errOut)
			}
			code, _, errOut = run(t, env, "", "config", "get", "spa_1", "aud_1", "nothing")
			if code != ExitRefused || !strings.Contains(errOut, "404") {
				t.Errorf("get missing: exit %d, %s", code, errOut)
			}
			code, _, errOut = run(t, env, "", "config", "get", "spa_1", "aud_1", "Bad/Id")
			if code != ExitRefused || !strings.Contains(errOut, "destination_id: must match") {
				t.Errorf("get invalid id: exit %d, %s", code, errOut)
			}
			code, _, errOut = run(t, env, "", "config", "delete", "spa_1", "aud_1", "fbca_01", "--token", readToken)
			if code != ExitRefused || !strings.Contains(errOut, "403") {
				t.Errorf("read token delete: exit %d, %s", code, errOut)
			}
			code, _, errOut = run(t, map[string]string{"IDSYNC_ADMIN_ADDR": url}, "", "config", "types")
			if code != ExitRefused || !strings.Contains(errOut, "401") {
				t.Errorf("no token: exit %d, %s", code, errOut)
			}
			// --addr overrides the environment.
			ok("", "config", "types", "--addr", url, "--token", readToken)
		})
	}
}

func TestConfigUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	for _, args := range [][]string{
		{"config", "get", "s", "a", "d", "--addr", addr},
		{"config", "types", "--addr", "http://" + addr},
		{"config", "put", "s", "a", "d", "-f", "-", "--addr", addr},
	} {
		code, _, errOut := run(t, nil, `{"destination_type":"iterable"}`, args...)
		if code != ExitUnavailable || !strings.Contains(errOut, "calling the admin API") {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
		}
	}
}

func TestConfigUsage(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("a: [unclosed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// No server listens at this address: usage is checked before any call.
	env := map[string]string{"IDSYNC_ADMIN_ADDR": "http://127.0.0.1:1"}
	for _, tt := range []struct {
		stdin string
		args  []string
	}{
		{"", []string{"config"}},
		{"", []string{"config", "frob"}},
		{"", []string{"config", "get", "s", "a"}},
		{"", []string{"config", "list", "s", "a", "d"}},
		{"", []string{"config", "get", "s", "a", "d", "-o", "xml"}},
		{"", []string{"config", "get", "s", "a", "d", "--nope"}},
		{"", []string{"config", "put", "s", "a", "d"}},
		{"", []string{"config", "put", "s", "a", "d", "-f", filepath.Join(dir, "missing.json")}},
		{"", []string{"config", "put", "s", "a", "d", "-f", bad}},
		{"", []string{"config", "put", "s", "a", "d", "-f", "-"}},
		{"", []string{"config", "put", "s", "a", "d", "-f", "-", "--if-match", "x"}},
		{"", []string{"config", "preview"}},
		{"", []string{"config", "preview", "--connection", bad}},
		{"{}", []string{"config", "preview", "-f", "-", "--event", bad}},
		{"", []string{"config", "types", "extra"}},
		{"", []string{"config", "types", "--addr", "ftp://x"}},
	} {
		code, _, errOut := run(t, env, tt.stdin, tt.args...)
		if code != ExitUsage || errOut == "" {
			t.Errorf("%v: exit %d, stderr %q", tt.args, code, errOut)
		}
	}
	if code, out, _ := run(t, nil, "", "config", "help"); code != ExitOK || !strings.Contains(out, "idsync config put") {
		t.Errorf("config help: exit %d", code)
	}
}

func TestYAMLToJSON(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"a": 1}`, `{"a": 1}`},
		{"a: 1\nb: [x, true, null]\nc: {d: 2.5}\n", `{"a":1,"b":["x",true,null],"c":{"d":2.5}}`},
		{"1: one\n", `{"1":"one"}`},
		{"created_at: 2025-01-01T00:00:00Z\n", `{"created_at":"2025-01-01T00:00:00Z"}`},
	}
	for _, tt := range tests {
		got, err := yamlToJSON([]byte(tt.in))
		if err != nil || string(got) != tt.want {
			t.Errorf("yamlToJSON(%q) = %s, %v; want %s", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "  \n", "a: [", "a: .inf\n"} {
		if _, err := yamlToJSON([]byte(bad)); err == nil {
			t.Errorf("yamlToJSON(%q) accepted", bad)
		}
	}
}

package admin_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/idsync/idsync/admin"
	"github.com/idsync/idsync/internal/adminstore"
	"github.com/idsync/idsync/store"
)

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestAPIOverRedisStore runs the API over the real store on miniredis.
func TestAPIOverRedisStore(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	clk := &testClock{t: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)}
	st, err := store.New(rdb, store.Options{Prefix: "admin-test:", Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := admin.New(adminstore.New(st), admin.Options{
		Tokens: []admin.Token{{Name: "ops", Secret: "secret-w", Scope: admin.ScopeWrite}},
		Now:    clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	do := func(method, path, body string, headers ...string) (int, map[string]any, http.Header) {
		t.Helper()
		r := httptest.NewRequest(method, path, strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer secret-w")
		for i := 0; i+1 < len(headers); i += 2 {
			r.Header.Set(headers[i], headers[i+1])
		}
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, r)
		var m map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
			t.Fatalf("%s %s: body %s: %v", method, path, w.Body, err)
		}
		return w.Code, m, w.Header()
	}
	const path = "/v1/spaces/spa_1/audiences/aud_1/connections/fbca_01"
	const cfg = `{"destination_type":"facebook_custom_audiences","external_audience_id":"123","setup":"default"}`

	code, m, _ := do("PUT", path, cfg)
	if code != http.StatusCreated || m["version"] != 1.0 || m["state"] != "active" {
		t.Fatalf("create: %d %v", code, m)
	}
	code, m, hdr := do("GET", path, "")
	if code != http.StatusOK || hdr.Get("ETag") != `"1"` || m["active"] == nil || m["pending"] != nil {
		t.Fatalf("get: %d %v %v", code, m, hdr)
	}
	clk.Advance(time.Minute)
	if code, m, _ = do("PUT", path, cfg, "If-Match", `"7"`); code != http.StatusPreconditionFailed {
		t.Fatalf("stale If-Match: %d %v", code, m)
	}
	code, m, _ = do("PUT", path, cfg, "If-Match", `W/"1"`)
	if code != http.StatusOK || m["version"] != 2.0 || m["state"] != "pending" {
		t.Fatalf("edit: %d %v", code, m)
	}
	code, m, _ = do("DELETE", path, "", "If-Match", "2")
	if code != http.StatusOK || m["version"] != 3.0 || m["state"] != "pending" || m["deleted"] != true {
		t.Fatalf("delete: %d %v", code, m)
	}
	code, m, _ = do("GET", "/v1/spaces/spa_1/audiences/aud_1/connections", "")
	conns, _ := m["connections"].([]any)
	if code != http.StatusOK || len(conns) != 1 {
		t.Fatalf("list: %d %v", code, m)
	}
	pending, _ := conns[0].(map[string]any)["pending"].(map[string]any)
	if pending == nil || pending["deleted"] != true || pending["version"] != 3.0 {
		t.Fatalf("list pending: %v", conns[0])
	}
	clk.Advance(10 * time.Minute)
	if code, m, _ = do("GET", path, ""); code != http.StatusNotFound {
		t.Fatalf("get after delete: %d %v", code, m)
	}
	if code, m, _ = do("DELETE", path, ""); code != http.StatusNotFound {
		t.Fatalf("delete twice: %d %v", code, m)
	}
	code, m, _ = do("GET", path+"/history", "")
	entries, _ := m["entries"].([]any)
	if code != http.StatusOK || len(entries) != 3 {
		t.Fatalf("history: %d %v", code, m)
	}
	for i, want := range []string{"delete", "put", "put"} {
		e := entries[i].(map[string]any)
		if e["action"] != want || e["actor"] != "ops" || e["version"] != float64(3-i) {
			t.Errorf("history[%d] = %v", i, e)
		}
	}
	if code, m, _ = do("GET", "/v1/spaces/spa_1/audiences/aud_1/connections/other/history", ""); code != http.StatusNotFound {
		t.Fatalf("history of nothing: %d %v", code, m)
	}

	// Redis down: 500 saying the store failed, nothing of the cause.
	mr.Close()
	code, m, _ = do("GET", path, "")
	if msg, _ := m["error"].(string); code != http.StatusInternalServerError || !strings.Contains(msg, "configuration store (Redis) failed") || strings.Contains(msg, "refused") {
		t.Fatalf("redis down: %d %v", code, m)
	}
}

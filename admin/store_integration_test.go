package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/idsync/idsync/admin"
	"github.com/idsync/idsync/idsync"
	"github.com/idsync/idsync/store"
)

// storeAdapter is what the service's wiring writes to serve the admin API
// from the Redis store: keys and audit entries convert by type conversion,
// the store's sentinel errors are wrapped in the admin package's.
type storeAdapter struct{ s *store.Store }

func (a storeAdapter) Put(ctx context.Context, k admin.Key, cfg *idsync.Config, actor string, ifMatch int64) (idsync.Version, error) {
	v, err := a.s.Put(ctx, store.Key(k), cfg, actor, ifMatch)
	return v, adminError(err)
}

func (a storeAdapter) Delete(ctx context.Context, k admin.Key, actor string, ifMatch int64) (idsync.Version, error) {
	v, err := a.s.Delete(ctx, store.Key(k), actor, ifMatch)
	return v, adminError(err)
}

func (a storeAdapter) Get(ctx context.Context, k admin.Key) (idsync.Connection, error) {
	c, err := a.s.Get(ctx, store.Key(k))
	return c, adminError(err)
}

func (a storeAdapter) List(ctx context.Context, space, audience string) ([]idsync.Connection, error) {
	c, err := a.s.List(ctx, space, audience)
	return c, adminError(err)
}

func (a storeAdapter) History(ctx context.Context, k admin.Key) ([]admin.AuditEntry, error) {
	entries, err := a.s.History(ctx, store.Key(k))
	if err != nil {
		return nil, adminError(err)
	}
	out := make([]admin.AuditEntry, len(entries))
	for i, e := range entries {
		out[i] = admin.AuditEntry(e)
	}
	return out, nil
}

// adminError wraps the store's sentinels in admin's (idsync.ErrNotFound is
// shared and passes through).
func adminError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrConflict):
		return fmt.Errorf("%w: %w", admin.ErrConflict, err)
	case errors.Is(err, store.ErrPreconditionFailed):
		return fmt.Errorf("%w: %w", admin.ErrPreconditionFailed, err)
	case errors.Is(err, store.ErrInvalidKey):
		return fmt.Errorf("%w: %w", admin.ErrInvalidKey, err)
	}
	return err
}

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
	srv, err := admin.New(storeAdapter{st}, admin.Options{
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

	// Redis down: 500 with "internal error", nothing more.
	mr.Close()
	code, m, _ = do("GET", path, "")
	if code != http.StatusInternalServerError || m["error"] != "internal error" {
		t.Fatalf("redis down: %d %v", code, m)
	}
}

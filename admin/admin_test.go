package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idsync/idsync/idsync"
)

const (
	writeSecret = "w-secret-0123456789"
	readSecret  = "r-secret-0123456789"
	base        = "/v1/spaces/spa_1/audiences/aud_1/connections"
)

// clock is a settable clock shared by the server and the fake store.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type harness struct {
	t     testing.TB
	srv   *Server
	st    *fakeStore
	clock *clock
	logs  *syncBuffer
	// answered holds the "METHOD pattern status" of every response of a
	// documented operation (see checkContract).
	answered sync.Map
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testTokens() []Token {
	return []Token{
		{Name: "ops", Secret: writeSecret, Scope: ScopeWrite},
		{Name: "dashboard", Secret: readSecret, Scope: ScopeRead},
	}
}

func newHarness(t testing.TB, tweak ...func(*Options)) *harness {
	t.Helper()
	clk := &clock{t: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)}
	act := idsync.DefaultActivation()
	st := newFakeStore(act, clk.Now)
	logs := &syncBuffer{}
	opt := Options{
		Tokens:     testTokens(),
		Activation: act,
		Now:        clk.Now,
		Logger:     slog.New(slog.NewJSONHandler(logs, nil)),
	}
	for _, f := range tweak {
		f(&opt)
	}
	srv, err := New(st, opt)
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, srv: srv, st: st, clock: clk, logs: logs}
}

// do sends one request; headers come in name, value pairs. Every response
// is checked against schemas/openapi.yaml (checkContract).
func (h *harness) do(method, path, secret, body string, headers ...string) *httptest.ResponseRecorder {
	h.t.Helper()
	w, r := h.serve(method, path, secret, body, headers...)
	if answered := checkContract(h.t, h.srv, r, body, w); answered != "" {
		h.answered.Store(answered, true)
	}
	return w
}

// serve sends one request without the contract check (for measuring what
// the server alone allocates); do is serve and the check.
func (h *harness) serve(method, path, secret, body string, headers ...string) (*httptest.ResponseRecorder, *http.Request) {
	h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r := httptest.NewRequest(method, path, rd)
	if secret != "" {
		r.Header.Set("Authorization", "Bearer "+secret)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Set(headers[i], headers[i+1])
	}
	w := httptest.NewRecorder()
	h.srv.ServeHTTP(w, r)
	return w, r
}

// expect checks the status and decodes the JSON body into v (when not nil).
func expect(t testing.TB, w *httptest.ResponseRecorder, status int, v any) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status %d, want %d; body %s", w.Code, status, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	if v != nil {
		if err := json.Unmarshal(w.Body.Bytes(), v); err != nil {
			t.Fatalf("body %s: %v", w.Body, err)
		}
	}
}

func expectError(t testing.TB, w *httptest.ResponseRecorder, status int) errorBody {
	t.Helper()
	var e errorBody
	expect(t, w, status, &e)
	if e.Error == "" {
		t.Fatalf("error body without message: %s", w.Body)
	}
	return e
}

func hasField(problems []idsync.Problem, field string) bool {
	for _, p := range problems {
		if p.Field == field && p.Message != "" {
			return true
		}
	}
	return false
}

const fbConfig = `{
  "destination_type": "facebook_custom_audiences",
  "external_audience_id": "23851234567890123",
  "settings": {"send_mobile_ids": true},
  "setup": "customized",
  "identifiers": [
    {"segment": "email", "destination": "EMAIL", "strategy": "all"},
    {"segment": "phone", "destination": "PHONE", "strategy": "last_added"}
  ]
}`

const iterableConfig = `{"destination_type": "iterable", "setup": "default"}`

func TestNewChecksOptions(t *testing.T) {
	st := newFakeStore(idsync.DefaultActivation(), time.Now)
	tests := []struct {
		name string
		st   Store
		opt  Options
	}{
		{"nil store", nil, Options{Tokens: testTokens()}},
		{"no tokens", st, Options{}},
		{"no name", st, Options{Tokens: []Token{{Secret: "s", Scope: ScopeRead}}}},
		{"no secret", st, Options{Tokens: []Token{{Name: "a", Scope: ScopeRead}}}},
		{"bad scope", st, Options{Tokens: []Token{{Name: "a", Secret: "s", Scope: "admin"}}}},
		{"same name", st, Options{Tokens: []Token{{Name: "a", Secret: "s", Scope: ScopeRead}, {Name: "a", Secret: "t", Scope: ScopeRead}}}},
		{"same secret", st, Options{Tokens: []Token{{Name: "a", Secret: "s", Scope: ScopeRead}, {Name: "b", Secret: "s", Scope: ScopeWrite}}}},
		{"negative body", st, Options{Tokens: testTokens(), MaxBodyBytes: -1}},
		{"bad process options", st, Options{Tokens: testTokens(), Process: idsync.Options{MaxCombinations: 1}}},
		{"bad activation", st, Options{Tokens: testTokens(), Activation: idsync.Activation{Delay: -time.Second}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.st, tt.opt); err == nil {
				t.Fatal("New accepted invalid options")
			}
		})
	}
	if _, err := New(st, Options{Tokens: testTokens()}); err != nil {
		t.Fatalf("defaults: %v", err)
	}
}

func TestConnectionLifecycle(t *testing.T) {
	h := newHarness(t)
	path := base + "/fbca_01"

	// Create: effective at once, 201.
	var ed editView
	expect(t, h.do("PUT", path, writeSecret, fbConfig, "Content-Type", "application/json"), http.StatusCreated, &ed)
	if ed.Version != 1 || ed.State != idsync.StateActive || !ed.EffectiveAt.Equal(h.clock.Now()) ||
		ed.SpaceID != "spa_1" || ed.AudienceID != "aud_1" || ed.DestinationID != "fbca_01" || ed.Config == nil ||
		ed.Config.Settings.EnterEvent != "Audience Entered" {
		t.Fatalf("create: %+v", ed)
	}

	w := h.do("GET", path, readSecret, "")
	var cv connectionView
	expect(t, w, http.StatusOK, &cv)
	if cv.DestinationID != "fbca_01" || cv.Active == nil || cv.Active.Version != 1 || cv.Pending != nil {
		t.Fatalf("get after create: %s", w.Body)
	}
	if etag := w.Header().Get("ETag"); etag != `"1"` {
		t.Fatalf("ETag %q", etag)
	}

	// Edit: pending for the activation delay, 200.
	h.clock.Advance(time.Minute)
	expect(t, h.do("PUT", path, writeSecret, iterableConfig), http.StatusOK, &ed)
	if ed.Version != 2 || ed.State != idsync.StatePending || !ed.EffectiveAt.Equal(h.clock.Now().Add(5*time.Minute)) {
		t.Fatalf("edit: %+v", ed)
	}
	w = h.do("GET", path, readSecret, "")
	expect(t, w, http.StatusOK, &cv)
	if cv.Active == nil || cv.Active.Version != 1 || cv.Pending == nil || cv.Pending.Version != 2 || cv.Pending.Deleted ||
		cv.Pending.Config.DestinationType != idsync.Iterable {
		t.Fatalf("get with pending: %s", w.Body)
	}
	if etag := w.Header().Get("ETag"); etag != `"2"` {
		t.Fatalf("ETag %q", etag)
	}

	// After the delay the edit is active.
	h.clock.Advance(5 * time.Minute)
	expect(t, h.do("GET", path, readSecret, ""), http.StatusOK, &cv)
	if cv.Active == nil || cv.Active.Version != 2 || cv.Pending != nil {
		t.Fatalf("get after delay: %+v", cv)
	}

	// Delete: a pending tombstone.
	expect(t, h.do("DELETE", path, writeSecret, ""), http.StatusOK, &ed)
	if ed.Version != 3 || !ed.Deleted || ed.State != idsync.StatePending || ed.Config != nil ||
		!ed.EffectiveAt.Equal(h.clock.Now().Add(5*time.Minute)) {
		t.Fatalf("delete: %+v", ed)
	}
	expect(t, h.do("GET", path, readSecret, ""), http.StatusOK, &cv)
	if cv.Active == nil || cv.Active.Version != 2 || cv.Pending == nil || !cv.Pending.Deleted || cv.Pending.Config != nil {
		t.Fatalf("get with pending delete: %+v", cv)
	}

	// Once the deletion is effective the connection is gone.
	h.clock.Advance(5 * time.Minute)
	expectError(t, h.do("GET", path, readSecret, ""), http.StatusNotFound)
	expectError(t, h.do("DELETE", path, writeSecret, ""), http.StatusNotFound)
	var lv listView
	expect(t, h.do("GET", base, readSecret, ""), http.StatusOK, &lv)
	if len(lv.Connections) != 0 {
		t.Fatalf("list after delete: %+v", lv)
	}

	// The audit log, newest first, with the token names as actors.
	var hv historyView
	expect(t, h.do("GET", path+"/history", readSecret, ""), http.StatusOK, &hv)
	if len(hv.Entries) != 3 || hv.DestinationID != "fbca_01" {
		t.Fatalf("history: %+v", hv)
	}
	wantActions := []string{"delete", "put", "put"}
	for i, e := range hv.Entries {
		if e.Version != int64(3-i) || e.Action != wantActions[i] || e.Actor != "ops" {
			t.Errorf("history[%d] = %+v", i, e)
		}
	}
	if hv.Entries[0].Old == nil || hv.Entries[0].New != nil || hv.Entries[2].Old != nil || hv.Entries[2].New == nil {
		t.Errorf("history old/new: %+v", hv.Entries)
	}
	expectError(t, h.do("GET", base+"/never/history", readSecret, ""), http.StatusNotFound)
}

func TestListConnections(t *testing.T) {
	h := newHarness(t)
	for _, d := range []string{"zz_hook", "fbca_01"} {
		expect(t, h.do("PUT", base+"/"+d, writeSecret, fbConfig), http.StatusCreated, nil)
	}
	expect(t, h.do("PUT", "/v1/spaces/spa_1/audiences/other/connections/x1", writeSecret, fbConfig), http.StatusCreated, nil)
	var lv listView
	expect(t, h.do("GET", base, readSecret, ""), http.StatusOK, &lv)
	if lv.SpaceID != "spa_1" || lv.AudienceID != "aud_1" || len(lv.Connections) != 2 ||
		lv.Connections[0].DestinationID != "fbca_01" || lv.Connections[1].DestinationID != "zz_hook" ||
		lv.Connections[0].Active == nil || lv.Connections[0].Active.Version != 1 {
		t.Fatalf("list: %+v", lv)
	}
	// An audience without connections lists none, as [] not null.
	w := h.do("GET", "/v1/spaces/spa_1/audiences/empty/connections", readSecret, "")
	expect(t, w, http.StatusOK, nil)
	if !strings.Contains(w.Body.String(), `"connections":[]`) {
		t.Fatalf("empty list: %s", w.Body)
	}
}

func TestIfMatch(t *testing.T) {
	h := newHarness(t)
	path := base + "/fbca_01"
	// A precondition on a connection that does not exist fails.
	expectError(t, h.do("PUT", path, writeSecret, fbConfig, "If-Match", `"1"`), http.StatusPreconditionFailed)
	expect(t, h.do("PUT", path, writeSecret, fbConfig), http.StatusCreated, nil)
	for i, v := range []string{`"1"`, `W/"2"`, `3`, ` "4" `, `*`} {
		var ed editView
		expect(t, h.do("PUT", path, writeSecret, fbConfig, "If-Match", v), http.StatusOK, &ed)
		if ed.Version != int64(i+2) {
			t.Fatalf("If-Match %s: version %d", v, ed.Version)
		}
	}
	e := expectError(t, h.do("PUT", path, writeSecret, fbConfig, "If-Match", `"3"`), http.StatusPreconditionFailed)
	if !strings.Contains(e.Error, "If-Match") {
		t.Errorf("412 message %q", e.Error)
	}
	expectError(t, h.do("DELETE", path, writeSecret, "", "If-Match", `"5"`), http.StatusPreconditionFailed)
	for _, bad := range []string{"abc", `"0"`, "-1", `"1", "2"`} {
		e := expectError(t, h.do("PUT", path, writeSecret, fbConfig, "If-Match", bad), http.StatusBadRequest)
		if !hasField(e.Problems, "If-Match") {
			t.Errorf("If-Match %s: %+v", bad, e)
		}
	}
	expect(t, h.do("DELETE", path, writeSecret, "", "If-Match", `"6"`), http.StatusOK, nil)
}

func TestStoreErrors(t *testing.T) {
	h := newHarness(t)
	path := base + "/fbca_01"
	expect(t, h.do("PUT", path, writeSecret, fbConfig), http.StatusCreated, nil)

	// A concurrent edit won: 409. (The first store call of PUT is the Get.)
	conflict := &failingPut{fakeStore: h.st, err: fmt.Errorf("store: putting: %w", ErrConflict)}
	h.srv.st = conflict
	expectError(t, h.do("PUT", path, writeSecret, fbConfig), http.StatusConflict)
	conflict.err = fmt.Errorf("store: putting: %w", ErrInvalidKey)
	expectError(t, h.do("PUT", path, writeSecret, fbConfig), http.StatusBadRequest)

	// Redis holds a record this binary cannot read: 409 with the reason
	// and where to read how to repair it, never a bare 500.
	for _, call := range []struct{ method, path, body string }{
		{"GET", path, ""}, {"PUT", path, fbConfig}, {"DELETE", path, ""}, {"GET", base, ""},
	} {
		h.st.mu.Lock()
		h.st.failNext = fmt.Errorf("store: reading: %w: connection record: invalid JSON at byte 3", idsync.ErrUnusableConfig)
		h.st.mu.Unlock()
		h.srv.st = h.st
		e := expectError(t, h.do(call.method, call.path, writeSecret, call.body), http.StatusConflict)
		if !strings.Contains(e.Error, "docs/store.md") || !hasField(e.Problems, "stored_record") {
			t.Errorf("%s %s: %+v", call.method, call.path, e)
		}
	}
	h.srv.st = conflict

	// A store failure: 500 saying the store failed and what to do, the
	// cause in the log only.
	h.srv.st = h.st
	for _, call := range []struct{ method, path, body string }{
		{"GET", path, ""}, {"PUT", path, fbConfig}, {"DELETE", path, ""}, {"GET", base, ""}, {"GET", path + "/history", ""},
	} {
		h.st.mu.Lock()
		h.st.failNext = errors.New("redis: connection refused")
		h.st.mu.Unlock()
		e := expectError(t, h.do(call.method, call.path, writeSecret, call.body), http.StatusInternalServerError)
		if !strings.Contains(e.Error, "configuration store (Redis) failed") || strings.Contains(e.Error, "connection refused") {
			t.Errorf("%s %s: %q", call.method, call.path, e.Error)
		}
	}
	// An edit the replicas did not confirm says so.
	h.st.mu.Lock()
	h.st.failNext = fmt.Errorf("%w: store: WAIT 1: 0 replicas", ErrNotConfirmed)
	h.st.mu.Unlock()
	if e := expectError(t, h.do("PUT", path, writeSecret, fbConfig), http.StatusInternalServerError); !strings.Contains(e.Error, "may be lost in a failover") {
		t.Errorf("an unconfirmed edit: %q", e.Error)
	}
	logs := h.logs.String()
	if !strings.Contains(logs, "redis: connection refused") {
		t.Errorf("store failure not logged:\n%s", logs)
	}
	if strings.Contains(logs, "spa_1") || strings.Contains(logs, "fbca_01") {
		t.Errorf("log holds path ids:\n%s", logs)
	}
}

// failingPut is a Store whose Put fails with err.
type failingPut struct {
	*fakeStore
	err error
}

func (f *failingPut) Put(_ context.Context, _ Key, _ *idsync.Config, _ string, _ int64) (idsync.Version, error) {
	return idsync.Version{}, f.err
}

func TestInvalidInput(t *testing.T) {
	h := newHarness(t)
	path := base + "/fbca_01"
	tests := []struct {
		name, method, path, body string
		fields                   []string
	}{
		{"invalid configuration", "PUT", path, `{"destination_type":"facebook_custom_audiences","setup":"customized","identifiers":[{"segment":"email","destination":"NOPE","strategy":"sometimes"}]}`,
			[]string{"external_audience_id", "identifiers[0].destination", "identifiers[0].strategy"}},
		{"unknown field", "PUT", path, `{"destination_type":"iterable","colour":"blue"}`, []string{"colour"}},
		{"wrong type", "PUT", path, `{"destination_type":"iterable","settings":{"send_track":"yes"}}`, []string{"settings.send_track"}},
		{"malformed JSON", "PUT", path, `{"destination_type":`, []string{""}},
		{"empty body", "PUT", path, ``, []string{""}},
		{"bad destination id", "PUT", base + "/Not%20Valid", fbConfig, []string{"destination_id"}},
		{"bad space and audience", "GET", "/v1/spaces/-x/audiences/%2e%2e%2fy/connections/ok", "", []string{"space_id", "audience_id"}},
		{"bad audience in list", "GET", "/v1/spaces/spa/audiences/a%20b/connections", "", []string{"audience_id"}},
		{"bad destination in history", "GET", base + "/UPPER/history", "", []string{"destination_id"}},
		{"bad destination in delete", "DELETE", base + "/_x", "", []string{"destination_id"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := expectError(t, h.do(tt.method, tt.path, writeSecret, tt.body), http.StatusBadRequest)
			for _, f := range tt.fields {
				if !hasField(e.Problems, f) {
					t.Errorf("no problem for field %q: %+v", f, e.Problems)
				}
			}
		})
	}
	if n := h.st.editCount(); n != 0 {
		t.Fatalf("%d edits stored from invalid input", n)
	}
}

func TestBodyAndContentType(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.MaxBodyBytes = 1024 })
	path := base + "/fbca_01"
	big := `{"destination_type":"iterable","external_audience_id":"` + strings.Repeat("x", 2000) + `"}`
	expectError(t, h.do("PUT", path, writeSecret, big), http.StatusRequestEntityTooLarge)

	// Without a Content-Length (chunked), MaxBytesReader still stops it.
	r := httptest.NewRequest("POST", "/v1/preview", io.MultiReader(strings.NewReader(big)))
	r.ContentLength = -1
	r.Header.Set("Authorization", "Bearer "+writeSecret)
	w := httptest.NewRecorder()
	h.srv.ServeHTTP(w, r)
	expectError(t, w, http.StatusRequestEntityTooLarge)

	expectError(t, h.do("PUT", path, writeSecret, fbConfig, "Content-Type", "text/plain"), http.StatusUnsupportedMediaType)
	expectError(t, h.do("POST", "/v1/preview", writeSecret, "{}", "Content-Type", "application/x-www-form-urlencoded"), http.StatusUnsupportedMediaType)
	expect(t, h.do("PUT", path, writeSecret, fbConfig, "Content-Type", "application/json; charset=utf-8"), http.StatusCreated, nil)
	expect(t, h.do("PUT", path, writeSecret, fbConfig, "Content-Type", "application/merge-patch+json"), http.StatusOK, nil)
	expect(t, h.do("PUT", path, writeSecret, fbConfig), http.StatusOK, nil)
}

func TestAuth(t *testing.T) {
	h := newHarness(t)
	path := base + "/fbca_01"
	for _, auth := range []string{"", "Bearer", "Bearer ", "Basic " + writeSecret, "Bearer wrong", "Bearer " + writeSecret + "x", "Bearer " + writeSecret[:5], writeSecret} {
		r := httptest.NewRequest("GET", path, nil)
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		w := httptest.NewRecorder()
		h.srv.ServeHTTP(w, r)
		expectError(t, w, http.StatusUnauthorized)
		if !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%q: WWW-Authenticate %q", auth, w.Header().Get("WWW-Authenticate"))
		}
	}
	// Unknown paths need a token too.
	expectError(t, h.do("GET", "/nope", "", ""), http.StatusUnauthorized)

	// Read scope reads and previews but does not write.
	expectError(t, h.do("PUT", path, readSecret, fbConfig), http.StatusForbidden)
	expectError(t, h.do("DELETE", path, readSecret, ""), http.StatusForbidden)
	expect(t, h.do("GET", "/v1/destination-types", readSecret, ""), http.StatusOK, nil)
	expect(t, h.do("POST", "/v1/preview", readSecret, `{"connection":`+iterableConfig+`,"event":{}}`), http.StatusOK, nil)
	expectError(t, h.do("GET", path, readSecret, ""), http.StatusNotFound)

	// Write implies read; the scheme is case-insensitive.
	r := httptest.NewRequest("PUT", path, strings.NewReader(fbConfig))
	r.Header.Set("Authorization", "bearer "+writeSecret)
	w := httptest.NewRecorder()
	h.srv.ServeHTTP(w, r)
	expect(t, w, http.StatusCreated, nil)
	expect(t, h.do("GET", path, writeSecret, ""), http.StatusOK, nil)
}

// TestBadTokensMakeNoChanges sends 1,000 writes with missing, invalid or
// read-only tokens: none is stored.
func TestBadTokensMakeNoChanges(t *testing.T) {
	h := newHarness(t)
	expect(t, h.do("PUT", base+"/keep", writeSecret, fbConfig), http.StatusCreated, nil)
	before := h.st.editCount()
	secrets := []string{"", "wrong", readSecret, writeSecret + "!", strings.ToUpper(writeSecret), writeSecret[:len(writeSecret)-1]}
	for i := range 1000 {
		secret := secrets[i%len(secrets)]
		method, path, body := "PUT", fmt.Sprintf("%s/d%d", base, i), fbConfig
		if i%3 == 0 {
			method, path, body = "DELETE", base+"/keep", ""
		}
		r := httptest.NewRequest(method, path, strings.NewReader(body))
		if secret != "" {
			r.Header.Set("Authorization", "Bearer "+secret)
		}
		if i%7 == 0 && secret != "" {
			r.Header.Set("Authorization", "Token "+secret)
		}
		w := httptest.NewRecorder()
		h.srv.ServeHTTP(w, r)
		if w.Code != http.StatusUnauthorized && w.Code != http.StatusForbidden {
			t.Fatalf("request %d (%s): status %d", i, method, w.Code)
		}
	}
	if after := h.st.editCount(); after != before {
		t.Fatalf("%d edits made with bad tokens", after-before)
	}
	var lv listView
	expect(t, h.do("GET", base, readSecret, ""), http.StatusOK, &lv)
	if len(lv.Connections) != 1 || lv.Connections[0].Pending != nil {
		t.Fatalf("connections changed: %+v", lv)
	}
}

func TestNotFoundAndMethodNotAllowed(t *testing.T) {
	h := newHarness(t)
	for _, p := range []string{"/", "/v1", "/v2/destination-types", base + "/a/b/c", "/v1/spaces/s/audiences"} {
		expectError(t, h.do("GET", p, readSecret, ""), http.StatusNotFound)
	}
	tests := []struct{ method, path, allow string }{
		{"POST", base + "/fbca_01", "GET, PUT, DELETE"},
		{"PATCH", base + "/fbca_01", "GET, PUT, DELETE"},
		{"PUT", base, "GET"},
		{"DELETE", base + "/fbca_01/history", "GET"},
		{"POST", "/v1/destination-types", "GET"},
		{"GET", "/v1/preview", "POST"},
	}
	for _, tt := range tests {
		w := h.do(tt.method, tt.path, writeSecret, "")
		expectError(t, w, http.StatusMethodNotAllowed)
		if got := w.Header().Get("Allow"); got != tt.allow {
			t.Errorf("%s %s: Allow %q, want %q", tt.method, tt.path, got, tt.allow)
		}
	}
}

func TestDestinationTypes(t *testing.T) {
	h := newHarness(t)
	var tv typesView
	expect(t, h.do("GET", "/v1/destination-types", readSecret, ""), http.StatusOK, &tv)
	if len(tv.DestinationTypes) != len(idsync.DestinationTypes) {
		t.Fatalf("types: %+v", tv)
	}
	for i, ti := range tv.DestinationTypes {
		if ti.Type != idsync.DestinationTypes[i] || ti.Kind == "" {
			t.Errorf("type %d: %+v", i, ti)
		}
	}
}

func TestRequestLog(t *testing.T) {
	h := newHarness(t)
	expect(t, h.do("PUT", base+"/fbca_01", writeSecret, fbConfig), http.StatusCreated, nil)
	expectError(t, h.do("GET", base+"/fbca_01", "nope", ""), http.StatusUnauthorized)
	expect(t, h.do("POST", "/v1/preview", readSecret, `{"connection":`+fbConfig+`,"event":{"profile":{"segment_id":"secret_profile"}}}`), http.StatusOK, nil)
	lines := strings.Split(strings.TrimSpace(h.logs.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d log lines:\n%s", len(lines), h.logs)
	}
	var first struct {
		Msg, Method, Route, Token string
		Status                    int
		Duration                  int64
	}
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	if first.Method != "PUT" || first.Route != "PUT "+patternConnection || first.Status != 201 || first.Token != "ops" {
		t.Errorf("log line %s", lines[0])
	}
	if !strings.Contains(lines[1], `"status":401`) || !strings.Contains(lines[2], `"token":"dashboard"`) {
		t.Errorf("log lines:\n%s", h.logs)
	}
	for _, secret := range []string{writeSecret, readSecret, "nope", "spa_1", "fbca_01", "secret_profile", "23851234567890123"} {
		if strings.Contains(h.logs.String(), secret) {
			t.Errorf("log holds %q", secret)
		}
	}
}

// goldenInput is the part of an idsync/testdata/golden case preview needs.
type goldenInput struct {
	Now         time.Time       `json:"now"`
	Event       json.RawMessage `json:"event"`
	Connections []struct {
		DestinationID string `json:"destination_id"`
		Versions      []struct {
			Config json.RawMessage `json:"config"`
		} `json:"versions"`
	} `json:"connections"`
}

// TestPreviewMatchesGolden previews the facebook_customized golden case and
// compares the record values with the domain core's golden outputs. The
// golden case applies version 7 where preview applies version 1, so the
// golden envelope's config_version is set to 1 first.
func TestPreviewMatchesGolden(t *testing.T) {
	in, err := os.ReadFile("../idsync/testdata/golden/facebook_customized.in.json")
	if err != nil {
		t.Fatal(err)
	}
	var gi goldenInput
	if err := json.Unmarshal(in, &gi); err != nil {
		t.Fatal(err)
	}
	out, err := os.ReadFile("../idsync/testdata/golden/facebook_customized.golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var golden struct {
		Outputs []struct {
			Key           string          `json:"key"`
			ConfigVersion int64           `json:"config_version"`
			Value         json.RawMessage `json:"value"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(out, &golden); err != nil {
		t.Fatal(err)
	}
	if len(golden.Outputs) == 0 {
		t.Fatal("golden case has no outputs")
	}

	h := newHarness(t)
	h.clock.t = gi.Now
	conn := gi.Connections[0]
	body, _ := json.Marshal(map[string]any{
		"destination_id": conn.DestinationID,
		"connection":     conn.Versions[0].Config,
		"event":          gi.Event,
	})
	var pv struct {
		Records []struct {
			Topic   string            `json:"topic"`
			Key     string            `json:"key"`
			Headers map[string]string `json:"headers"`
			Value   json.RawMessage   `json:"value"`
		} `json:"records"`
		Unmatched bool            `json:"unmatched"`
		DLQ       json.RawMessage `json:"dlq"`
	}
	expect(t, h.do("POST", "/v1/preview", readSecret, string(body)), http.StatusOK, &pv)
	if len(pv.Records) != len(golden.Outputs) || pv.Unmatched || string(pv.DLQ) != "null" {
		t.Fatalf("preview: %d records (golden %d), unmatched %v, dlq %s", len(pv.Records), len(golden.Outputs), pv.Unmatched, pv.DLQ)
	}
	for i, rec := range pv.Records {
		g := golden.Outputs[i]
		want := compact(t, g.Value)
		old := fmt.Sprintf(`"idsync":{"config_version":%d,`, g.ConfigVersion)
		if !bytes.Contains(want, []byte(old)) {
			t.Fatalf("golden value has no %s", old)
		}
		want = bytes.Replace(want, []byte(old), []byte(`"idsync":{"config_version":1,`), 1)
		if got := compact(t, rec.Value); !bytes.Equal(got, want) {
			t.Errorf("record %d value:\n got %s\nwant %s", i, got, want)
		}
		if rec.Topic != "idsync.dest."+conn.DestinationID || rec.Key != g.Key ||
			rec.Headers[idsync.HeaderSource] != "preview" || rec.Headers[idsync.HeaderConfigVersion] != "1" || len(rec.Headers) != 2 {
			t.Errorf("record %d: topic %q key %q headers %v", i, rec.Topic, rec.Key, rec.Headers)
		}
	}
	if n := h.st.editCount(); n != 0 {
		t.Fatalf("preview stored %d edits", n)
	}
}

func compact(t *testing.T, raw []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

const previewEvent = `{
  "message_id": "m1", "timestamp": "2026-06-01T11:00:00Z", "space_id": "spa_1", "audience_id": "aud_1",
  "audience_key": "buyers", "action": "entered", "profile": {"segment_id": "use_1"},
  "external_ids": [
    {"type": "email", "id": "a@example.com", "created_at": "2025-01-01T00:00:00Z"},
    {"type": "email", "id": "b@example.com", "created_at": "2025-01-02T00:00:00Z"},
    {"type": "phone", "id": "not a phone", "created_at": "2025-01-02T00:00:00Z"}
  ]
}`

func TestPreview(t *testing.T) {
	h := newHarness(t, func(o *Options) {
		o.Process = idsync.Options{MaxCombinations: 1, FacebookMaxRows: 10000, PhoneRegion: "US"}
		tt, err := idsync.ParseTopicTemplate("out.{destination_id}.v1")
		if err != nil {
			panic(err)
		}
		o.Topics = tt
	})
	type response struct {
		Records []struct {
			Topic string          `json:"topic"`
			Key   string          `json:"key"`
			Value json.RawMessage `json:"value"`
		} `json:"records"`
		Unmatched          bool        `json:"unmatched"`
		InvalidIdentifiers int         `json:"invalid_identifiers"`
		DLQ                *previewDLQ `json:"dlq"`
	}
	post := func(body string) response {
		t.Helper()
		var r response
		expect(t, h.do("POST", "/v1/preview", readSecret, body, "Content-Type", "application/json"), http.StatusOK, &r)
		return r
	}

	// Default destination id; Facebook gives one record; the phone is invalid.
	r := post(`{"connection":` + fbConfig + `,"event":` + previewEvent + `}`)
	if len(r.Records) != 1 || r.Records[0].Topic != "out.preview.v1" || r.Records[0].Key != "use_1" || r.DLQ != nil || r.Unmatched || r.InvalidIdentifiers != 1 {
		t.Fatalf("facebook preview: %+v", r)
	}
	if !bytes.Contains(r.Records[0].Value, []byte(`"message_id":"m1:preview:0"`)) {
		t.Errorf("value %s", r.Records[0].Value)
	}

	// Two emails on an event type are two records: above max_combinations 1.
	r = post(`{"destination_id":"it_1","connection":` + iterableConfig + `,"event":` + previewEvent + `}`)
	if len(r.Records) != 0 || r.DLQ == nil || r.DLQ.Code != idsync.CodeFanoutLimit || !strings.Contains(r.DLQ.Error, "it_1") {
		t.Fatalf("fan-out preview: %+v", r)
	}

	// Nothing to send for the profile.
	r = post(`{"connection":{"destination_type":"webhook","setup":"customized","identifiers":[{"segment":"shopify_id","destination":"shop","strategy":"all"}]},"event":` + previewEvent + `}`)
	if len(r.Records) != 0 || !r.Unmatched || r.DLQ != nil {
		t.Fatalf("unmatched preview: %+v", r)
	}

	// An event idsync would dead-letter is a 200 with its code.
	for event, code := range map[string]idsync.Code{
		`{"message_id":"m1"}`: idsync.CodeSchemaViolation,
		`"just a string"`:     idsync.CodeSchemaViolation,
		`{"message_id":"m1","timestamp":"yesterday","space_id":"s","audience_id":"a","action":"entered","profile":{"segment_id":"p"},"external_ids":[]}`: idsync.CodeInvalidTimestamp,
	} {
		r = post(`{"connection":` + iterableConfig + `,"event":` + event + `}`)
		if r.DLQ == nil || r.DLQ.Code != code || r.DLQ.Error == "" || len(r.Records) != 0 {
			t.Errorf("event %s: %+v", event, r)
		}
	}
	if n := h.st.editCount(); n != 0 {
		t.Fatalf("preview stored %d edits", n)
	}
}

func TestPreviewInvalidRequest(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		name, body string
		fields     []string
	}{
		{"invalid configuration", `{"connection":{"destination_type":"iterable","setup":"customized","identifiers":[{"segment":"email","destination":"email","strategy":"often"}]},"event":{}}`,
			[]string{"connection.identifiers[0].strategy"}},
		{"configuration not an object", `{"connection":[],"event":{}}`, []string{"connection"}},
		{"missing connection and event", `{}`, []string{"connection", "event"}},
		{"null event", `{"connection":` + iterableConfig + `,"event":null}`, []string{"event"}},
		{"bad destination id", `{"destination_id":"Bad Id","connection":` + iterableConfig + `,"event":{}}`, []string{"destination_id"}},
		{"unknown field", `{"connection":` + iterableConfig + `,"event":{},"extra":1}`, []string{"extra"}},
		{"wrong type", `{"destination_id":7,"connection":` + iterableConfig + `,"event":{}}`, []string{"destination_id"}},
		{"malformed JSON", `{"connection":`, []string{""}},
		{"trailing data", `{"connection":` + iterableConfig + `,"event":{}} {}`, []string{""}},
		{"not an object", `[1,2]`, []string{""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := expectError(t, h.do("POST", "/v1/preview", readSecret, tt.body), http.StatusBadRequest)
			for _, f := range tt.fields {
				if !hasField(e.Problems, f) {
					t.Errorf("no problem for field %q: %+v", f, e.Problems)
				}
			}
		})
	}
}

// TestConcurrentRequests runs requests in parallel (for -race).
func TestConcurrentRequests(t *testing.T) {
	h := newHarness(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			path := fmt.Sprintf("%s/d%d", base, i)
			for range 20 {
				r := httptest.NewRequest("PUT", path, strings.NewReader(fbConfig))
				r.Header.Set("Authorization", "Bearer "+writeSecret)
				w := httptest.NewRecorder()
				h.srv.ServeHTTP(w, r)
				if w.Code >= 300 {
					t.Errorf("status %d", w.Code)
				}
				r = httptest.NewRequest("GET", base, nil)
				r.Header.Set("Authorization", "Bearer "+readSecret)
				h.srv.ServeHTTP(httptest.NewRecorder(), r)
			}
		})
	}
	wg.Wait()
}

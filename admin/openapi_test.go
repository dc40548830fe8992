package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/idsync/idsync/idsync"
	"github.com/idsync/idsync/schemas"
)

// undocumentedPrefixes are route patterns openapi.yaml need not describe:
// static pages, not part of the JSON API. Add a prefix here only for
// routes that serve no JSON.
var undocumentedPrefixes = []string{"/ui/"}

// undocumented reports whether a route pattern ("/ui/" or "GET /ui/") is
// one openapi.yaml need not describe.
func undocumented(pattern string) bool {
	if _, path, ok := strings.Cut(pattern, " "); ok {
		pattern = path
	}
	return slices.ContainsFunc(undocumentedPrefixes, func(p string) bool { return strings.HasPrefix(pattern, p) })
}

// contract is the OpenAPI document of the admin API (schemas/openapi.yaml)
// with the response schemas compiled so far. harness.do checks every
// response of every admin test against it.
type contract struct {
	api *schemas.API
	mu  sync.Mutex
	c   *jsonschema.Compiler
	// compiled holds the schemas by location.
	compiled map[string]*jsonschema.Schema
}

var loadContract = sync.OnceValues(func() (*contract, error) {
	api, err := schemas.LoadAPI()
	if err != nil {
		return nil, err
	}
	c, err := schemas.NewCompiler()
	if err != nil {
		return nil, err
	}
	return &contract{api: api, c: c, compiled: map[string]*jsonschema.Schema{}}, nil
})

func (k *contract) schema(loc string) (*jsonschema.Schema, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if s, ok := k.compiled[loc]; ok {
		return s, nil
	}
	s, err := k.c.Compile(schemas.BaseURL + loc)
	if err != nil {
		return nil, err
	}
	k.compiled[loc] = s
	return s, nil
}

// checkContract checks one response of srv against openapi.yaml: the
// status is one the document gives the operation, the body is valid
// against that status's schema, and the headers it requires are set. When
// the server accepted a request (2xx), its body must be valid against the
// operation's request schema too: the document may not refuse what the
// server takes.
// Answers outside any operation (401 or 404 for an unknown path, 405 for a
// method the path does not serve) must be the Error schema. It returns
// "METHOD pattern status" for an answer of a documented operation, else "".
func checkContract(tb testing.TB, srv *Server, r *http.Request, reqBody string, w *httptest.ResponseRecorder) (answered string) {
	tb.Helper()
	k, err := loadContract()
	if err != nil {
		tb.Fatalf("loading openapi.yaml: %v", err)
	}
	_, pattern := srv.mux.Handler(r)
	if undocumented(pattern) {
		return ""
	}
	op := schemas.Operation{Method: r.Method, Path: pattern}
	loc := schemas.OpenAPI + "#/components/schemas/Error"
	if pattern != "" && w.Code != http.StatusMethodNotAllowed {
		var ok bool
		if loc, ok = k.api.ResponseSchema(op, w.Code); !ok {
			tb.Errorf("%s answered %d, which schemas/openapi.yaml does not document; body %s", op, w.Code, w.Body)
			return ""
		}
		for _, h := range k.api.RequiredResponseHeaders(op, w.Code) {
			if w.Header().Get(h) == "" {
				tb.Errorf("%s %d: no %s header, which openapi.yaml documents", op, w.Code, h)
			}
		}
		answered = fmt.Sprintf("%s %d", op, w.Code)
		if reqLoc, ok := k.api.RequestSchema(op); ok && w.Code < 300 {
			validateJSON(tb, k, reqLoc, []byte(reqBody), fmt.Sprintf("%s %d: request body the server accepted (where schema and server cannot agree: schemas/README.md)", op, w.Code))
		}
	}
	validateJSON(tb, k, loc, w.Body.Bytes(), fmt.Sprintf("%s %d", op, w.Code))
	return answered
}

// validateJSON checks raw against the schema at loc; what names the body in
// a failure.
func validateJSON(tb testing.TB, k *contract, loc string, raw []byte, what string) {
	tb.Helper()
	s, err := k.schema(loc)
	if err != nil {
		tb.Fatalf("compiling %s: %v", loc, err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		tb.Errorf("%s is not JSON: %v", what, err)
		return
	}
	if err := s.Validate(v); err != nil {
		tb.Errorf("%s breaks %s: %v\n%s", what, loc, err, raw)
	}
}

// TestOpenAPIDocumentsEveryRoute compares the routes the server registers
// with the operations of openapi.yaml, both ways, and the scope each needs
// with the document's x-idsync-scope: an endpoint cannot be added, removed
// or re-scoped without the document saying so.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	h := newHarness(t)
	k, err := loadContract()
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]schemas.Operation{}
	for _, op := range k.api.Operations() {
		documented[op.String()] = op
	}
	if len(h.srv.endpoints) == 0 {
		t.Fatal("the server lists no endpoints")
	}
	registered := map[string]bool{}
	for _, e := range h.srv.endpoints {
		key := e.method + " " + e.pattern
		registered[key] = true
		if undocumented(e.pattern) {
			continue
		}
		op, ok := documented[key]
		if !ok {
			t.Errorf("%s is served but not in schemas/openapi.yaml", key)
			continue
		}
		if got := k.api.Scope(op); got != string(e.scope) {
			t.Errorf("%s needs scope %s; openapi.yaml says x-idsync-scope %q", key, e.scope, got)
		}
	}
	for key := range documented {
		if !registered[key] {
			t.Errorf("%s is in schemas/openapi.yaml but not served", key)
		}
	}
}

// TestOpenAPILive calls every operation of the admin API with an in-memory
// store, answering each status openapi.yaml documents for it, and checks
// every response against the document (harness.do does). It then checks
// that every documented status of every operation was answered, so the
// document holds no status the server never gives.
func TestOpenAPILive(t *testing.T) {
	rs := newFakeResyncs()
	h := newHarness(t, func(o *Options) { o.Resyncs = rs })
	// Resyncs disabled: the resync routes answer 503.
	off := newHarness(t)
	k, err := loadContract()
	if err != nil {
		t.Fatal(err)
	}
	path := base + "/fbca_01"
	history := path + "/history"
	contentType := "Content-Type"
	ct := "application/json"
	fail := func(err error) {
		h.st.mu.Lock()
		h.st.failNext = err
		h.st.mu.Unlock()
	}
	unusable := fmt.Errorf("store: reading: %w: connection record: invalid JSON at byte 3", idsync.ErrUnusableConfig)
	down := errors.New("redis: connection refused")
	huge := `{"destination_type":"iterable","external_audience_id":"` + strings.Repeat("x", DefaultMaxBodyBytes) + `"}`

	calls := []struct {
		method, path, secret, body string
		headers                    []string
		status                     int
		before                     func()
	}{
		// Reads of nothing yet.
		{"GET", path, readSecret, "", nil, 404, nil},
		{"GET", history, readSecret, "", nil, 404, nil},
		{"DELETE", path, writeSecret, "", nil, 404, nil},
		{"GET", base, readSecret, "", nil, 200, nil},
		// Create, edit, read, delete.
		{"PUT", path, writeSecret, fbConfig, []string{contentType, ct}, 201, nil},
		{"PUT", path, writeSecret, iterableConfig, []string{"If-Match", `"1"`}, 200, nil},
		{"GET", path, readSecret, "", nil, 200, nil},
		{"GET", base, readSecret, "", nil, 200, nil},
		{"GET", history, readSecret, "", nil, 200, nil},
		{"PUT", base + "/gads_01", writeSecret, `{"destination_type":"google_ads_remarketing_lists","external_audience_id":"ul_1","settings":{"upload_key_type":"CRM_ID"},"setup":"default"}`, nil, 201, nil},
		{"PUT", base + "/zd_01", writeSecret, `{"destination_type":"zendesk","settings":{"send_identify":true,"send_track":false},"setup":"customized","identifiers":[{"segment":"email","destination":"email","strategy":"all"}]}`, nil, 201, nil},
		{"DELETE", base + "/zd_01", writeSecret, "", nil, 200, nil},
		{"GET", base + "/zd_01", readSecret, "", nil, 200, nil},
		{"GET", base + "/zd_01/history", readSecret, "", nil, 200, nil},
		{"GET", base, readSecret, "", nil, 200, nil},
		{"GET", "/v1/destination-types", readSecret, "", nil, 200, nil},
		{"GET", "/v1/whoami", readSecret, "", nil, 200, nil},
		{"PUT", base + "/created_only", writeSecret, iterableConfig, []string{"If-None-Match", "*"}, 201, nil},
		{"PUT", base + "/created_only", writeSecret, iterableConfig, []string{"If-None-Match", "*"}, 412, nil},
		{"PUT", base + "/created_only", writeSecret, iterableConfig, []string{"If-None-Match", `"1"`}, 400, nil},
		// Refusals.
		{"PUT", path, writeSecret, `{"destination_type":"facebook_custom_audiences","setup":"customized","identifiers":[{"segment":"email","destination":"NOPE","strategy":"sometimes"}]}`, nil, 400, nil},
		{"PUT", path, writeSecret, fbConfig, []string{"If-Match", "seven"}, 400, nil},
		{"PUT", path, writeSecret, fbConfig, []string{"If-Match", "1"}, 412, nil},
		{"DELETE", path, writeSecret, "", []string{"If-Match", "1"}, 412, nil},
		{"DELETE", path, writeSecret, "", []string{"If-Match", "x"}, 400, nil},
		{"GET", "/v1/spaces/-bad/audiences/aud_1/connections/fbca_01", readSecret, "", nil, 400, nil},
		{"GET", "/v1/spaces/-bad/audiences/aud_1/connections", readSecret, "", nil, 400, nil},
		{"GET", "/v1/spaces/spa_1/audiences/aud_1/connections/NO/history", readSecret, "", nil, 400, nil},
		{"PUT", path, readSecret, fbConfig, nil, 403, nil},
		{"DELETE", path, readSecret, "", nil, 403, nil},
		{"PUT", path, writeSecret, huge, nil, 413, nil},
		{"PUT", path, writeSecret, fbConfig, []string{contentType, "text/plain"}, 415, nil},
		{"PUT", path, writeSecret, fbConfig, nil, 409, func() { fail(unusable) }},
		{"DELETE", path, writeSecret, "", nil, 409, func() { fail(unusable) }},
		{"GET", path, readSecret, "", nil, 409, func() { fail(unusable) }},
		{"GET", base, readSecret, "", nil, 409, func() { fail(unusable) }},
		{"GET", history, readSecret, "", nil, 409, func() { fail(unusable) }},
		{"PUT", path, writeSecret, fbConfig, nil, 500, func() { fail(down) }},
		{"DELETE", path, writeSecret, "", nil, 500, func() { fail(down) }},
		{"GET", path, readSecret, "", nil, 500, func() { fail(down) }},
		{"GET", base, readSecret, "", nil, 500, func() { fail(down) }},
		{"GET", history, readSecret, "", nil, 500, func() { fail(down) }},
		// Preview: records, unmatched, a dead letter, refusals.
		{"POST", "/v1/preview", readSecret, `{"destination_id":"fb","connection":` + fbConfig + `,"event":` + previewEvent + `}`, nil, 200, nil},
		{"POST", "/v1/preview", readSecret, `{"connection":{"destination_type":"iterable"},"event":` + previewEvent + `}`, nil, 200, nil},
		{"POST", "/v1/preview", readSecret, `{"connection":{"destination_type":"webhook","setup":"customized","identifiers":[{"segment":"shopify_id","destination":"shop","strategy":"all"}]},"event":` + previewEvent + `}`, nil, 200, nil},
		{"POST", "/v1/preview", readSecret, `{"connection":` + fbConfig + `,"event":{"message_id":"m1"}}`, nil, 200, nil},
		{"POST", "/v1/preview", readSecret, `{"connection":` + fbConfig + `,"event":"not an event"}`, nil, 200, nil},
		{"POST", "/v1/preview", readSecret, `{"connection":{"destination_type":"nope"},"colour":1}`, nil, 400, nil},
		{"POST", "/v1/preview", readSecret, `{"connection":{"destination_type":"nope"}}`, nil, 400, nil},
		{"POST", "/v1/preview", readSecret, huge, nil, 413, nil},
		{"POST", "/v1/preview", readSecret, "{}", []string{contentType, "application/x-www-form-urlencoded"}, 415, nil},
		// Outside any operation: no token, unknown path, unknown method.
		{"POST", "/v1/preview", "", "{}", nil, 401, nil},
		{"GET", path, "nope", "", nil, 401, nil},
		{"GET", base, "", "", nil, 401, nil},
		{"GET", history, "", "", nil, 401, nil},
		{"PUT", path, "", fbConfig, nil, 401, nil},
		{"DELETE", path, "", "", nil, 401, nil},
		{"GET", "/v1/destination-types", "", "", nil, 401, nil},
		{"GET", "/v1/whoami", "", "", nil, 401, nil},
		{"GET", "/v1/nothing", readSecret, "", nil, 404, nil},
		{"PATCH", path, writeSecret, "", nil, 405, nil},
	}
	// Resyncs (docs/resync.md).
	resync, resyncs := path+"/resync", path+"/resyncs"
	rsFail := func(err error) func() {
		return func() { rs.mu.Lock(); rs.failNext = err; rs.mu.Unlock() }
	}
	calls = append(calls, []struct {
		method, path, secret, body string
		headers                    []string
		status                     int
		before                     func()
	}{
		{"POST", base + "/none_01/resync", writeSecret, "{}", nil, 404, nil},
		{"POST", resync, writeSecret, "{}", nil, 202, nil},
		{"POST", resync, writeSecret, `{"start_at":"2026-06-01T13:00:00Z"}`, []string{contentType, ct}, 202, nil},
		{"POST", resync, writeSecret, `{"start_at":"tomorrow"}`, nil, 400, nil},
		{"POST", resync, writeSecret, `{"start_at":"2027-06-01T13:00:00Z"}`, nil, 400, nil},
		{"POST", base + "/zd_01/resync", writeSecret, "{}", nil, 409, nil},
		{"POST", resync, readSecret, "{}", nil, 403, nil},
		{"POST", resync, "", "{}", nil, 401, nil},
		{"POST", resync, writeSecret, huge, nil, 413, nil},
		{"POST", resync, writeSecret, "{}", []string{contentType, "text/plain"}, 415, nil},
		{"POST", resync, writeSecret, "{}", nil, 500, rsFail(down)},
		{"GET", resyncs, readSecret, "", nil, 200, nil},
		{"GET", base + "/NO/resyncs", readSecret, "", nil, 400, nil},
		{"GET", resyncs, "", "", nil, 401, nil},
		{"GET", resyncs, readSecret, "", nil, 500, rsFail(down)},
		{"GET", "/v1/resyncs/rs_nope", readSecret, "", nil, 404, nil},
		{"GET", "/v1/resyncs/NOPE", readSecret, "", nil, 400, nil},
		{"GET", "/v1/resyncs/rs_nope", "", "", nil, 401, nil},
		{"GET", "/v1/resyncs/rs_nope", readSecret, "", nil, 409, rsFail(unusable)},
		{"GET", "/v1/resyncs/rs_nope", readSecret, "", nil, 500, rsFail(down)},
		{"DELETE", "/v1/resyncs/rs_nope", writeSecret, "", nil, 404, nil},
		{"DELETE", "/v1/resyncs/NOPE", writeSecret, "", nil, 400, nil},
		{"DELETE", "/v1/resyncs/rs_nope", readSecret, "", nil, 403, nil},
		{"DELETE", "/v1/resyncs/rs_nope", "", "", nil, 401, nil},
		{"DELETE", "/v1/resyncs/rs_nope", writeSecret, "", nil, 409, rsFail(unusable)},
		{"DELETE", "/v1/resyncs/rs_nope", writeSecret, "", nil, 500, rsFail(down)},
	}...)
	for i, c := range calls {
		if c.before != nil {
			c.before()
		}
		w := h.do(c.method, c.path, c.secret, c.body, c.headers...)
		if w.Code != c.status {
			t.Errorf("call %d: %s %s answered %d, want %d; body %s", i, c.method, c.path, w.Code, c.status, w.Body)
		}
	}
	// A resync started above, read and cancelled by its id.
	var started struct {
		ID string `json:"id"`
	}
	rs.mu.Lock()
	started.ID = rs.order[0]
	rs.mu.Unlock()
	for _, c := range []struct{ method, secret string }{{"GET", readSecret}, {"DELETE", writeSecret}, {"DELETE", writeSecret}} {
		if w := h.do(c.method, "/v1/resyncs/"+started.ID, c.secret, ""); w.Code != 200 {
			t.Errorf("%s resync: %d %s", c.method, w.Code, w.Body)
		}
	}
	for _, c := range []struct{ method, path, secret string }{
		{"POST", resync, writeSecret}, {"GET", resyncs, readSecret}, {"GET", "/v1/resyncs/rs_1", readSecret}, {"DELETE", "/v1/resyncs/rs_1", writeSecret},
	} {
		body := ""
		if c.method == "POST" {
			body = "{}"
		}
		if w := off.do(c.method, c.path, c.secret, body); w.Code != 503 {
			t.Errorf("resync disabled: %s %s answered %d, want 503", c.method, c.path, w.Code)
		}
	}
	off.answered.Range(func(k, v any) bool { h.answered.Store(k, v); return true })
	for _, op := range k.api.Operations() {
		for _, status := range k.api.Statuses(op) {
			if _, ok := h.answered.Load(fmt.Sprintf("%s %d", op, status)); !ok {
				t.Errorf("openapi.yaml documents %d for %s, which no call answered", status, op)
			}
		}
	}
}

// TestPreviewGoldenCases previews every golden case of package idsync
// under each of its configurations; harness.do checks each response
// against openapi.yaml, whose preview records are output-record.schema.json.
// (TestOpenAPILive previews dead letters.)
func TestPreviewGoldenCases(t *testing.T) {
	inputs, err := filepath.Glob("../idsync/testdata/golden/*.in.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) < 20 {
		t.Fatalf("%d golden inputs", len(inputs))
	}
	h := newHarness(t)
	records := 0
	for _, in := range inputs {
		raw, err := os.ReadFile(in)
		if err != nil {
			t.Fatal(err)
		}
		var gi goldenInput
		if err := json.Unmarshal(raw, &gi); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		h.clock.t = gi.Now
		for _, c := range gi.Connections {
			for _, v := range c.Versions {
				if len(v.Config) == 0 {
					continue // a deletion
				}
				body, _ := json.Marshal(map[string]any{"destination_id": c.DestinationID, "connection": v.Config, "event": gi.Event})
				w := h.do("POST", "/v1/preview", readSecret, string(body))
				var pv previewView
				expect(t, w, http.StatusOK, &pv)
				records += len(pv.Records)
			}
		}
	}
	if records < 30 {
		t.Fatalf("previews made %d records: the golden cases were not all previewed", records)
	}
}

// unusableStore serves, beside fakeStore's connections, the stored records
// package store marks as unusable: a connection record that cannot be read
// at all (Connection.Invalid) and a version this binary cannot use
// (Version.Invalid, here an unknown destination type).
type unusableStore struct {
	*fakeStore
	at time.Time
}

func (s unusableStore) unusable() []idsync.Connection {
	return []idsync.Connection{
		{DestinationID: "broken", Invalid: "connection record: invalid JSON at byte 3"},
		{DestinationID: "future", Versions: []idsync.Version{{Version: 1, UpdatedAt: s.at, EffectiveAt: s.at,
			Config:  &idsync.Config{DestinationType: "myspace_lists", Setup: idsync.SetupDefault},
			Invalid: `destination_type: unknown destination type "myspace_lists"`}}},
	}
}

func (s unusableStore) Get(ctx context.Context, k Key) (idsync.Connection, error) {
	for _, c := range s.unusable() {
		if c.DestinationID == k.Destination {
			return c, nil
		}
	}
	return s.fakeStore.Get(ctx, k)
}

func (s unusableStore) List(ctx context.Context, space, audience string) ([]idsync.Connection, error) {
	conns, err := s.fakeStore.List(ctx, space, audience)
	return append(conns, s.unusable()...), err
}

// TestOpenAPIUnusableStoredRecords reads connections whose stored record
// or version this binary cannot use: the answers (with invalid set) are
// valid against openapi.yaml too.
func TestOpenAPIUnusableStoredRecords(t *testing.T) {
	h := newHarness(t)
	h.srv.st = unusableStore{fakeStore: h.st, at: h.clock.Now().Add(-time.Hour)}
	expect(t, h.do("PUT", base+"/fbca_01", writeSecret, fbConfig), http.StatusCreated, nil)
	for _, dest := range []string{"broken", "future"} {
		var v connectionView
		expect(t, h.do("GET", base+"/"+dest, readSecret, ""), http.StatusOK, &v)
		if v.Invalid == "" && (v.Active == nil || v.Active.Invalid == "") {
			t.Errorf("%s: shown without why it cannot be used: %+v", dest, v)
		}
	}
	var list listView
	expect(t, h.do("GET", base, readSecret, ""), http.StatusOK, &list)
	if len(list.Connections) != 3 {
		t.Fatalf("listed %d connections, want 3", len(list.Connections))
	}
}

// TestRoutesRegisteredThroughHandle reads the package's source: every call
// of the mux's Handle or HandleFunc is in handle (so Server.endpoints lists
// it and TestOpenAPIDocumentsEveryRoute compares it with openapi.yaml), or
// registers a literal pattern under an undocumented prefix. A route added
// any other way would escape the comparison.
func TestRoutesRegisteredThroughHandle(t *testing.T) {
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	inHandle := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || (sel.Sel.Name != "Handle" && sel.Sel.Name != "HandleFunc") {
					return true
				}
				if fn.Name.Name == "handle" && fn.Recv != nil {
					inHandle++
					return true
				}
				if len(call.Args) > 0 {
					if lit, ok := call.Args[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
						if p, err := strconv.Unquote(lit.Value); err == nil && undocumented(p) {
							return true
						}
					}
				}
				t.Errorf("%s: %s registers a route outside Server.handle: register it through handle (and document it in schemas/openapi.yaml), or under one of %v",
					fset.Position(call.Pos()), fn.Name.Name, undocumentedPrefixes)
				return true
			})
		}
	}
	if inHandle != 1 {
		t.Errorf("found %d registrations in Server.handle, want 1: the check no longer sees how routes are registered", inHandle)
	}
}

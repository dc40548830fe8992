package admin

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzAdminAPI sends arbitrary methods, paths and bodies with a write token
// (and, by the fuzzed auth flag, none) to a server over a healthy store: no
// input may panic or give 500, and every error body must be the JSON error
// shape.
func FuzzAdminAPI(f *testing.F) {
	seeds := []struct {
		method, path, body string
	}{
		{"PUT", base + "/fbca_01", fbConfig},
		{"PUT", base + "/fbca_01", iterableConfig},
		{"PUT", base + "/fbca_01", `{"destination_type":"google_ads_remarketing_lists","setup":"customized","identifiers":[{"segment":"email","destination":"x","strategy":"all"}]}`},
		{"PUT", base + "/fbca_01", `{"identifiers":[{}],"settings":null}`},
		{"PUT", base + "/fbca_01", `[`},
		{"GET", base + "/fbca_01", ""},
		{"DELETE", base + "/fbca_01", ""},
		{"GET", base, ""},
		{"GET", base + "/fbca_01/history", ""},
		{"GET", "/v1/destination-types", ""},
		{"POST", "/v1/preview", `{"connection":` + fbConfig + `,"event":` + previewEvent + `}`},
		{"POST", "/v1/preview", `{"destination_id":"x","connection":` + iterableConfig + `,"event":{"external_ids":[{"type":"email"}]}}`},
		{"POST", "/v1/preview", `{"connection":{},"event":"\u0000"}`},
		{"GET", "/v1/spaces/%zz/audiences/a/connections", ""},
		{"OPTIONS", "/v1//spaces/../preview", ""},
		{"GET", "/v1/spaces/s/audiences/a/connections/d/history/", ""},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, s.body, true)
	}
	f.Add("PUT", base+"/d", fbConfig, false)
	h := newHarness(f)
	f.Fuzz(func(t *testing.T, method, path, body string, auth bool) {
		u, err := url.ParseRequestURI(path)
		if err != nil || method == "" || strings.ContainsAny(method, " \t\r\n()<>@,;:\\\"/[]?={}") {
			t.Skip()
		}
		r := httptest.NewRequest("GET", "/", strings.NewReader(body))
		r.Method, r.URL, r.RequestURI = method, u, path
		if auth {
			r.Header.Set("Authorization", "Bearer "+writeSecret)
		}
		w := httptest.NewRecorder()
		h.srv.ServeHTTP(w, r)
		if w.Code == http.StatusInternalServerError {
			t.Fatalf("%s %s: 500: %s", method, path, w.Body)
		}
		if w.Code >= 400 {
			var e errorBody
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error == "" {
				t.Fatalf("%s %s: %d with body %q", method, path, w.Code, w.Body)
			}
		}
		if !auth && w.Code != http.StatusUnauthorized {
			t.Fatalf("%s %s without a token: %d", method, path, w.Code)
		}
	})
}

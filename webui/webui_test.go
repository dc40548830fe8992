package webui

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHandler(t *testing.T) {
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot) // stands for the admin API
	})
	h := Mount(api)
	tests := []struct {
		method, path string
		status       int
		location     string
		contains     string
	}{
		{"GET", "/ui/", 200, "", `<script type="module" src="app.js">`},
		{"GET", "/ui/app.js", 200, "", "import"},
		{"GET", "/ui/style.css", 200, "", "--accent"},
		{"GET", "/ui", 301, "/ui/", ""},
		{"GET", "/", 302, "/ui/", ""},
		{"GET", "/ui/nope.js", 404, "", ""},
		{"GET", "/ui/static/", 404, "", ""},
		{"POST", "/ui/", 405, "", ""},
		{"GET", "/v1/whoami", http.StatusTeapot, "", ""},
		{"PUT", "/v1/spaces/s/audiences/a/connections/d", http.StatusTeapot, "", ""},
		{"GET", "/metrics", http.StatusTeapot, "", ""},
	}
	for _, tc := range tests {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(tc.method, tc.path, nil))
		if w.Code != tc.status {
			t.Errorf("%s %s: status %d, want %d", tc.method, tc.path, w.Code, tc.status)
		}
		if tc.location != "" && w.Header().Get("Location") != tc.location {
			t.Errorf("%s %s: Location %q, want %q", tc.method, tc.path, w.Header().Get("Location"), tc.location)
		}
		if !strings.Contains(w.Body.String(), tc.contains) {
			t.Errorf("%s %s: body lacks %q", tc.method, tc.path, tc.contains)
		}
		if strings.HasPrefix(tc.path, "/ui") {
			if got := w.Header().Get("Content-Security-Policy"); got != ContentSecurityPolicy {
				t.Errorf("%s %s: CSP %q", tc.method, tc.path, got)
			}
			if w.Header().Get("X-Frame-Options") != "DENY" || w.Header().Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("%s %s: headers %v", tc.method, tc.path, w.Header())
			}
		}
	}
}

// TestNoHTMLInjection keeps the scripts honest: the page is built with DOM
// calls and text nodes only, so no script may parse strings as HTML.
func TestNoHTMLInjection(t *testing.T) {
	entries, err := static.ReadDir("static")
	if err != nil {
		t.Fatal(err)
	}
	banned := []string{"innerHTML", "outerHTML =", "insertAdjacentHTML", "document.write", "eval(", "new Function", "DOMParser", "createContextualFragment"}
	n := 0
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".js") {
			continue
		}
		n++
		b, err := static.ReadFile("static/" + e.Name())
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range banned {
			if strings.Contains(string(b), bad) {
				t.Errorf("%s uses %s", e.Name(), bad)
			}
		}
		if strings.Contains(string(b), "style=") || strings.Contains(string(b), "'style'") {
			t.Errorf("%s sets inline styles (the CSP forbids them)", e.Name())
		}
	}
	if n < 5 {
		t.Fatalf("found %d scripts", n)
	}
}
